"""A dose-finding design on virtual patients: the DLT rate of each level as the monitor judges it
(same patients at every level), and the design's operating characteristics on those rates."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dosewatch.escalation.simulate import simulate
from dosewatch.protocols import builtin

DOSEWATCH = str(Path(sys.executable).parent / "dosewatch")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("design") / "design.json"
    run = subprocess.run([DOSEWATCH, "insilico", "design", "lenalidomide-cll-escalation", "--design", "boin",
                          "--target", "0.3", "--patients", "30", "--trials", "400", "--seed", "3", "-o", str(out)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "selected as MTD" in run.stderr
    return json.loads(out.read_text())


def test_more_drug_more_dlts_on_the_same_patients(result):
    rates = [r["dlt_rate"] for r in result["levels"]]
    assert [r["dose"] for r in result["levels"]] == [2.5, 5, 10, 15, 20, 25]
    assert rates[-1] > rates[0] and max(rates) == rates[-1]
    for r in result["levels"]:
        assert r["ci95"][0] <= r["dlt_rate"] <= r["ci95"][1] and r["patients"] == 30


def test_the_design_decides_on_those_rates_as_escalation_simulate_does(result):
    curve = [min(r["dlt_rate"], 0.999) for r in result["levels"]]
    direct = simulate("boin", curve, target=0.3, max_cohorts=10, trials=400, seed=4, start_dose=1).to_dict()
    oc = result["operating_characteristics"]
    assert oc["selected_as_mtd_pct"] == [round(x, 1) for x in direct["selection_pct"]]
    assert sum(oc["selected_as_mtd_pct"]) + oc["stopped_without_mtd_pct"] == pytest.approx(100, abs=0.5)


def test_same_seed_same_rates():
    from dosewatch.insilico.dose_finding import dlt_by_level

    protocol = builtin("lenalidomide-cll-escalation")
    a = dlt_by_level(protocol, patients=20, seed=5, levels=[1, 6])
    assert a == dlt_by_level(protocol, patients=20, seed=5, levels=[1, 6])


def test_a_drug_the_model_does_not_have_is_refused():
    run = subprocess.run([DOSEWATCH, "insilico", "design", "venetoclax-cll-rampup", "--design", "3+3"],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "venetoclax" in run.stderr and "Traceback" not in run.stderr
