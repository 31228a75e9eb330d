"""Operating-characteristic simulation: the vectorised engines decide as the scalar designs do, the
3+3 matches its exact enumeration, the CRM quadrature matches fit_crm, and the simulated
characteristics agree with the R packages' within a Monte Carlo tolerance computed from the
trial counts (tests/fixtures/dosefinding/sim, written by tools/r/make_sim_fixtures.R)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dosewatch.escalation import make_design
from dosewatch.escalation.base import Outcomes
from dosewatch.escalation.boin import boin_boundaries, select_mtd
from dosewatch.escalation.cli import design_app
from dosewatch.escalation.crm import fit_crm, get_prior
from dosewatch.escalation.sim_rules import _boin_tables, _prob_table
from dosewatch.escalation.simulate import (CrmPosterior, boin_batch, crm_batch, make_settings, select_mtd_batch,
                                           simulate, simulate_grid, three_plus_three_batch, three_plus_three_exact,
                                           tite_boin_batch)

SIM = Path(__file__).parent / "fixtures" / "dosefinding" / "sim"
S1 = [0.05, 0.10, 0.20, 0.30, 0.45]
SK = get_prior(0.05, 0.25, 3, 5)
Z = 4.0  # Monte Carlo tolerance: 4 standard errors


# --- building blocks ------------------------------------------------------------------------------


@pytest.mark.parametrize("pseudo,extrasafe,bound", [(0.05, False, False), (0.05, True, True), (0.005, False, False)])
def test_select_mtd_batch_equals_scalar(pseudo, extrasafe, bound):
    rng = np.random.default_rng(11)
    n = rng.integers(0, 10, size=(3000, 6))
    n[rng.random(n.shape) < 0.3] = 0  # untreated gaps
    y = np.minimum(n, rng.binomial(n, rng.uniform(0.05, 0.7, size=(3000, 1))))
    got = select_mtd_batch(0.25, n, y, extrasafe=extrasafe, bound_mtd=bound, pseudo=pseudo)
    for i in range(n.shape[0]):
        want, _ = select_mtd(0.25, n[i], y[i], extrasafe=extrasafe, bound_mtd=bound, pseudo=pseudo)
        assert got[i] == (want or 0), (n[i], y[i])


@pytest.mark.parametrize("target,cs,k", [(0.2, 3, 10), (0.25, 1, 30), (0.3, 4, 8), (0.33, 2, 15), (0.5, 3, 10)])
def test_boundary_tables_equal_get_boundary(target, cs, k):
    s = make_settings("boin", [0.1] * 4, target=target, cohort_size=cs, max_cohorts=k)
    b_e, b_d, b_el = _boin_tables(s, _prob_table(target, cs * k))
    for row in boin_boundaries(target, cs, k, n_earlystop=cs * k)["table"]:
        assert b_e[row["n"]] == row["escalate_max"]
        assert b_d[row["n"]] == row["deescalate_min"]
        assert b_el[row["n"]] == (row["eliminate_min"] if row["eliminate_min"] is not None else cs * k + 1)


def _replay(engine, s, trials, seed):
    """The same uniforms as the engine, consumed one trial at a time by a scalar design."""
    rng = np.random.default_rng(seed)
    u = [rng.random((trials, s.cohort_size)) for _ in range(s.max_cohorts)]
    out = engine(s, np.random.default_rng(seed), trials)
    return out, u


def test_boin_engine_decides_as_boin_fit():
    for target, tox, kw in ((0.25, S1, {}), (0.3, [0.1, 0.25, 0.4, 0.55, 0.7], {"extrasafe": True, "n_earlystop": 9}),
                            (0.25, [0.45, 0.55, 0.6, 0.7, 0.8], {})):
        s = make_settings("boin", tox, target=target, cohort_size=3, max_cohorts=10, **kw)
        out, u = _replay(boin_batch, s, 400, 3)
        design = make_design("boin", target, levels=5, **kw)
        p = np.asarray(tox)
        for t in range(400):
            dose, dlt, d, mtd = [], [], 1, None
            for c in range(s.max_cohorts):
                k = int((u[c][t] < p[d - 1]).sum())
                dose += [d] * 3
                dlt += [1] * k + [0] * (3 - k)
                if c == s.max_cohorts - 1:
                    mtd = design.select_mtd(Outcomes.from_lists(dose, dlt)).mtd
                    break
                rec = design.fit(Outcomes.from_lists(dose, dlt), d)
                if rec.decision == "stop":
                    mtd = rec.mtd
                    break
                d = rec.next_dose
            n, y = Outcomes.from_lists(dose, dlt).counts(5)
            assert out.n[t].tolist() == n.tolist() and out.y[t].tolist() == y.tolist()
            assert out.mtd[t] == (mtd or 0)


def test_three_plus_three_engine_decides_as_design():
    tox = [0.1, 0.2, 0.35, 0.5]
    s = make_settings("3+3", tox, target=None, cohort_size=3, max_cohorts=8)
    out, u = _replay(three_plus_three_batch, s, 500, 5)
    design = make_design("3+3", levels=4)
    for t in range(500):
        dose, dlt, d, mtd = [], [], 1, None
        for c in range(8):
            k = int((u[c][t] < tox[d - 1]).sum())
            dose += [d] * 3
            dlt += [1] * k + [0] * (3 - k)
            rec = design.fit(Outcomes.from_lists(dose, dlt), d)
            if rec.decision == "stop":
                mtd = rec.mtd
                break
            d = rec.next_dose
        n, _ = Outcomes.from_lists(dose, dlt).counts(4)
        assert out.n[t].tolist() == n.tolist()
        assert out.mtd[t] == (mtd or 0)


def test_three_plus_three_exact_against_simulation():
    for tox in (S1, [0.02, 0.05, 0.1, 0.15, 0.2, 0.3], [0.5, 0.6, 0.7]):
        exact = three_plus_three_exact(tox)
        assert math.isclose(sum(exact["selection"]) + exact["no_mtd"], 1.0, abs_tol=1e-12)
        N = 200_000
        r = simulate("3+3", tox, trials=N, seed=17, max_cohorts=2 * len(tox)).to_dict()
        for got, p in zip(r["selection_pct"] + [r["stop_pct"]], exact["selection"] + [exact["no_mtd"]]):
            assert abs(got / 100 - p) <= Z * math.sqrt(max(p * (1 - p), 1e-12) / N) + 1e-12
        # expected patients per dose: a count in 0..6, so its SD is at most 3
        for got, want in zip(r["mean_patients"], exact["mean_patients"]):
            assert abs(got - want) <= Z * 3 / math.sqrt(N)


def test_three_plus_three_exact_small_case_by_hand():
    # one dose: 0/3 -> expand to six (top dose); MTD iff <= 1 DLT in six with the first three clean, or 1/3 then 0/3
    p = 0.2
    e = three_plus_three_exact([p])
    q = 1 - p
    want = q**3 * (q**3 + 3 * p * q**2) + 3 * p * q**2 * q**3
    assert math.isclose(e["selection"][0], want, rel_tol=1e-12)


def _trial_states(model):
    """Every (n, y) state reached by simulated CRM trials."""
    sk = get_prior(0.05, 0.25, 3, 5, model)
    s = make_settings("crm", S1, target=0.25, cohort_size=3, max_cohorts=10, skeleton=sk, model=model)
    out = crm_batch(s, np.random.default_rng(2), 60)
    states = set()
    rng = np.random.default_rng(3)
    for t in range(60):
        for frac in (0.2, 0.5, 1.0):  # partial trials by thinning the final counts
            n = np.floor(out.n[t] * frac).astype(int)
            y = np.minimum(out.y[t], n)
            if n.sum():
                states.add((tuple(n), tuple(y)))
    for _ in range(40):
        n = rng.integers(0, 7, 5)
        states.add((tuple(n), tuple(rng.binomial(n, 0.3))))
    return sk, sorted(states)


@pytest.mark.parametrize("model", ["empiric", "logistic"])
def test_crm_quadrature_matches_fit_crm(model):
    sk, states = _trial_states(model)
    post = CrmPosterior(sk, model=model)
    n = np.array([s[0] for s in states])
    y = np.array([s[1] for s in states])
    got = post.mean_beta(post.loglik_counts(n, y))
    worst = 0.0
    for i, (nn, yy) in enumerate(states):
        dose = np.repeat(np.arange(1, 6), nn)
        dlt = np.concatenate([[1] * b + [0] * (a - b) for a, b in zip(nn, yy)])
        f = fit_crm(sk, 0.25, dose, dlt, model=model)
        worst = max(worst, abs(got[i] - f.beta_mean))
        assert post.model_dose(got[i:i + 1], 0.25)[0] == f.model_dose
    assert worst < 1e-6


def test_crm_engine_decides_as_make_crm():
    s = make_settings("crm", S1, target=0.25, cohort_size=3, max_cohorts=6, skeleton=SK, start_dose=2)
    out, u = _replay(crm_batch, s, 60, 9)
    design = make_design("crm", 0.25, skeleton=SK)
    p = np.asarray(S1)
    for t in range(60):
        dose, dlt, d = [], [], 2
        for c in range(6):
            k = int((u[c][t] < p[d - 1]).sum())
            dose += [d] * 3
            dlt += [1] * k + [0] * (3 - k)
            rec = design.fit(Outcomes.from_lists(dose, dlt), d)
            if c == 5:
                assert out.mtd[t] == rec.extra["model_dose"]
            d = rec.next_dose
        n, _ = Outcomes.from_lists(dose, dlt).counts(5)
        assert out.n[t].tolist() == n.tolist()


def test_crm_safety_stop_stops_on_toxic_curve():
    r = simulate("crm", [0.5, 0.6, 0.7, 0.8, 0.9], target=0.25, trials=2000, seed=1, skeleton=SK, safety_stop=0.9)
    d = r.to_dict()
    assert d["stop_pct"] > 50
    assert math.isclose(sum(d["selection_pct"]) + d["stop_pct"], 100.0)
    assert d["mean_n"] < 30


# --- results, seeds, grid -------------------------------------------------------------------------


def test_same_seed_same_result_whatever_the_batches_and_grid():
    a = simulate("boin", S1, target=0.25, trials=5000, seed=4, batch_size=1000).to_dict()
    b = simulate("boin", S1, target=0.25, trials=5000, seed=4, batch_size=1000).to_dict()
    c = simulate("boin", S1, target=0.25, trials=5000, seed=5, batch_size=1000).to_dict()
    for x in (a, b, c):
        x.pop("elapsed_s")
    assert a == b and a != c
    grid = simulate_grid({"S1": S1}, {"boin": {"design": "boin"}}, target=0.25, trials=5000, seed=4, batch_size=1000)
    g = grid[0].to_dict()
    g.pop("elapsed_s")
    assert {**g, "scenario": ""} == a


def test_grid_and_fields():
    res = simulate_grid({"low": [0.02, 0.05, 0.1], "high": [0.3, 0.5, 0.6]},
                        {"BOIN": {"design": "boin"}, "3+3": {"design": "3+3"},
                         "TITE": {"design": "tite-boin", "window": 28, "accrual": 0.3}},
                        target=0.3, max_cohorts=6, trials=500, seed=2)
    assert [(r.scenario, r.label) for r in res] == [(s, d) for s in ("low", "high") for d in ("BOIN", "3+3", "TITE")]
    for r in res:
        d = r.to_dict()
        assert d["trials"] == 500 and len(d["selection_pct"]) == 3
        assert math.isclose(sum(d["selection_pct"]) + d["stop_pct"], 100.0)
        assert ("mean_duration_days" in d) == (r.label == "TITE")
        assert math.isclose(d["mean_n"], sum(d["mean_patients"]))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="skeleton"):
        simulate("crm", S1, target=0.25, trials=10)
    with pytest.raises(ValueError, match="--window"):
        simulate("tite-boin", S1, target=0.25, trials=10, accrual=1)
    with pytest.raises(ValueError, match="cohorts of 3"):
        simulate("3+3", S1, cohort_size=2, trials=10)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        simulate("boin", [0.1, 1.2], target=0.25, trials=10)
    with pytest.raises(ValueError, match="does not take"):
        simulate("boin", S1, target=0.25, trials=10, skeleton=SK)


def test_tite_boin_with_slow_accrual_behaves_like_boin():
    # with one patient every 200 days and a 28-day window nobody is pending at a decision, so
    # TITE-BOIN's decisions are BOIN's (its selection uses pseudo-counts 0.005 instead of 0.05)
    N = 20_000
    t = simulate("tite-boin", S1, target=0.25, trials=N, seed=3, window=28, accrual=1 / 200).to_dict()
    b = simulate("boin", S1, target=0.25, trials=N, seed=8).to_dict()
    for x, y in zip(t["mean_patients"], b["mean_patients"]):
        assert abs(x - y) <= Z * 10 * math.sqrt(2 / N)
    assert t["mean_duration_days"] > 28 * 10


def test_tite_boin_engine_suspends_with_fast_accrual():
    s = make_settings("tite-boin", S1, target=0.25, cohort_size=3, max_cohorts=10, window=28, accrual=5)
    out = tite_boin_batch(s, np.random.default_rng(1), 500)
    # fast accrual waits for follow-up: a trial lasts at least 10 cohorts' worth of half windows
    assert (out.duration > 28).all()
    assert (out.n.sum(axis=1) <= 30).all()


# --- against the R packages -----------------------------------------------------------------------


def _compare(case, ours, per_trial_sd, what):
    n_r, n_o = case["trials"], ours["trials"]
    for i, (r, o) in enumerate(zip(case["selection_pct"] + [case["stop_pct"]], ours["selection_pct"] + [ours["stop_pct"]])):
        p = max((r / 100 * n_r + o / 100 * n_o) / (n_r + n_o), 1 / (n_r + n_o))
        tol = 100 * Z * math.sqrt(p * (1 - p) * (1 / n_r + 1 / n_o))
        assert abs(r - o) <= tol, f"{what} {case['name']} selection[{i}]: R {r:.2f} vs {o:.2f} (tol {tol:.2f})"
    for key in ("mean_patients", "mean_dlts"):
        for i, (r, o) in enumerate(zip(case[key], ours[key])):
            tol = Z * per_trial_sd[key][i] * math.sqrt(1 / n_r + 1 / n_o) + 1e-9
            assert abs(r - o) <= tol, f"{what} {case['name']} {key}[{i}]: R {r:.3f} vs {o:.3f} (tol {tol:.3f})"


def _sds(engine, s, trials, seed):
    out = engine(s, np.random.default_rng(seed), trials)
    sd = {"mean_patients": out.n.std(axis=0, ddof=1), "mean_dlts": out.y.std(axis=0, ddof=1)}
    return {k: np.maximum(v, 0.5 / math.sqrt(trials)) for k, v in sd.items()}, out


def _fixture(name):
    path = SIM / name
    if not path.exists():
        pytest.skip(f"{path} not generated (tools/r/make_sim_fixtures.R)")
    return json.loads(path.read_text())["cases"]


def test_boin_against_get_oc():
    for case in _fixture("boin.json"):
        kw = dict(target=case["target"], cohort_size=case["cohortsize"], max_cohorts=case["ncohort"],
                  start_dose=case["start_dose"], extrasafe=case["extrasafe"], n_earlystop=case["n_earlystop"])
        ours = simulate("boin", case["true_tox"], trials=50_000, seed=21, **kw).to_dict()
        sd, _ = _sds(boin_batch, make_settings("boin", case["true_tox"], **kw), 20_000, 22)
        _compare(case, ours, sd, "BOIN")


def test_crm_against_crmsim():
    for case in _fixture("crm.json"):
        kw = dict(target=case["target"], cohort_size=case["cohortsize"], max_cohorts=case["n"] // case["cohortsize"],
                  start_dose=case["x0"], skeleton=case["skeleton"], model=case["model"])
        ours = simulate("crm", case["true_tox"], trials=20_000, seed=23, **kw).to_dict()
        sd, _ = _sds(crm_batch, make_settings("crm", case["true_tox"], **kw), 5_000, 24)
        _compare(case, ours, sd, "CRM")


def test_tite_boin_against_titegboin():
    for case in _fixture("tite_boin.json"):
        kw = dict(target=case["target"], cohort_size=case["cohortsize"], max_cohorts=case["ncohort"],
                  window=case["window"], accrual=case["accrual"], max_pending=case["max_pending"],
                  late_fraction=case["late_fraction"])
        ours = simulate("tite-boin", case["true_tox"], trials=20_000, seed=25, **kw).to_dict()
        sd, out = _sds(tite_boin_batch, make_settings("tite-boin", case["true_tox"], **kw), 10_000, 26)
        _compare(case, ours, sd, "TITE-BOIN")
        dur_sd = float(out.duration.std(ddof=1))
        tol = Z * dur_sd * math.sqrt(1 / case["trials"] + 1 / ours["trials"])
        assert abs(case["mean_duration_days"] - ours["mean_duration_days"]) <= tol


# --- command line ---------------------------------------------------------------------------------


def test_simulate_command_json_and_html(tmp_path):
    report = tmp_path / "oc.html"
    res = CliRunner().invoke(design_app, ["simulate", "--design", "boin", "--true-tox", "0.05,0.10,0.20,0.30,0.45",
                                          "--target", "0.25", "--cohort-size", "3", "--max-cohorts", "10",
                                          "--trials", "2000", "--seed", "3", "--json", "--html", str(report)])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    for key in ("trials", "selection_pct", "stop_pct", "mean_patients", "mean_dlts", "mean_n", "elapsed_s"):
        assert key in d
    assert "mean_duration_days" not in d
    assert math.isclose(sum(d["selection_pct"]) + d["stop_pct"], 100.0)
    text = report.read_text()
    assert "<svg" in text and "<script" not in text and "src=" not in text and "<link" not in text
    assert "0.05, 0.1, 0.2, 0.3, 0.45" in text


def test_simulate_command_tite_and_several_designs():
    res = CliRunner().invoke(design_app, ["simulate", "--design", "tite-boin", "--design", "crm", "--true-tox",
                                          "0.05,0.12,0.25,0.40,0.55", "--target", "0.25", "--trials", "300",
                                          "--window", "28", "--accrual", "0.2", "--skeleton",
                                          ",".join(map(str, SK)), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert [r["design"] for r in d["results"]] == ["tite-boin", "crm"]
    assert "mean_duration_days" in d["results"][0] and "mean_duration_days" not in d["results"][1]


def test_simulate_command_errors():
    res = CliRunner().invoke(design_app, ["simulate", "--design", "crm", "--true-tox", "0.1,0.2", "--target", "0.25"])
    assert res.exit_code == 2 and "skeleton" in res.stderr
    res = CliRunner().invoke(design_app, ["simulate", "--design", "boin", "--true-tox", "0.1,x", "--target", "0.25"])
    assert res.exit_code == 2 and "--true-tox" in res.stderr
