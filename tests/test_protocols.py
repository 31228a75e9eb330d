"""Protocols as data: the model, the built-in protocols and schedule expansion."""
import datetime as dt
import json

import pytest
from typer.testing import CliRunner

from dosewatch.cli import app
from dosewatch.errors import InputError
from dosewatch.protocols import BUILTIN, builtin, json_schema, load_protocol, parse_protocol
from dosewatch.protocols.model import parse_days
from dosewatch.protocols.schedule import DoseChange, cycle_of, expand

DAY1 = dt.date(2007, 3, 5)


def study(doses):
    return doses.filter(doses["role"] == "study")


def dose_on(doses, day, drug):
    row = doses.filter((doses["study_day"] == day) & (doses["drug"] == drug))
    return row["dose"].to_list()[0] if row.height else None


@pytest.mark.parametrize("spec, days", [("1-21", tuple(range(1, 22))), ("1-7, 14", (*range(1, 8), 14)),
                                        ([1, "3-4"], (1, 3, 4)), (5, (5,)), ("1 to 3", (1, 2, 3))])
def test_parse_days(spec, days):
    assert parse_days(spec) == days


@pytest.mark.parametrize("spec", ["21-1", "day one", "1..3"])
def test_parse_days_refuses_nonsense(spec):
    with pytest.raises(ValueError):
        parse_days(spec)


@pytest.mark.parametrize("pid", BUILTIN)
def test_builtin_protocols_load_and_every_rule_names_a_listed_source(pid):
    p = builtin(pid)
    assert p.id == pid
    keys = {p.study_drug.source, p.surveillance.source, p.dlt.source}
    keys |= {r.source for r in p.dose_rules} | {a.source for a in p.monitoring} | {x.source for x in p.prophylaxis}
    assert keys <= set(p.sources)
    assert all(len(text) > 40 for text in p.sources.values())  # a citation, not a placeholder


def test_seed_regimen_calendar():
    p = builtin("lenalidomide-cll-25mg-2007")
    doses, assessments = expand(p, DAY1, 56)
    assert [dose_on(doses, d, "lenalidomide") for d in (1, 21, 22, 28, 29)] == [25, 25, 0, 0, 25]
    assert study(doses).filter(study(doses)["study_day"] == 22)["state"].to_list() == ["off-day"]
    # dexamethasone 12 mg days 1-7, 4 mg days 8-14, cycle 1 only (Andritsos 2007)
    assert [dose_on(doses, d, "dexamethasone") for d in (1, 7, 8, 14, 15, 29)] == [12, 12, 4, 4, None, None]
    # daily labs and exam on days 1-14, then weekly
    lab_days = sorted(set(assessments.filter(assessments["assessment"] == "labs-daily")["study_day"].to_list()))
    assert lab_days[:14] == list(range(1, 15)) and lab_days[14:16] == [15, 22] and 16 not in lab_days


def test_escalation_protocol_steps_up_every_28_days_to_25_mg():
    p = builtin("lenalidomide-cll-escalation")
    doses, _ = expand(p, DAY1, 28 * 7)
    assert [dose_on(doses, d, "lenalidomide") for d in (1, 28, 29, 57, 85, 113, 141, 169)] == [2.5, 2.5, 5, 10, 15, 20, 25, 25]
    assert dose_on(doses, -3, "allopurinol") == 300  # hydration and allopurinol start before day 1


def test_escalation_can_be_left_to_the_monitor():
    p = builtin("lenalidomide-cll-escalation")
    doses, _ = expand(p, DAY1, 60, escalate=False)
    assert dose_on(doses, 57, "lenalidomide") == 2.5


def test_venetoclax_ramp_up_weekly_steps():
    p = builtin("venetoclax-cll-rampup")
    doses, assessments = expand(p, DAY1, 42)
    assert [dose_on(doses, d, "venetoclax") for d in (1, 7, 8, 15, 22, 28, 29, 42)] == [20, 20, 50, 100, 200, 200, 400, 400]
    first = assessments.filter(assessments["assessment"] == "tls-chemistries-first-steps")
    assert sorted(set(first["study_day"].to_list())) == [1, 2, 8, 9]
    assert "6-8 h" in first["times"][0]


def test_holds_resumes_and_discontinuation_change_the_plan():
    p = builtin("lenalidomide-cll-25mg-2007")
    changes = [DoseChange(9, "hold"), DoseChange(29, "resume", level=3), DoseChange(40, "discontinue")]
    doses, _ = expand(p, DAY1, 56, changes)
    s = study(doses)
    states = dict(zip(s["study_day"].to_list(), s["state"].to_list(), strict=True))
    assert dose_on(doses, 8, "lenalidomide") == 25 and states[9] == "held" and states[21] == "held"
    assert dose_on(doses, 29, "lenalidomide") == 15 and states[40] == "discontinued"


@pytest.mark.parametrize("day, expected", [(1, (1, 1)), (28, (1, 28)), (29, (2, 1)), (-1, (0, -1))])
def test_cycle_of(day, expected):
    assert cycle_of(day, 28) == expected


def _minimal(**override):
    base = builtin("lenalidomide-cll-25mg-2007").model_dump(mode="json")
    base.update(override)
    return base


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d["study_drug"].update(start_level=9), "study_drug"),
        (lambda d: d["study_drug"]["levels"][0].update(dose=-5), "study_drug.levels.0.dose"),
        (lambda d: d["dose_rules"][0].update(source="nowhere"), "(top)"),
        (lambda d: d["dose_rules"][0].update(action="explode"), "dose_rules.0.action"),
        (lambda d: d["study_drug"].update(dosing={"days": "21-1"}), "study_drug.dosing.days"),
        (lambda d: d.update(colour="red"), "colour"),
    ],
)
def test_malformed_protocol_names_the_field(mutate, field):
    import yaml

    data = _minimal()
    mutate(data)
    with pytest.raises(InputError) as info:
        parse_protocol(yaml.safe_dump(data), "mine.yaml")
    assert any(p.field == field or p.field.startswith(field) for p in info.value.problems), info.value.problems
    assert all(p.source == "mine.yaml" for p in info.value.problems)


def test_broken_yaml_names_line():
    with pytest.raises(InputError, match="line 2"):
        parse_protocol("id: x\n  : : [\n", "broken.yaml")


def test_load_protocol_from_file_and_unknown_id(tmp_path):
    import yaml

    f = tmp_path / "mine.yaml"
    f.write_text(yaml.safe_dump(_minimal(id="my-protocol")))
    assert load_protocol(f).id == "my-protocol"
    with pytest.raises(InputError, match="not a built-in id"):
        load_protocol("no-such-protocol")


def test_protocol_commands(tmp_path):
    runner = CliRunner()
    shown = runner.invoke(app, ["protocol", "show", "venetoclax-cll-rampup", "--cycles", "1", "--start", "2024-01-01"])
    assert shown.exit_code == 0 and "C1D8" in shown.output and "venclexta-pi" in shown.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\n")
    out = runner.invoke(app, ["protocol", "validate", str(bad)])
    assert out.exit_code == 1 and "bad.yaml: study_drug: Field required" in out.output
    schema = json.loads(runner.invoke(app, ["protocol", "schema"]).output)
    assert schema["title"] == "Protocol" and "study_drug" in schema["properties"]
    assert json_schema() == schema
