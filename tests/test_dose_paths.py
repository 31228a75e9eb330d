"""Dose-transition pathways against the R implementations, node for node (fixtures written by
tools/r/make_path_fixtures.R): brockk/escalation 0.2.3 ``get_dose_paths`` for 3+3, BOIN and CRM,
dtpcrm 0.1.1 ``calculate_dtps`` for CRM with its rules, and TITE-CRM (dfcrm) and TITE-BOIN
(TITEgBOIN) on every resolution of the pending patients."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dosewatch.escalation.base import Outcomes, parse_outcomes
from dosewatch.escalation.boin import BOIN
from dosewatch.escalation.crm import CRM
from dosewatch.escalation.paths import cohort_outcomes, dose_paths
from dosewatch.escalation.three_plus_three import ThreePlusThree
from dosewatch.escalation.tite_boin import TiteBOIN
from dosewatch.escalation.wrappers import CoherentAtDose, DontSkip

ROOT = Path(__file__).parent / "fixtures" / "dosefinding" / "paths"


def cases(name: str):
    data = json.loads((ROOT / f"{name}.json").read_text())
    return [pytest.param(c, id=c["label"]) for c in data["cases"]]


def as_list(x):
    return [] if x is None else list(np.atleast_1d(x))


def compare(paths, r_nodes, *, stopped_value="next_dose", skip_root=False):
    """Every R node has a dosewatch node on the same path with the same decision, and no other."""
    got = paths.by_path()
    want = {n["path"]: n for n in r_nodes}
    if skip_root:
        got.pop("", None)
        want.pop("", None)
    assert set(got) == set(want), (sorted(set(got) ^ set(want)))[:10]
    for path, r in want.items():
        node = got[path]
        assert node.continues == r["continue"], (path, node.rec.reason)
        if r["continue"]:
            assert node.rec.next_dose == r["next_dose"], (path, node.rec.reason)
        elif stopped_value == "mtd":
            assert node.rec.mtd == r["next_dose"], (path, node.rec.reason)
        elif node.rec.decision == "suspend":
            assert node.rec.next_dose == r["next_dose"], (path, node.rec.reason)
        else:
            assert node.rec.next_dose is None and r["next_dose"] is None, (path, node.rec.reason)


def test_fixture_provenance():
    meta = json.loads((ROOT / "crm.json").read_text())["meta"]
    assert meta["packages"] == {"escalation": "0.2.3", "dtpcrm": "0.1.1", "BOIN": "2.7.2", "dfcrm": "0.2.2.1",
                                "TITEgBOIN": "0.4.0"}


@pytest.mark.parametrize("case", cases("three_plus_three"))
def test_three_plus_three_paths_equal_escalation(case):
    a = case["args"]
    design = ThreePlusThree(a["levels"], variant="escalation", deescalate=a["allow_deescalate"])
    compare(dose_paths(design, parse_outcomes(a["previous"]), as_list(a["cohort_sizes"])), case["nodes"],
            stopped_value="mtd")


@pytest.mark.parametrize("case", cases("boin"))
def test_boin_paths_equal_escalation(case):
    a = case["args"]
    design = BOIN(a["target"], a["levels"])
    compare(dose_paths(design, parse_outcomes(a["previous"]), as_list(a["cohort_sizes"]), next_dose=a["next_dose"]),
            case["nodes"])


@pytest.mark.parametrize("case", cases("crm"))
def test_crm_paths_equal_escalation(case):
    a = case["args"]
    design = CRM(as_list(a["skeleton"]), a["target"], model=a["model"])
    if a["dont_skip"]:
        design = DontSkip(design)
    paths = dose_paths(design, parse_outcomes(a["previous"]), as_list(a["cohort_sizes"]), next_dose=a["next_dose"])
    # escalation's dfcrm selector recommends dose 1 with no patients (dfcrm cannot fit them); dosewatch
    # gives the prior's dose there, so the root is compared only when there are data
    compare(paths, case["nodes"], skip_root=not a["previous"])


@pytest.mark.parametrize("case", cases("dtpcrm"))
def test_crm_paths_equal_dtpcrm(case):
    a = case["args"]
    design = CRM(as_list(a["skeleton"]), a["target"])
    if a["no_skip_esc"] or a["no_skip_deesc"]:
        design = DontSkip(design, a["no_skip_esc"], a["no_skip_deesc"], relative_to="tried")
    if a["global_coherent_esc"]:
        design = CoherentAtDose(design, a["target"])
    outcomes = Outcomes.from_lists(as_list(a["prev_dose"]), as_list(a["prev_tox"]))
    empty = len(outcomes) == 0
    paths = dose_paths(design, outcomes, as_list(a["cohort_sizes"]), next_dose=a["next_dose"] if empty else None)
    assert paths.root.rec.next_dose == a["next_dose"]
    compare(paths, case["nodes"], skip_root=True)
    # the dtpcrm table, row for row
    rows = paths.table()
    assert len(rows) == int(np.prod([s + 1 for s in as_list(a["cohort_sizes"])]))
    assert all(r["D0"] == a["next_dose"] for r in rows)


@pytest.mark.parametrize("case", cases("tite"))
def test_tite_paths_equal_r(case):
    a = case["args"]
    window = a["window"]
    if case["design"] == "tite-crm":
        design = CRM(as_list(a["skeleton"]), a["target"], window=window, weights=a["scheme"])
        if a["dont_skip"]:
            design = DontSkip(design)
    else:
        design = TiteBOIN(a["target"], a["levels"], window, max_pending=a["max_pending"], extrasafe=a["extrasafe"],
                          n_earlystop=a["n_earlystop"])
    outcomes = Outcomes.from_lists(as_list(a["dose"]), as_list(a["tox"]), as_list(a["followup"]))
    compare(dose_paths(design, outcomes, as_list(a["cohort_sizes"]), window=window), case["nodes"])


def test_fixtures_cover_stops_suspensions_and_pending():
    decisions = set()
    for name in ("three_plus_three", "boin", "tite"):
        for case in json.loads((ROOT / f"{name}.json").read_text())["cases"]:
            for n in case["nodes"]:
                decisions.add("pending" if n["path"].startswith("P:") else "stop" if not n["continue"] else "go")
    assert decisions == {"pending", "stop", "go"}


# ---------------------------------------------------------------- behaviour beyond the fixtures

def test_pending_patients_are_resolved_before_the_next_cohort():
    design = DontSkip(CRM([0.08, 0.16, 0.25, 0.35, 0.46], 0.25, window=28))
    outcomes = Outcomes.from_lists([1, 1, 1, 2, 2], [0, 0, 0, 0, 0], [28, 28, 28, 14, 7])
    paths = dose_paths(design, outcomes, [3], window=28, patient_ids=["a", "b", "c", "d", "e"])
    assert [p.patient_id for p in paths.pending] == ["d", "e"]
    assert [p.weight for p in paths.pending] == [0.5, 0.25]
    pending_nodes = [n for n in paths.nodes if n.kind == "pending"]
    assert [n.path for n in pending_nodes] == ["P:NN", "P:NT", "P:TN", "P:TT"]
    assert all(len(n.children) == 4 for n in pending_nodes)
    # two DLTs at dose 2 cannot recommend a higher dose than none
    by = paths.by_path()
    assert by["P:TT"].rec.next_dose <= by["P:NN"].rec.next_dose
    rows = paths.table()
    assert len(rows) == 16 and set(rows[0]) >= {"pending", "P", "D0", "T1", "D1"}


def test_non_tite_design_leaves_pending_out_of_the_root():
    boin = BOIN(0.25, 5)
    outcomes = Outcomes.from_lists([1, 1, 1, 2, 2, 2], [0, 0, 0, 0, 1, 0], [28, 28, 28, 28, 10, 5])
    paths = dose_paths(boin, outcomes, [3], window=28)
    counted = Outcomes.from_lists([1, 1, 1, 2, 2], [0, 0, 0, 0, 1])
    assert paths.root.rec.to_dict() == boin.fit(counted, 2).to_dict()
    assert [p.row for p in paths.pending] == [5]
    assert paths.by_path()["P:T"].rec.next_dose == 1  # 2/3 at dose 2: de-escalate


def test_stop_ends_a_path_and_override_needs_no_pending():
    design = ThreePlusThree(3)
    paths = dose_paths(design, parse_outcomes("1TTN"), [3, 3])
    assert len(paths.nodes) == 1 and paths.root.rec.decision == "stop"
    with pytest.raises(ValueError, match="pending"):
        dose_paths(BOIN(0.25, 3), Outcomes.from_lists([1], [0], [3]), [3], window=28, next_dose=2)
    with pytest.raises(ValueError, match="at most"):
        dose_paths(BOIN(0.25, 3), parse_outcomes("1NNN"), [3] * 12)
    with pytest.raises(ValueError, match="whole numbers"):
        dose_paths(BOIN(0.25, 3), parse_outcomes("1NNN"), [0])


def test_cohort_outcomes_order():
    assert cohort_outcomes(3) == ["NNN", "NNT", "NTT", "TTT"]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=0, max_size=4), st.integers(3, 6), st.sampled_from([0.2, 0.25, 0.3]))
def test_boin_paths_more_dlts_never_a_higher_dose(history, levels, target):
    """At every node, the next dose after more DLTs in the cohort is never higher (BOIN is monotone
    in the cohort's DLT count)."""
    design = BOIN(target, levels)
    dose, dlt, d = [], [], 1
    for y in history:
        dose += [d] * 3
        dlt += [1] * y + [0] * (3 - y)
        rec = design.fit(Outcomes.from_lists(dose, dlt))
        if rec.next_dose is None:
            break
        d = rec.next_dose
    paths = dose_paths(design, Outcomes.from_lists(dose, dlt), [3, 3])
    for node in paths.nodes:
        kids = [paths.nodes[k] for k in node.children]
        doses = [k.rec.next_dose if k.rec.next_dose is not None else 0 for k in kids]
        assert doses == sorted(doses, reverse=True)


# ---------------------------------------------------------------- the commands

def _invoke(args):
    import typer
    from typer.testing import CliRunner

    from dosewatch.escalation.cli import design_app
    from dosewatch.escalation.cohort_cli import cohort_app

    app = typer.Typer()
    app.add_typer(design_app, name="design")
    app.add_typer(cohort_app, name="cohort")
    return CliRunner().invoke(app, args)


def test_design_paths_command_matches_the_r_fixture(tmp_path):
    case = next(c for c in json.loads((ROOT / "boin.json").read_text())["cases"] if c["label"] == "one_dlt")
    a = case["args"]
    picture = tmp_path / "tree.svg"
    res = _invoke(["design", "paths", "--design", "boin", "--target", str(a["target"]), "--levels", str(a["levels"]),
                   "--outcomes", a["previous"], "--cohort-sizes", "3,3", "--picture", str(picture), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    got = {n["path"]: n["next_dose"] for n in out["nodes"]}
    assert got == {n["path"]: n["next_dose"] for n in case["nodes"]}
    assert len(out["table"]) == 16 and out["picture"] == str(picture)
    text = picture.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    res = _invoke(["design", "paths", "--design", "boin", "--target", "0.25", "--levels", "5", "--outcomes", "1NNN"])
    assert res.exit_code == 0 and "dose-transition pathways" in res.stdout


def test_design_paths_tite_from_csv_and_errors(tmp_path):
    data = tmp_path / "c.csv"
    data.write_text("dose,dlt,followup,patient_id\n1,0,28,a\n1,0,28,b\n1,0,28,c\n2,0,20,d\n2,1,9,e\n2,0,6,f\n")
    res = _invoke(["design", "paths", "--design", "tite-boin", "--target", "0.25", "--levels", "5", "--window", "28",
                   "--data", str(data), "--cohort-sizes", "3", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [p["dose"] for p in out["pending"]] == [2, 2] and out["now"]["decision"] == "suspend"
    assert {r["pending"] for r in out["table"]} == {"NN", "NT", "TN", "TT"}
    bad = [["design", "paths", "--design", "boin", "--target", "0.25", "--levels", "5", "--outcomes", "1NNN",
            "--data", str(data)],
           ["design", "paths", "--design", "boin", "--target", "0.25", "--levels", "5", "--outcomes", "9NNN"],
           ["design", "paths", "--design", "boin", "--target", "0.25", "--levels", "5", "--cohort-sizes", "3,x"],
           ["design", "paths", "--design", "tite-crm", "--target", "0.25", "--skeleton", "0.1,0.2,0.3", "--window",
            "28", "--outcomes", "1NNN"],
           ["design", "paths", "--design", "boin", "--target", "0.25", "--levels", "5", "--picture", "x.txt"]]
    for args in bad:
        res = _invoke(args)
        assert res.exit_code == 2 and "error:" in res.stderr, args


def test_cohort_paths_from_monitored_records():
    seed = Path(__file__).resolve().parents[1] / "src" / "dosewatch" / "data" / "seed" / "seed-patients.json"
    res = _invoke(["cohort", "paths", str(seed), "--protocol", "lenalidomide-cll-escalation", "--design", "boin",
                   "--target", "0.25", "--as-of", "2007-06-10", "--cohort-sizes", "3", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    # seed-4 started 2007-06-04: 7 days into the 28-day window, no DLT yet -> pending
    assert [(p["patient_id"], p["followup"]) for p in out["pending"]] == [("seed-4", 7.0)]
    assert out["now"]["next_dose"] == 5  # 3/3 at dose 6 already eliminates it
    assert {n["path"] for n in out["nodes"] if n["kind"] == "pending"} == {"P:N", "P:T"}
    assert [c["status"] for c in out["cohort"]] == ["DLT", "DLT", "DLT", "in window"]
