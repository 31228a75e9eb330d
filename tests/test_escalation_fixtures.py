"""dosewatch against fixtures written by the real R packages (tools/r/make_fixtures.R):
BOIN 2.7.2, dfcrm 0.2-2.1 and TITEgBOIN 0.4.0. "main" holds hand-picked edge cases and random
cases; "heldout" holds random cases from another seed and wider parameter ranges, never looked at
while writing the code (the issue's "cases the tests did not write")."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dosewatch.escalation.base import Outcomes
from dosewatch.escalation.boin import BOIN, boin_boundaries, prob_above, select_mtd
from dosewatch.escalation.crm import adaptive_weights, fit_crm, get_prior, linear_weights
from dosewatch.escalation.tite_boin import TiteBOIN, tite_counts

ROOT = Path(__file__).parent / "fixtures" / "dosefinding"
SETS = {"main": ROOT, "heldout": ROOT / "heldout"}
ESTIMATE_TOL = 1e-6  # the tolerance; scipy's QUADPACK actually agrees to ~1e-14


def cases(name: str):
    out = []
    for set_name, folder in SETS.items():
        for i, case in enumerate(json.loads((folder / f"{name}.json").read_text())["cases"]):
            out.append(pytest.param(case, id=f"{set_name}-{case.get('label', i)}"))
    return out


def arr(x, dtype=float):
    return np.atleast_1d(np.asarray(x, dtype=dtype))


def outcomes_from_counts(n, y) -> Outcomes:
    dose, dlt = [], []
    for level, (nk, yk) in enumerate(zip(n, y), start=1):
        dose += [level] * int(nk)
        dlt += [1] * int(yk) + [0] * int(nk - yk)
    return Outcomes.from_lists(dose, dlt)


def test_fixture_provenance():
    for folder in SETS.values():
        meta = json.loads((folder / "crm.json").read_text())["meta"]
        assert meta["packages"] == {"BOIN": "2.7.2", "dfcrm": "0.2.2.1", "TITEgBOIN": "0.4.0"}


@pytest.mark.parametrize("case", cases("boundaries"))
def test_boin_boundaries(case):
    a = case["args"]
    got = boin_boundaries(a["target"], a["cohort_size"], a["max_cohorts"], n_earlystop=a["n_earlystop"],
                          p_saf=a["p_saf"], p_tox=a["p_tox"], cutoff_eli=a["cutoff_eli"],
                          extrasafe=a["extrasafe"], offset=a["offset"])
    if "error" in case:
        # BOIN's extrasafe loop never resets its flag: no count qualifies at n = 3 (3/3 gives
        # P = 0.87 for target 0.6) and R fails; dosewatch gives null there and the right rows above
        assert "stopneed" in case["error"]
        for row in got["table"]:
            if row["n"] >= 3:
                ys = np.arange(1, row["n"] + 1)
                ok = ys[prob_above(a["target"], ys, row["n"]) > a["cutoff_eli"] - a["offset"]]
                assert row["stop_min"] == (int(ok[0]) if ok.size else None)
        assert got["table"][2]["stop_min"] is None
        return
    assert got["lambda_e"] == pytest.approx(case["lambda_e"], abs=1e-12)
    assert got["lambda_d"] == pytest.approx(case["lambda_d"], abs=1e-12)
    expected = [{"stop_min": None, **row} for row in case["table"]]
    assert got["table"] == expected


@pytest.mark.parametrize("case", cases("select_mtd"))
def test_boin_select_mtd(case):
    a = case["args"]
    mtd, iso = select_mtd(a["target"], arr(a["n"], int), arr(a["y"], int), cutoff_eli=a["cutoff_eli"],
                          extrasafe=a["extrasafe"], offset=a["offset"], bound_mtd=a["bound_mtd"], p_tox=a["p_tox"])
    assert mtd == case["mtd"]
    if not a["bound_mtd"] and mtd is not None:  # R's isotonic estimates are captured only then
        for got, want in zip(iso, np.atleast_1d(case["isotonic"])):
            assert (got is None) == (want is None)
            if got is not None:
                assert got == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("case", cases("boin_decisions"))
def test_boin_decisions_inside_get_oc(case):
    """Every state get.oc decided on (traced), and the dose it moved to or that it stopped."""
    a = case["args"]
    design = BOIN(a["target"], a["n_levels"], cutoff_eli=a["cutoff_eli"], extrasafe=a["extrasafe"],
                  offset=a["offset"], n_earlystop=a["n_earlystop"])
    assert case["decisions"], "the tracer recorded nothing"
    for step in case["decisions"]:
        rec = design.fit(outcomes_from_counts(arr(step["n"], int), arr(step["y"], int)), current_dose=int(step["current"]))
        assert rec.next_dose == step["next_dose"], (step, rec)
        assert (rec.decision == "stop") == (step["next_dose"] is None)


@pytest.mark.parametrize("case", cases("skeleton"))
def test_getprior(case):
    a = case["args"]
    got = get_prior(a["halfwidth"], a["target"], a["nu"], a["levels"], a["model"], a["intercept"])
    np.testing.assert_allclose(got, arr(case["skeleton"]), rtol=0, atol=1e-12)


def check_fit(fit, case):
    assert fit.model_dose == case["mtd"]
    assert fit.beta_mean == pytest.approx(case["estimate"], abs=ESTIMATE_TOL)
    assert fit.beta_var == pytest.approx(case["post_var"], abs=ESTIMATE_TOL)
    for field in ("ptox", "ptox_lower", "ptox_upper"):
        np.testing.assert_allclose(getattr(fit, field), arr(case[field]), rtol=0, atol=ESTIMATE_TOL)


@pytest.mark.parametrize("case", cases("crm"))
def test_crm(case):
    a = case["args"]
    fit = fit_crm(a["skeleton"], a["target"], arr(a["level"], int), arr(a["tox"], int), model=a["model"],
                  intercept=a["intercept"], prior_sd=a["prior_sd"])
    check_fit(fit, case)


@pytest.mark.parametrize("case", cases("titecrm"))
def test_titecrm(case):
    a = case["args"]
    level, tox, fu = arr(a["level"], int), arr(a["tox"], int), arr(a["followup"])
    w = linear_weights(fu, a["window"]) if a["scheme"] == "linear" else adaptive_weights(fu, tox, a["window"])
    fit = fit_crm(a["skeleton"], a["target"], level, tox, w, model=a["model"], intercept=a["intercept"],
                  prior_sd=a["prior_sd"])
    np.testing.assert_allclose(fit.weights, arr(case["weights"]), rtol=0, atol=1e-12)
    check_fit(fit, case)


@pytest.mark.parametrize("case", cases("tite_boin"))
def test_tite_boin(case):
    a = case["args"]
    design = TiteBOIN(a["target"], a["n_levels"], a["window"], max_pending=a["max_pending"],
                      cutoff_eli=a["cutoff_eli"], extrasafe=a["extrasafe"], offset=a["offset"],
                      n_earlystop=a["n_earlystop"])
    outcomes = Outcomes.from_lists(arr(a["level"], int), arr(a["tox"], int), arr(a["followup"]))
    n, y, npend, ft = tite_counts(outcomes, a["n_levels"], a["window"])
    c = case["counts"]
    assert n.tolist() == arr(c["n"], int).tolist() and y.tolist() == arr(c["y"], int).tolist()
    assert npend.tolist() == arr(c["npend"], int).tolist()
    np.testing.assert_allclose(ft, arr(c["ft"]), atol=1e-9)
    rec = design.fit(outcomes, current_dose=a["current"])
    if case["earlystop"] == 1:
        assert (rec.decision, rec.next_dose, rec.mtd) == ("stop", None, None)
    elif case["stop"] == 1:
        assert (rec.decision, rec.next_dose) == ("stop", None)
    elif case["pending"] == 1:
        assert (rec.decision, rec.next_dose) == ("suspend", a["current"])
    else:
        assert rec.next_dose == case["next_dose"]
        assert rec.decision in ("escalate", "stay", "de-escalate")
    assert design.select_mtd(outcomes).mtd == case["mtd"]


def test_fixtures_cover_every_decision():
    """The TITE-BOIN and BOIN fixtures exercise each kind of decision, not just the common ones."""
    seen = set()
    for case in json.loads((ROOT / "tite_boin.json").read_text())["cases"]:
        seen.add("earlystop" if case["earlystop"] else "stop" if case["stop"] else
                 "suspend" if case["pending"] else "move")
    assert seen == {"earlystop", "stop", "suspend", "move"}
    moves = set()
    for case in json.loads((ROOT / "boin_decisions.json").read_text())["cases"]:
        for s in case["decisions"]:
            nxt, cur = s["next_dose"], s["current"]
            moves.add("stop" if nxt is None else "up" if nxt > cur else "down" if nxt < cur else "stay")
    assert moves == {"stop", "up", "down", "stay"}
