"""The closed loop: dosewatch's monitor reads the virtual record and its dose actions change what the
virtual patient gets from the next day, and the patient's physiology answers."""
from __future__ import annotations

import numpy as np
import pytest

from dosewatch.insilico import loop, params, population
from dosewatch.protocols import load_protocol

U = loop.UNDETECTED


def _high_risk_patient():
    """One patient built to lyse: ALC 150 x10^9/L, a 9 cm node, three times the median kill sensitivity."""
    v = params.central()
    pop = population.sample(1, v, np.random.default_rng(0))
    pop.alc[:] = 150.0
    pop.node_cm[:] = 9.0
    pop.kill_sensitivity[:] = 3.0
    pop.flare_sensitivity[:] = 0.2  # keep flare out of the way
    return pop, v


@pytest.fixture(scope="module")
def both_runs():
    pop, v = _high_risk_patient()
    protocol = load_protocol("lenalidomide-cll-25mg-2007")
    acted = loop.run(loop.Arm(protocol, days=21, adherence={"miss_study_drug": 0.0}), pop, v, 5, follow=0)
    ignored = loop.run(loop.Arm(protocol, days=21, act=False, adherence={"miss_study_drug": 0.0}), pop, v,
                       5, follow=0)
    return acted, ignored


def test_tls_is_detected_and_the_drug_is_held_from_the_next_day(both_runs):
    acted, _ = both_runs
    found = int(acted.detected["tls"][0])
    assert found < U, "the monitor never saw the TLS"
    assert acted.truth["lab_tls"][0] <= found
    assert acted.first_hold[0] == found + 1
    assert acted.first_hold_term[0] in loop.TLS_TERMS
    dose = acted.series["dose"]
    assert dose[found - 1] > 0  # the day it was found, the morning dose had been given
    assert dose[found] == 0  # the next day: held


def test_holding_lowers_the_virtual_potassium_against_the_same_patient_unheld(both_runs):
    acted, ignored = both_runs
    found = int(acted.detected["tls"][0])
    assert ignored.first_hold[0] == U and ignored.series["dose"][found] > 0
    later = slice(found + 2, found + 6)
    assert np.mean(acted.series["K"][later]) < np.mean(ignored.series["K"][later])
    assert np.mean(acted.series["URATE"][later]) < np.mean(ignored.series["URATE"][later])
    # unheld, the kidney fails and potassium crosses the Cairo-Bishop 6.0 mmol/L; held, it never does
    assert max(ignored.series["K"]) >= 6.0
    assert max(acted.series["K"]) < 6.0
    assert max(ignored.series["CREAT"]) > 1.5 * acted.series["CREAT"][0]


def test_without_new_data_the_monitor_is_not_called():
    pop, v = _high_risk_patient()
    protocol = load_protocol("lenalidomide-cll-25mg-2007")
    trace = loop.run(loop.Arm(protocol, days=21, labs="weekly"), pop, v, 5)
    # weekly draws on days 1, 8, 15 (plus any day the patient presents ill)
    assert 3 <= trace.evaluations < 21


def _seed_patient_1():
    """The seed abstract's patient 1: bulky nodes, WBC ~197 x10^9/L, prednisone 20 mg daily instead of
    dexamethasone, omitted from day 3. Kill and flare sensitivity are chosen high (1.5x and 2x the
    population median): he was the extreme patient of four."""
    from dosewatch.insilico.calibration import target_protocol

    v = params.central()
    pop = population.sample(1, v, np.random.default_rng(0))
    pop.alc[:], pop.node_cm[:] = 190.0, 9.0
    pop.kill_sensitivity[:], pop.flare_sensitivity[:] = 1.5, 2.0
    pop.k[:], pop.urate[:], pop.phos[:], pop.creat[:] = 4.2, 360.0, 1.1, 90.0
    pop.age[:], pop.weight[:], pop.male[:] = 60.0, 80.0, True
    protocol = target_protocol({"protocol": "lenalidomide-cll-25mg-2007",
                                "prophylaxis": {"drug": "prednisone", "steps": [{"days": "1-14", "dose": 20}]}})
    adherence = {"steroid_stop_day": 3, "miss_study_drug": 0.0}
    return {act: loop.run(loop.Arm(protocol, days=14, act=act, adherence=adherence), pop, v, 3, follow=0)
            for act in (False, True)}


def test_seed_patient_1_story_untreated_and_with_the_monitor_acting():
    runs = _seed_patient_1()
    story = runs[False]
    assert story.series["dex"][:2] == [3.0, 3.0] and not any(story.series["dex"][2:])  # prednisone 20 mg = 3 mg dex
    assert max(story.series["flare"][2:8]) > story.series["flare"][1]  # the flare grows once the steroid stops
    assert story.truth["lab_tls"][0] <= 3
    assert story.truth["clinical_tls"][0] <= 10  # acute renal failure
    assert story.truth["death"][0] <= 10  # he died on day 10
    assert story.detected["tls"][0] == story.truth["lab_tls"][0]  # daily labs: reported the day it began
    acted = runs[True]
    assert acted.first_hold[0] == acted.detected["tls"][0] + 1
    assert max(acted.series["K"][:10]) < 6.0
    assert acted.truth["death"][0] == U


def test_a_patient_who_tolerates_it_escalates_every_28_days_as_the_protocol_says():
    v = params.central()
    pop = population.sample(1, v, np.random.default_rng(0))
    pop.alc[:], pop.node_cm[:] = 10.0, 2.0
    pop.kill_sensitivity[:], pop.flare_sensitivity[:], pop.neut_sensitivity[:] = 0.5, 0.1, 0.3
    protocol = load_protocol("lenalidomide-cll-escalation")
    trace = loop.run(loop.Arm(protocol, days=60, adherence={"miss_study_drug": 0.0}), pop, v, 1, follow=0)
    dose = trace.series["dose"]
    assert set(dose[:28]) == {2.5} and set(dose[28:56]) == {5.0} and set(dose[56:]) == {10.0}
    assert trace.first_hold[0] == U
