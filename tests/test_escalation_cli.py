"""The `design` commands (boundaries, skeleton, next, mtd) and the cohort CSV reader."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dosewatch.errors import InputError
from dosewatch.escalation.cli import design_app
from dosewatch.escalation.cohort_io import read_cohort

FIXTURES = Path(__file__).parent / "fixtures" / "dosefinding"
SKELETON = "0.08397349,0.15674102,0.25,0.35450043,0.46034311"
runner = CliRunner()


def run_json(*args: str) -> dict:
    res = runner.invoke(design_app, [*args, "--json"])
    assert res.exit_code == 0, res.output + (res.stderr or "")
    return json.loads(res.stdout)


def write(tmp_path: Path, text: str, name: str = "COHORT.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_boundaries_json_matches_get_boundary():
    out = run_json("boundaries", "--design", "boin", "--target", "0.3", "--cohort-size", "3",
                   "--max-cohorts", "10", "--extrasafe")
    r_case = next(c for c in json.loads((FIXTURES / "boundaries.json").read_text())["cases"]
                  if c["args"]["target"] == 0.3 and c["args"]["cohort_size"] == 3 and c["args"]["p_saf"] == 0.18
                  and c["args"]["max_cohorts"] == 10 and c["args"]["n_earlystop"] == 100)
    assert set(out) >= {"lambda_e", "lambda_d", "table"}
    assert len(out["table"]) == 30
    assert set(out["table"][0]) == {"n", "escalate_max", "deescalate_min", "eliminate_min", "stop_min"}
    for got, want in zip(out["table"], r_case["table"]):
        assert {k: got[k] for k in want} == want
    assert out["table"][2]["stop_min"] == 2  # extrasafe row present
    assert out["lambda_e"] == pytest.approx(r_case["lambda_e"], abs=1e-12)


def test_boundaries_cut_at_n_earlystop_and_table_output():
    out = run_json("boundaries", "--target", "0.25", "--cohort-size", "3", "--max-cohorts", "10", "--n-earlystop", "12")
    assert [r["n"] for r in out["table"]] == list(range(1, 13))
    assert all(r["stop_min"] is None for r in out["table"])
    res = runner.invoke(design_app, ["boundaries", "--target", "0.25", "--cohort-size", "3", "--max-cohorts", "2"])
    assert res.exit_code == 0 and "lambda_e 0.1968" in res.stdout


def test_boundaries_reject_bad_target():
    res = runner.invoke(design_app, ["boundaries", "--target", "0.7", "--cohort-size", "3", "--max-cohorts", "2"])
    assert res.exit_code == 2 and "too high" in res.stderr


def test_skeleton_json():
    out = run_json("skeleton", "--target", "0.25", "--halfwidth", "0.05", "--prior-mtd", "3", "--levels", "5")
    assert out["skeleton"] == pytest.approx([0.08397349, 0.15674102, 0.25, 0.35450043, 0.46034311], abs=1e-8)
    out = run_json("skeleton", "--target", "0.25", "--halfwidth", "0.05", "--prior-mtd", "3", "--levels", "5",
                   "--model", "logistic", "--intercept", "3")
    assert out["skeleton"][0] == pytest.approx(0.08887, abs=1e-5)


def test_next_boin(tmp_path):
    data = write(tmp_path, "dose,dlt\n1,0\n1,0\n1,0\n2,0\n2,1\n2,0\n")
    out = run_json("next", "--design", "boin", "--data", str(data), "--target", "0.25", "--levels", "5")
    assert {k: out[k] for k in ("next_dose", "decision")} == {"next_dose": 1, "decision": "de-escalate"}
    assert "lambda_d" in out["reason"]
    out = run_json("next", "--design", "boin", "--data", str(data), "--target", "0.3", "--levels", "5")
    assert (out["next_dose"], out["decision"]) == (2, "stay")
    out = run_json("next", "--design", "boin", "--data", str(data), "--target", "0.3", "--levels", "5",
                   "--current-dose", "1")
    assert (out["next_dose"], out["decision"]) == (2, "escalate")


def test_next_crm_fields_match_dfcrm(tmp_path):
    case = json.loads((FIXTURES / "crm.json").read_text())["cases"][0]  # one_dlt_after_escalation
    rows = "".join(f"{d},{t}\n" for d, t in zip(case["args"]["level"], case["args"]["tox"]))
    data = write(tmp_path, "dose,dlt\n" + rows)
    out = run_json("next", "--design", "crm", "--data", str(data), "--target", "0.25", "--skeleton",
                   ",".join(repr(p) for p in case["args"]["skeleton"]))
    assert set(out) >= {"next_dose", "decision", "reason", "model_dose", "ptox", "ptox_lower", "ptox_upper",
                        "beta_mean", "beta_var"}
    assert out["model_dose"] == case["mtd"]
    assert out["beta_mean"] == pytest.approx(case["estimate"], abs=1e-6)
    assert out["ptox_upper"] == pytest.approx(case["ptox_upper"], abs=1e-6)
    assert out["next_dose"] <= 3


def test_next_tite_designs(tmp_path):
    data = write(tmp_path, "dose,dlt,followup\n1,0,30\n1,0,30\n1,0,30\n2,0,10\n2,1,5\n2,0,2\n")
    out = run_json("next", "--design", "tite-crm", "--data", str(data), "--target", "0.25", "--skeleton",
                   SKELETON, "--window", "28", "--weights", "linear")
    assert out["weights"] == pytest.approx([1, 1, 1, 10 / 28, 1, 2 / 28])
    out = run_json("next", "--design", "tite-boin", "--data", str(data), "--target", "0.25", "--levels", "5",
                   "--window", "28")
    assert (out["decision"], out["next_dose"]) == ("suspend", 2)
    out = run_json("next", "--design", "tite-boin", "--data", str(data), "--target", "0.25", "--levels", "5",
                   "--window", "28", "--max-pending", "0.7")
    assert out["decision"] == "de-escalate"


def test_next_three_plus_three_and_stop(tmp_path):
    data = write(tmp_path, "dose,dlt\n1,1\n1,1\n1,0\n")
    out = run_json("next", "--design", "3+3", "--data", str(data), "--levels", "4")
    assert (out["next_dose"], out["decision"]) == (None, "stop")


def test_mtd_boin_isotonic(tmp_path):
    data = write(tmp_path, "dose,dlt\n" + "1,0\n" * 3 + "2,0\n2,1\n2,0\n" + "4,1\n4,1\n4,1\n")
    out = run_json("mtd", "--design", "boin", "--data", str(data), "--target", "0.3", "--levels", "5")
    assert out["mtd"] == 2
    assert out["isotonic"][2] is None and out["isotonic"][3] is None  # untreated, eliminated
    assert out["isotonic"][0] == pytest.approx(0.05 / 3.1)
    out = run_json("mtd", "--design", "boin", "--data", str(data), "--target", "0.3", "--levels", "5", "--bound-mtd")
    assert out["mtd"] == 2


def test_mtd_crm_and_three_plus_three(tmp_path):
    data = write(tmp_path, "dose,dlt\n" + "1,0\n" * 3 + "2,0\n" * 3 + "2,1\n" + "2,0\n" * 2 + "3,1\n3,1\n3,0\n")
    out = run_json("mtd", "--design", "3+3", "--data", str(data), "--levels", "5")
    assert out["mtd"] == 2
    out = run_json("mtd", "--design", "crm", "--data", str(data), "--target", "0.25", "--skeleton", SKELETON)
    assert out["mtd"] == out["model_dose"]


@pytest.mark.parametrize("text, where, column", [
    ("dose,dlt\n1,0\nx,0\n", "row 2", "dose"),
    ("dose,dlt\n1,0\n1,2\n", "row 2", "dlt"),
    ("dose,dlt\n1,0\n9,0\n", "row 2", "dose"),
    ("dose,dlt\n0,0\n", "row 1", "dose"),
    ("dose,dlt,followup\n1,0,-3\n", "row 1", "followup"),
    ("dose,dlt,followup\n1,0,\n", "row 1", "followup"),
    ("dose\n1\n", "header", "dlt"),
    ("dose,dlt\n1,0,5\n", "row 1", "-"),
])
def test_bad_cohort_file_names_row_and_column(tmp_path, text, where, column):
    path = write(tmp_path, text)
    with pytest.raises(InputError) as err:
        read_cohort(path, n_levels=5)
    problem = err.value.problems[0]
    assert problem.source == f"COHORT.csv {where}" and problem.field == column
    res = runner.invoke(design_app, ["next", "--design", "boin", "--data", str(path), "--target", "0.3",
                                     "--levels", "5", "--json"])
    assert res.exit_code == 2 and f"COHORT.csv {where}: {column}" in res.stderr


def test_cohort_reader_collects_every_problem_and_needs_followup_for_tite(tmp_path):
    path = write(tmp_path, "dose,dlt\nx,0\n1,maybe\n")
    with pytest.raises(InputError) as err:
        read_cohort(path)
    assert [(p.source, p.field) for p in err.value.problems] == [("COHORT.csv row 1", "dose"), ("COHORT.csv row 2", "dlt")]
    with pytest.raises(InputError, match="followup"):
        read_cohort(write(tmp_path, "dose,dlt\n1,0\n"), need_followup=True)
    empty = read_cohort(write(tmp_path, "dose,dlt\n"))
    assert len(empty) == 0
    o = read_cohort(write(tmp_path, "patient,dose,dlt\nA,2,1\nB,2,0\n"))
    assert o.dose.tolist() == [2, 2] and o.dlt.tolist() == [1, 0]


def _registered() -> bool:
    from dosewatch.cli import app

    return any(group.name == "design" for group in app.registered_groups)


@pytest.mark.skipif(not _registered(), reason="the lead has not registered design_app in dosewatch.cli yet")
def test_design_commands_through_the_installed_entry_point(tmp_path):
    data = write(tmp_path, "dose,dlt\n1,0\n1,0\n1,0\n")
    res = subprocess.run([sys.executable, "-m", "dosewatch.cli", "design", "next", "--design", "boin", "--data",
                          str(data), "--target", "0.25", "--levels", "5", "--json"],
                         capture_output=True, text=True, check=True)
    assert json.loads(res.stdout)["next_dose"] == 2
