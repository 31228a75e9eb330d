"""Behaviour of the designs and wrappers beyond the R fixtures: outcome strings, the 3+3 variant,
the restrictions, the safety stop, and hypothesis invariants."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dosewatch.escalation import make_design
from dosewatch.escalation.base import Outcomes, parse_outcomes
from dosewatch.escalation.boin import BOIN, boin_lambdas
from dosewatch.escalation.crm import CRM, fit_crm, get_prior
from dosewatch.escalation.three_plus_three import ThreePlusThree
from dosewatch.escalation.tite_boin import TiteBOIN
from dosewatch.escalation.wrappers import Coherent, DontSkip, StopWhenTooToxic

SKELETON = get_prior(0.05, 0.25, 3, 5)


def test_parse_outcomes():
    o = parse_outcomes("1NNN 2NTN")
    assert o.dose.tolist() == [1, 1, 1, 2, 2, 2]
    assert o.dlt.tolist() == [0, 0, 0, 0, 1, 0]
    assert len(parse_outcomes("")) == 0
    with pytest.raises(ValueError, match="2NXN"):
        parse_outcomes("1NNN 2NXN")
    with pytest.raises(ValueError, match="1-based"):
        parse_outcomes("0NNN")


def test_make_design_docstring_example():
    rec = make_design("boin", target=0.25, levels=5).fit(parse_outcomes("1NNN 2NTN 2NNN"))
    assert (rec.next_dose, rec.decision) == (3, "escalate")


def test_make_design_needs_levels_window_and_skeleton():
    with pytest.raises(ValueError, match="--levels"):
        make_design("boin", 0.25)
    with pytest.raises(ValueError, match="--window"):
        make_design("tite-boin", 0.25, levels=4)
    with pytest.raises(ValueError, match="skeleton"):
        make_design("crm", 0.25)
    with pytest.raises(ValueError, match="differs"):
        make_design("crm", 0.25, skeleton=SKELETON, levels=4)


# ---------------------------------------------------------------- BOIN details


def test_boin_empty_trial_starts_at_dose_1():
    rec = BOIN(0.3, 4).fit(Outcomes.from_lists([], []))
    assert (rec.next_dose, rec.decision, rec.mtd) == (1, "stay", None)


def test_boin_eliminated_current_dose_goes_below_it():
    # 3/3 at dose 2 with target 0.25: P(p > 0.25) = 0.996 > 0.95, dose 2 and above eliminated
    rec = BOIN(0.25, 4).fit(parse_outcomes("1NNN 2TTT"))
    assert (rec.next_dose, rec.decision) == (1, "de-escalate")
    rec = BOIN(0.25, 4).fit(parse_outcomes("1NNN 2TTT 1NNN"))  # 0/6 at dose 1, dose 2 eliminated
    assert (rec.next_dose, rec.decision) == (1, "stay")


def test_boin_extrasafe_without_elimination_boundary():
    """get.oc checks extrasafe only where an elimination boundary exists; for target 0.5 at n = 3
    none does (3/3 gives P = 0.9375 < 0.95) but 0.9375 > 0.90, so BOIN's own stop table says stop.
    dosewatch stops (documented difference); the package would stay at dose 1."""
    rec = BOIN(0.5, 3, extrasafe=True).fit(parse_outcomes("1TTT"))
    assert (rec.decision, rec.next_dose, rec.mtd) == ("stop", None, None)
    assert BOIN(0.5, 3).fit(parse_outcomes("1TTT")).decision == "stay"


def test_boin_n_earlystop():
    rec = BOIN(0.3, 3, n_earlystop=9).fit(parse_outcomes("1NNN 2NTN 2NNT 2NTN"))  # 3/9 at dose 2: stay -> stop
    assert rec.decision == "stop" and rec.mtd == 2


@given(st.lists(st.tuples(st.integers(0, 12), st.floats(0, 1)), min_size=2, max_size=6),
       st.sampled_from([0.15, 0.2, 0.25, 0.3, 0.33, 0.4]), st.data())
@settings(max_examples=300, deadline=None)
def test_boin_never_escalates_above_lambda_d(doses, target, data):
    n = [k for k, _ in doses]
    y = [min(k, int(round(k * f))) for k, f in doses]
    d = data.draw(st.integers(1, len(n)))
    dose, dlt = [], []
    for level, (nk, yk) in enumerate(zip(n, y), start=1):
        dose += [level] * nk
        dlt += [1] * yk + [0] * (nk - yk)
    rec = BOIN(target, len(n), extrasafe=data.draw(st.booleans())).fit(Outcomes.from_lists(dose, dlt), d)
    lambda_e, lambda_d = boin_lambdas(target)
    if n[d - 1] and y[d - 1] / n[d - 1] > lambda_e:
        assert rec.decision != "escalate"
    if n[d - 1] and y[d - 1] / n[d - 1] > lambda_d:
        assert rec.decision in ("de-escalate", "stay", "stop")
    if rec.next_dose is not None:
        assert abs(rec.next_dose - d) <= 1 or rec.decision == "de-escalate"


@given(st.lists(st.tuples(st.integers(1, 5), st.integers(0, 1)), min_size=1, max_size=20), st.randoms())
@settings(max_examples=100, deadline=None)
def test_boin_ignores_patient_order(rows, rnd):
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    design = BOIN(0.3, 5)
    a = design.fit(Outcomes.from_lists(*zip(*rows)), current_dose=rows[-1][0])
    b = design.fit(Outcomes.from_lists(*zip(*shuffled)), current_dose=rows[-1][0])
    assert (a.next_dose, a.decision, a.mtd) == (b.next_dose, b.decision, b.mtd)


# ---------------------------------------------------------------- TITE-BOIN


def test_tite_boin_suspends_and_resumes():
    design = TiteBOIN(0.3, 4, 28)
    waiting = Outcomes.from_lists([1, 1, 1], [0, 0, 0], [28, 3, 1])
    assert design.fit(waiting).decision == "suspend"
    done = Outcomes.from_lists([1, 1, 1], [0, 0, 0], [28, 28, 30])
    assert (design.fit(done).decision, design.fit(done).next_dose) == ("escalate", 2)


def test_tite_boin_equals_boin_when_everyone_is_followed():
    o = parse_outcomes("1NNN 2NTN 2TNN 3TTN")
    full = Outcomes.from_lists(o.dose, o.dlt, [40.0] * len(o))
    for d in (1, 2, 3):
        assert TiteBOIN(0.3, 4, 28).fit(full, d).next_dose == BOIN(0.3, 4).fit(o, d).next_dose


# ---------------------------------------------------------------- 3+3


@pytest.mark.parametrize("path, expected", [
    ("", (1, "stay", None)),
    ("1NNN", (2, "escalate", None)),
    ("1NNN 2NTN", (2, "stay", None)),
    ("1NNN 2NTN 2NNN", (3, "escalate", None)),
    ("1NNN 2NTN 2NNT", (1, "de-escalate", None)),  # 2/6 at dose 2, dose 1 has 3: expand it
    ("1NNN 2NTN 2NNT 1NNN", (None, "stop", 1)),  # 0/6 at dose 1, dose 2 too toxic
    ("1NNN 2TTN", (1, "de-escalate", None)),
    ("1NTN 1NNN 2TTN", (None, "stop", 1)),  # dose 1 already has 1/6
    ("1TTN", (None, "stop", None)),
    ("1NNN 2NNN 3NNN", (3, "stay", None)),  # top dose: expand to six before declaring it
    ("1NNN 2NNN 3NNN 3NTN", (None, "stop", 3)),
    ("1NN", (1, "stay", None)),
])
def test_three_plus_three(path, expected):
    rec = ThreePlusThree(3).fit(parse_outcomes(path))
    assert (rec.next_dose, rec.decision, rec.mtd) == expected


def test_three_plus_three_rejects_more_than_six():
    with pytest.raises(ValueError, match="at most six"):
        ThreePlusThree(3).fit(parse_outcomes("1NNN 1NNN 1N"))


@given(st.lists(st.integers(0, 3), min_size=1, max_size=30), st.integers(2, 7))
@settings(max_examples=300, deadline=None)
def test_three_plus_three_never_above_highest_tested_plus_one(dlts_per_cohort, levels):
    """Run the 3+3 along any sequence of cohort DLT counts: each recommendation is at most one
    level above the highest dose tried, and the trial ends within 2 cohorts per level."""
    design = ThreePlusThree(levels)
    dose: list[int] = []
    dlt: list[int] = []
    current = 1
    for k in dlts_per_cohort:
        dose += [current] * 3
        dlt += [1] * k + [0] * (3 - k)
        rec = design.fit(Outcomes.from_lists(dose, dlt))
        if rec.decision == "stop":
            assert rec.mtd is None or rec.mtd <= max(dose)
            break
        assert rec.next_dose <= max(dose) + 1
        current = rec.next_dose
    assert len(dose) <= 6 * levels


# ---------------------------------------------------------------- CRM and wrappers


def test_crm_without_patients_is_the_prior():
    fit = fit_crm(SKELETON, 0.25, [], [])
    assert fit.beta_mean == pytest.approx(0.0, abs=1e-9)
    assert fit.beta_var == pytest.approx(1.34, rel=1e-4)
    np.testing.assert_allclose(fit.ptox, SKELETON, atol=1e-9)


def test_crm_rejects_bad_skeleton_and_logistic_intercept():
    with pytest.raises(ValueError, match="increase"):
        fit_crm([0.1, 0.3, 0.2], 0.25, [1], [0])
    with pytest.raises(ValueError, match="intercept"):
        fit_crm([0.1, 0.5, 0.97], 0.25, [1], [0], model="logistic")


def test_crm_restrictions_follow_crmsim():
    crm = CRM(SKELETON, 0.25)
    no_dlt = parse_outcomes("1NNN")
    assert crm.fit(no_dlt).next_dose > 2  # dfcrm's crm alone jumps
    assert DontSkip(crm).fit(no_dlt).next_dose == 2
    # last cohort 1/3 >= 0.25: no escalation even though the model would go up
    data = parse_outcomes("1NNN 1NNN 1NNN 1NNN 1NTN")
    assert crm.fit(data).next_dose > 1
    rec = Coherent(DontSkip(crm), 0.25, 3).fit(data)
    assert (rec.next_dose, rec.decision) == (1, "stay") and "no escalation" in rec.reason


def test_safety_stop_uses_the_model():
    design = StopWhenTooToxic(CRM(SKELETON, 0.25), level=1, threshold=0.25, confidence=0.9)
    rec = design.fit(parse_outcomes("1TTT"))
    assert rec.decision == "stop" and rec.next_dose is None and rec.extra["prob_too_toxic"] > 0.9
    assert design.fit(parse_outcomes("1NNN")).decision != "stop"


def test_crm_prob_above_matches_a_grid():
    crm = CRM(SKELETON, 0.25, model="logistic")
    o = parse_outcomes("1NNN 2NTN 3TT")
    beta = np.linspace(-12, 12, 200001)
    sk = np.asarray(SKELETON)
    x = np.log(sk / (1 - sk)) - 3
    with np.errstate(over="ignore"):
        p = 1 / (1 + np.exp(-3 - np.exp(beta)[:, None] * x[None, :]))
    lik = np.exp(-beta**2 / 2 / 1.34) * np.prod(np.where(o.dlt == 1, p[:, o.dose - 1], 1 - p[:, o.dose - 1]), axis=1)
    want = lik[p[:, 0] > 0.25].sum() / lik.sum()
    assert crm.prob_above(o, 1, 0.25) == pytest.approx(want, abs=1e-4)


@given(st.lists(st.tuples(st.integers(1, 5), st.integers(0, 1)), min_size=1, max_size=24),
       st.sampled_from(["empiric", "logistic"]), st.integers(1, 5))
@settings(max_examples=60, deadline=None)
def test_crm_never_skips_on_escalation(rows, model, current):
    design = make_design("crm", 0.25, skeleton=SKELETON, model=model)
    rec = design.fit(Outcomes.from_lists(*zip(*rows)), current_dose=current)
    assert rec.next_dose <= current + 1
    assert rec.decision in ("escalate", "stay", "de-escalate")
    assert 1 <= rec.extra["model_dose"] <= 5


def test_tite_crm_weights_and_full_followup():
    o = parse_outcomes("1NNN 2NTN")
    full = Outcomes.from_lists(o.dose, o.dlt, [28.0] * 6)
    tite = CRM(SKELETON, 0.25, window=28).fit(full)
    plain = CRM(SKELETON, 0.25).fit(o)
    assert tite.extra["beta_mean"] == pytest.approx(plain.extra["beta_mean"], abs=1e-12)
    partial = Outcomes.from_lists(o.dose, o.dlt, [28, 28, 28, 14, 3, 0])
    rec = CRM(SKELETON, 0.25, window=28).fit(partial)
    assert rec.extra["weights"] == [1, 1, 1, 0.5, 1, 0]
    adaptive = CRM(SKELETON, 0.25, window=28, weights="adaptive").fit(partial)
    # one DLT at day 3: weights (m + fraction) / 2, e.g. day 14 -> (1 + 11/25) / 2
    assert adaptive.extra["weights"][3] == pytest.approx((1 + 11 / 25) / 2)
    assert math.isclose(adaptive.extra["weights"][5], 0.0)


def test_adaptive_weight_when_last_dlt_is_at_the_window_end():
    """dfcrm divides 0 by 0 there and fails; dosewatch gives the fully followed patient weight 1."""
    o = Outcomes.from_lists([1, 1], [1, 0], [28, 28])
    assert CRM(SKELETON, 0.25, window=28, weights="adaptive").fit(o).extra["weights"] == [1.0, 1.0]


@pytest.mark.parametrize("outcomes, said", [
    ("4TTN", "de-escalate to dose 3 (no patient was treated there yet)"),  # a trial that started above dose 3
    ("3NNN 4TTN", "de-escalate to dose 3 (expand it from 3 to six)"),
    ("3NNNN 4TTN", "de-escalate to dose 3 (complete its cohort, 4 treated so far)"),
])
def test_three_plus_three_says_what_the_dose_below_needs(outcomes, said):
    """The reason a committee reads matches the state of the dose it is sent to."""
    from dosewatch.escalation import make_design, parse_outcomes

    rec = make_design("3+3", levels=5).fit(parse_outcomes(outcomes))
    assert rec.next_dose == 3 and rec.decision == "de-escalate" and said in rec.reason
