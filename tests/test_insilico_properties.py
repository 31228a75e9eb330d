"""Properties of the in-silico trials: same seed, same numbers; a higher start dose never lowers the
TLS probability; daily labs never detect later than weekly labs."""
from __future__ import annotations

import numpy as np
import pytest

from dosewatch.insilico import loop, params, population
from dosewatch.insilico.scenario import Scenario, run_scenario
from dosewatch.protocols import load_protocol

U = loop.UNDETECTED


def _scenario(**over) -> Scenario:
    spec = {"id": "t", "title": "t", "patients": 24, "seed": 11, "days": 14,
            "arms": [{"id": "high", "protocol": "lenalidomide-cll-25mg-2007"},
                     {"id": "low", "protocol": "lenalidomide-cll-escalation"}]}
    spec.update(over)
    return Scenario.model_validate(spec)


def test_same_seed_same_numbers_and_another_seed_other_numbers():
    a = run_scenario(_scenario())
    b = run_scenario(_scenario())
    assert a == b
    c = run_scenario(_scenario(), seed=12)
    assert c["arms"] != a["arms"]


@pytest.fixture(scope="module")
def by_start_level():
    v = params.central()
    pop = population.sample(150, v, np.random.default_rng([21, 0]))
    base = load_protocol("lenalidomide-cll-25mg-2007")
    runs = {}
    for level in base.study_drug.level_ids:  # 5, 10, 15, 20, 25 mg
        sd = base.study_drug.model_copy(update={"start_level": level})
        protocol = base.model_copy(update={"study_drug": sd})
        runs[sd.dose_at(level)] = loop.run(loop.Arm(protocol, days=10), pop, v, 21)
    return runs


def test_a_higher_start_dose_never_lowers_the_tls_probability(by_start_level):
    doses = sorted(by_start_level)
    for key in ("lab_tls", "clinical_tls"):
        rates = [float((by_start_level[d].truth[key] < U).mean()) for d in doses]
        assert rates == sorted(rates), (key, dict(zip(doses, rates)))
    lab = [float((by_start_level[d].truth["lab_tls"] < U).mean()) for d in doses]
    assert lab[-1] > lab[0]  # not flat: the property has something to hold


@pytest.fixture(scope="module")
def daily_and_weekly():
    v = params.central()
    pop = population.sample(120, v, np.random.default_rng([5, 0]))
    protocol = load_protocol("lenalidomide-cll-25mg-2007")
    # the monitor watches but nobody acts: both schedules see the same patients' same days
    return {labs: loop.run(loop.Arm(protocol, days=22, labs=labs, act=False), pop, v, 5) for labs in ("daily", "weekly")}


@pytest.mark.parametrize("kind", ["tls", "flare", "fn"])
def test_daily_labs_never_detect_later_than_weekly(daily_and_weekly, kind):
    daily, weekly = daily_and_weekly["daily"].detected[kind], daily_and_weekly["weekly"].detected[kind]
    seen_weekly = weekly < U
    assert (daily[seen_weekly] <= weekly[seen_weekly]).all()
    assert (daily <= weekly).all()


def test_daily_labs_detect_tls_earlier_for_some_patients(daily_and_weekly):
    daily, weekly = daily_and_weekly["daily"].detected["tls"], daily_and_weekly["weekly"].detected["tls"]
    assert (daily < weekly).any()
    np.testing.assert_array_equal(daily_and_weekly["daily"].truth["lab_tls"], daily_and_weekly["weekly"].truth["lab_tls"])
