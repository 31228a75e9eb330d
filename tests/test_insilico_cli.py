"""``dosewatch insilico run``: end to end on the shipped seed scenario and on a user's scenario file."""
from __future__ import annotations

import json

import pytest

from typer.testing import CliRunner

from dosewatch.cli import app

runner = CliRunner()


def test_run_the_shipped_seed_scenario_writes_json_with_intervals(tmp_path):
    out, html = tmp_path / "seed.json", tmp_path / "seed.html"
    result = runner.invoke(app, ["insilico", "run", "seed-start-low", "--patients", "12", "--seed", "3", "--out", str(out),
                                 "--html", str(html)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    page = html.read_text()
    assert "2.5mg-monthly-escalation" in page and "<svg" in page and "http" not in page.replace("http://www.w3.org", "")
    assert data["patients"] == 12 and data["seed"] == 3
    assert [a["id"] for a in data["arms"]] == ["25mg-from-day-1", "25mg-from-day-1-with-allopurinol", "2.5mg-monthly-escalation"]
    assert [a["start_dose"] for a in data["arms"]] == [25.0, 25.0, 2.5]
    for arm in data["arms"]:
        for key in ("lab_tls", "clinical_tls", "flare3", "fn", "death"):
            o = arm["cycle1"][key]
            lo, hi = o["ci95"]
            assert 0 <= lo <= o["rate"] <= hi <= 1
        assert set(arm["detection"]) >= {"lab_tls", "flare3", "fn", "tls_caught_before_clinical"}
        assert arm["treatment"]["monitor_evaluations"] > 0
    assert "versus_first_arm" not in data["arms"][0]
    for arm in data["arms"][1:]:
        for key, d in arm["versus_first_arm"].items():
            lo, hi = d["ci95"]
            assert lo <= d["difference"] <= hi
            assert d["difference"] == pytest.approx(arm["cycle1"][key]["rate"] - data["arms"][0]["cycle1"][key]["rate"], abs=1e-4)


def test_a_user_scenario_file_with_a_start_level_and_weekly_labs(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(
        "id: mine\ntitle: test\npatients: 8\nseed: 1\ndays: 10\n"
        "arms:\n"
        "  - {id: low, protocol: lenalidomide-cll-25mg-2007, start_level: 1, labs: weekly}\n"
    )
    result = runner.invoke(app, ["insilico", "run", str(f)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["arms"][0]["start_dose"] == 5.0 and data["arms"][0]["labs"] == "weekly"


def test_bad_scenarios_are_errors_naming_the_field_not_tracebacks(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("id: x\ntitle: t\narms:\n  - {id: a, protocol: lenalidomide-cll-25mg-2007, labs: hourly}\n")
    result = runner.invoke(app, ["insilico", "run", str(f)])
    assert result.exit_code == 2 and "labs" in result.output
    f.write_text("id: x\ntitle: t\narms:\n  - {id: a, protocol: lenalidomide-cll-25mg-2007, start_level: 9}\n")
    result = runner.invoke(app, ["insilico", "run", str(f)])
    assert result.exit_code == 2 and "start_level" in result.output
    f.write_text("id: x\ntitle: t\nparameters: {no_such: 1}\narms:\n  - {id: a, protocol: lenalidomide-cll-25mg-2007}\n")
    result = runner.invoke(app, ["insilico", "run", str(f)])
    assert result.exit_code == 2 and "no_such" in result.output
    f.write_text("id: x\ntitle: t\nparameters: {kill_max: abc}\narms:\n  - {id: a, protocol: lenalidomide-cll-25mg-2007}\n")
    result = runner.invoke(app, ["insilico", "run", str(f)])
    assert result.exit_code == 2 and "kill_max" in result.output and "shape" in result.output
    f.write_text("")
    result = runner.invoke(app, ["insilico", "run", str(f)])
    assert result.exit_code == 2
    result = runner.invoke(app, ["insilico", "run", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "no such file" in result.output
    f.write_text("id: x\ntitle: t\narms:\n  - {id: a, protocol: venetoclax-cll-rampup}\n")
    result = runner.invoke(app, ["insilico", "run", str(f)])
    assert result.exit_code == 2 and "lenalidomide only" in result.output
    f.write_text("id: x\ntitle: t\narms:\n  - {id: a, protocol: no-such-protocol}\n")
    result = runner.invoke(app, ["insilico", "run", str(f)])
    assert result.exit_code == 2


def test_a_protocol_asking_for_what_the_model_does_not_simulate_says_so(tmp_path):
    import yaml

    from dosewatch.protocols import load_protocol

    d = load_protocol("lenalidomide-cll-25mg-2007").model_dump(mode="json")
    d["id"] = "with-vitals"
    d["monitoring"][1]["codes"] = ["LNDIAM", "LNTENDER", "TEMP", "PAIN", "HR"]
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(d))
    (tmp_path / "s.yaml").write_text("id: s\ntitle: s\npatients: 4\ndays: 3\narms:\n  - {id: a, protocol: p.yaml}\n")
    result = runner.invoke(app, ["insilico", "run", str(tmp_path / "s.yaml")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["arms"][0]["not_simulated"] == ["HR"]


def test_the_arms_on_a_dask_cluster_give_the_same_numbers(tmp_path):
    """`insilico run --dask local`: each arm a task on two worker processes, the same JSON as serial."""
    pytest.importorskip("distributed")
    import subprocess
    import sys
    from pathlib import Path

    dosewatch = str(Path(sys.executable).parent / "dosewatch")
    outs = []
    for extra in ([], ["--dask", "local"]):
        out = tmp_path / f"r{len(outs)}.json"
        run = subprocess.run([dosewatch, "insilico", "run", "seed-start-low", "--patients", "40", "--seed", "9",
                              "-o", str(out), *extra], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-2000:]
        outs.append(out.read_text())
    assert outs[0] == outs[1]
