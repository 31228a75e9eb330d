"""``dosewatch insilico calibrate``: the model's rates against the published ones, honestly labelled."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dosewatch.cli import app
from dosewatch.insilico import params
from dosewatch.insilico.calibration import target_protocol
from dosewatch.insilico.outcomes import OUTCOMES, clopper_pearson


def test_clopper_pearson_known_values():
    assert clopper_pearson(0, 10)[0] == 0.0
    assert clopper_pearson(0, 10)[1] == pytest.approx(1 - 0.025 ** (1 / 10))
    assert clopper_pearson(10, 10) == (pytest.approx(0.025 ** (1 / 10)), 1.0)
    lo, hi = clopper_pearson(5, 18)
    assert lo < 5 / 18 < hi
    assert clopper_pearson(0, 0) == (0.0, 1.0)


def test_every_target_is_a_seen_published_count_labelled_tuned_or_held_out():
    table = params.table("targets")
    for t in table["targets"]:
        assert t["source"] in table["sources"]
        assert t["use"] in ("tuned", "held-out")
        assert t["outcome"] in OUTCOMES
        assert 0 <= t["events"] <= t["patients"]
        target_protocol(t["arm"])  # every regimen builds
    assert any(t["use"] == "held-out" for t in table["targets"])


def test_group_b_regimen_is_10_mg_with_prednisone_and_fortnightly_steps():
    table = params.table("targets")
    spec = next(t for t in table["targets"] if t["id"] == "chanan-khan-b-any-flare")["arm"]
    p = target_protocol(spec)
    assert p.study_drug.dose_at(p.study_drug.start_level) == 10
    assert p.study_drug.escalation.every_days == 14
    assert [(s.days, s.dose) for s in p.prophylaxis[0].steps] == [((1, 2, 3, 4, 5), 20), ((6, 7, 8, 9, 10), 10)]
    assert p.prophylaxis[0].drug == "prednisone"


def test_calibrate_command_reports_each_target_with_both_intervals(tmp_path):
    out = tmp_path / "c.json"
    result = CliRunner().invoke(app, ["insilico", "calibrate", "--patients", "30", "--seed", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert len(data["targets"]) == len(params.table("targets")["targets"])
    for r in data["targets"]:
        lo, hi = r["published"]["ci95"]
        assert r["within"] == (lo <= r["model"]["rate"] <= hi)
    assert data["held_out"] == sum(r["use"] == "held-out" for r in data["targets"])
    assert "nothing is fitted" in data["fitted"]
