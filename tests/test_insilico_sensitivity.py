"""The tornado: one parameter at a time at the ends of its range, on the model alone."""
from __future__ import annotations

from typer.testing import CliRunner

from dosewatch.cli import app
from dosewatch.insilico.scenario import Scenario
from dosewatch.insilico.sensitivity import tornado, tornado_svg


def _scenario() -> Scenario:
    return Scenario.model_validate({
        "id": "t", "title": "t", "patients": 10, "seed": 4, "days": 14,
        "arms": [{"id": "high", "protocol": "lenalidomide-cll-25mg-2007"},
                 {"id": "low", "protocol": "lenalidomide-cll-escalation"}]})


def test_kill_rate_moves_tls_in_the_direction_it_should_and_rows_are_sorted_by_swing():
    r = tornado(_scenario(), outcome="lab_tls", patients=300, names=["kill_max", "ca_mean", "allopurinol_block"])
    rows = {x["parameter"]: x for x in r["parameters"]}
    kill = rows["kill_max"]
    # more kill, more TLS at 25 mg
    assert kill["high"]["rates"][0] > kill["low"]["rates"][0]
    assert kill["low"]["value"] < kill["central"] < kill["high"]["value"]
    swings = [x["swing"] for x in r["parameters"]]
    assert swings == sorted(swings, reverse=True)
    for x in r["parameters"]:
        assert abs(x["swing"] - abs(x["high"]["difference"] - x["low"]["difference"])) < 1e-3
    assert "<svg" in tornado_svg(r) and "kill_max" in tornado_svg(r)


def test_sensitivity_command_and_its_errors(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("id: s\ntitle: s\npatients: 5\ndays: 7\narms:\n  - {id: a, protocol: lenalidomide-cll-25mg-2007}\n")
    runner = CliRunner()
    bad = runner.invoke(app, ["insilico", "sensitivity", str(f), "--outcome", "nonsense"])
    assert bad.exit_code == 2 and "unknown outcome" in bad.output


def test_joint_uncertainty_bands_hold_their_medians_and_are_reproducible():
    from dosewatch.insilico.sensitivity import joint_uncertainty

    a = joint_uncertainty(_scenario(), draws=6, patients=60)
    assert a == joint_uncertainty(_scenario(), draws=6, patients=60)
    for arm in a["arms"]:
        for key in ("lab_tls", "death"):
            lo, hi = arm[key]["interval95"]
            assert 0 <= lo <= arm[key]["median"] <= hi <= 1
    d = a["last_minus_first"]["lab_tls"]
    assert d["interval95"][0] <= d["median"] <= d["interval95"][1]
    assert 0 <= d["draws_last_arm_worse"] <= 6
