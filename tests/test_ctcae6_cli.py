"""CTCAE v6.0 wherever a CTCAE version is chosen: `grade`, `check`, `export`, protocols (issue 17)."""
import json
import typing
from pathlib import Path

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from dosewatch.cli import Criteria, Ctcae, app
from dosewatch.criteria.ctcae import CRITERIA
from dosewatch.demo import seed_bundle_path
from dosewatch.errors import InputError
from dosewatch.protocols import load_protocol
from dosewatch.protocols.model import Surveillance

RUNNER = CliRunner()


def run(*args):
    result = RUNNER.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def lab_events(payload, version):
    return {(p["patient_id"], e["term"], e["grade"]) for p in payload for e in p["events"] if e["criteria"] == version}


def test_every_place_that_names_a_ctcae_version_accepts_each_one():
    assert set(CRITERIA) == {"ctcae-4.03", "ctcae-5.0", "ctcae-6.0"}
    assert set(CRITERIA) | {"iwcll-2018"} == {c.value for c in Criteria}  # grade, export, check --cytopenias
    assert set(CRITERIA) == {c.value for c in Ctcae}  # check --criteria
    assert set(typing.get_args(Surveillance.model_fields["ctcae"].annotation)) == set(CRITERIA)
    assert set(typing.get_args(Surveillance.model_fields["cytopenias"].annotation)) == set(CRITERIA) | {"iwcll-2018"}


@pytest.fixture(scope="module")
def checks():
    return {v: json.loads(run("check", seed_bundle_path(), "--format", "json", "--criteria", v).stdout)
            for v in ("ctcae-5.0", "ctcae-6.0")}


def test_check_grades_labs_with_ctcae6(checks):
    v5, v6 = lab_events(checks["ctcae-5.0"], "ctcae-5.0"), lab_events(checks["ctcae-6.0"], "ctcae-6.0")
    assert not lab_events(checks["ctcae-6.0"], "ctcae-5.0") - {e for e in lab_events(checks["ctcae-5.0"], "ctcae-5.0")
                                                                if e[1] in ("Acute kidney injury", "Febrile neutropenia",
                                                                            "Tumor lysis syndrome")}
    # v6 renames Platelet count decreased, and its neutropenia grade 4 starts below 0.1 x 10^9/L (v5: 0.5)
    assert {t for _, t, _ in v6} >= {"Thrombocytopenia", "Neutrophil count decreased", "Hyperkalemia"}
    assert "Platelet count decreased" not in {t for _, t, _ in v6}
    assert max(g for _, t, g in v5 if t == "Neutrophil count decreased") == 4
    assert max(g for _, t, g in v6 if t == "Neutrophil count decreased") == 3


def test_check_cytopenias_with_another_ctcae_version():
    out = json.loads(run("check", seed_bundle_path(), "--format", "json", "--criteria", "ctcae-6.0",
                         "--cytopenias", "ctcae-5.0").stdout)
    terms = {(e["term"], e["criteria"]) for p in out for e in p["events"]}
    assert ("Platelet count decreased", "ctcae-5.0") in terms and ("Hyperkalemia", "ctcae-6.0") in terms
    assert not any(t == "Thrombocytopenia" for t, _ in terms)


def test_protocol_set_to_ctcae6(tmp_path):
    text = Path(load_protocol.__code__.co_filename).parent.joinpath("data", "venetoclax-cll-rampup.yaml").read_text()
    data = yaml.safe_load(text)
    data["id"] = "venetoclax-cll-rampup-v6"
    data["surveillance"]["ctcae"] = data["surveillance"]["cytopenias"] = "ctcae-6.0"
    path = tmp_path / "v6.yaml"
    path.write_text(yaml.safe_dump(data))
    # v6.0 names the platelet term "Thrombocytopenia": the v5.0 name would never fire, and is refused
    with pytest.raises(InputError, match=r"dose_rules\[2\]\.when\[2\]\.term.*'Platelet count decreased'.*"
                       r"did you mean 'Thrombocytopenia'"):
        load_protocol(str(path))
    for trigger in data["dose_rules"][2]["when"]:
        if trigger["term"] == "Platelet count decreased":
            trigger["term"] = "Thrombocytopenia"
    path.write_text(yaml.safe_dump(data))
    assert load_protocol(str(path)).surveillance.ctcae == "ctcae-6.0"
    out = json.loads(run("check", seed_bundle_path(), "--protocol", path, "--format", "json").stdout)
    assert out and all(p["patient_id"] for p in out)
    data["surveillance"]["ctcae"] = "ctcae-7.0"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match="surveillance.ctcae"):
        load_protocol(str(path))


def test_grade_and_export_with_ctcae6(tmp_path):
    run("export", seed_bundle_path(), "--to", "adlb", "--criteria", "ctcae-6.0", "-o", tmp_path / "adlb.csv")
    adlb = pl.read_csv(tmp_path / "adlb.csv", infer_schema_length=0)
    assert "Thrombocytopenia" in adlb["ATOXDSCL"].to_list()
    plain = adlb.drop("ATOXGRL", "ATOXGRH", "ATOXDSCL", "ATOXDSCH")
    plain.write_csv(tmp_path / "plain.csv")
    run("grade", tmp_path / "plain.csv", "-o", tmp_path / "out.csv", "--criteria", "ctcae-6.0")
    out = pl.read_csv(tmp_path / "out.csv", infer_schema_length=0)
    assert out.height == adlb.height and "Thrombocytopenia" in out["ATOXDSCL"].to_list()
    neut = out.filter(pl.col("PARAMCD") == "NEUT").with_columns(pl.col("AVAL").cast(pl.Float64))
    assert set(neut["ATOXDSCL"].to_list()) == {"Neutrophil count decreased"}
    # v6.0 grades ANC without the LLN: < 1.5 is grade 1 ... < 0.1 grade 4
    expected = [str(sum(v < c for c in (1.5, 1.0, 0.5, 0.1))) for v in neut["AVAL"].to_list()]
    assert neut["ATOXGRL"].to_list() == expected
