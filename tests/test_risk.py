"""Baseline TLS risk by tumor burden for venetoclax in CLL (criteria/risk.py)."""
import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dosewatch.analytes import catalog
from dosewatch.criteria.risk import tls_risk
from dosewatch.record import OBSERVATIONS_SCHEMA, PATIENTS_SCHEMA, Cohort, frame

DAY1 = dt.date(2024, 3, 1)
PER_MG_DL = catalog()["CREAT"].conversion("mg/dL")[0]
UNITS = {"LNDIAM": "cm", "LYM": "10*9/L", "WEIGHT": "kg", "CREAT": "umol/L"}


def ob(code: str, days_before: int, value: float, site: str | None = None) -> dict:
    when = dt.datetime.combine(DAY1 - dt.timedelta(days=days_before), dt.time(9))
    return {"patient_id": "p1", "code": code, "time": when, "date": when.date(), "time_known": True,
            "value": value, "unit": UNITS[code], "orig_value": value, "orig_unit": UNITS[code], "site": site}


def risk(obs: list[dict], sex: str = "M", birth: dt.date | None = dt.date(1964, 3, 1), **kw):
    for i, row in enumerate(obs):
        row.setdefault("obs_id", f"o{i}")
    patients = frame([{"patient_id": "p1", "sex": sex, "birth_date": birth}], PATIENTS_SCHEMA)
    return tls_risk(Cohort(patients, frame(obs, OBSERVATIONS_SCHEMA)), {"p1": DAY1}, **kw)["p1"]


RENAL = [ob("WEIGHT", 3, 72.0), ob("CREAT", 3, PER_MG_DL)]  # 60 y at day 1, 72 kg, 1.0 mg/dL -> 80 mL/min


# ## Test 1: tiers at 5 and 10 cm and ALC 25 x 10^9/L ----


@pytest.mark.parametrize(
    ("node", "alc", "category"),
    [
        (4.99, 24.99, "low"),
        (5.0, 24.99, "medium"),
        (9.99, 24.99, "medium"),
        (10.0, 24.99, "high"),
        (4.99, 25.0, "medium"),
        (5.0, 25.0, "high"),
        (4.99, 200.0, "medium"),
        (10.0, 1.0, "high"),
    ],
)
def test_tiers(node, alc, category):
    result = risk([ob("LNDIAM", 5, node, "neck"), ob("LYM", 2, alc), *RENAL])
    assert result.category == category
    assert (result.largest_node_cm, result.alc) == (node, alc)
    assert [e.ref for e in result.evidence][:2] == ["o0", "o1"]


def test_largest_node_over_sites_each_site_last_value_before_day_1():
    obs = [
        ob("LNDIAM", 30, 12.0, "neck"),  # superseded by the later neck value
        ob("LNDIAM", 5, 4.0, "neck"),
        ob("LNDIAM", 6, 6.0, "axilla"),
        ob("LNDIAM", 0, 15.0, "groin"),  # dated day 1: not a baseline
        ob("LYM", 2, 10.0),
    ]
    result = risk(obs)
    assert (result.category, result.largest_node_cm) == ("medium", 6.0)
    assert result.evidence[0].ref == "o2"


# ## Test 2: missing inputs give no category, with the reason ----


def test_missing_node_or_alc():
    no_node = risk([ob("LYM", 2, 30.0)])
    assert no_node.category is None and "no lymph-node measurement" in no_node.reason
    no_alc = risk([ob("LNDIAM", 2, 6.0, "neck")])
    assert no_alc.category is None and "no ALC" in no_alc.reason
    # a node of 10 cm or more is high whatever the ALC
    assert risk([ob("LNDIAM", 2, 11.0, "neck")]).category == "high"


def test_patient_without_any_baseline():
    result = risk([])
    assert result.category is None and result.crcl is None
    assert "no weight before day 1" in result.reason and "no creatinine before day 1" in result.reason


# ## Test 3: CrCl < 80 mL/min as a modifier ----


@pytest.mark.parametrize(("creat_mg_dl", "low"), [(1.0, False), (1.0001, True)])
def test_crcl_80_is_not_low_and_just_below_is(creat_mg_dl, low):
    obs = [ob("LNDIAM", 5, 3.0, "neck"), ob("LYM", 2, 10.0), ob("WEIGHT", 3, 72.0), ob("CREAT", 3, creat_mg_dl * PER_MG_DL)]
    result = risk(obs)
    assert result.category == "low"
    assert result.crcl_low is low
    if not low:
        assert result.crcl == pytest.approx(80.0)
    assert {"o2", "o3"} <= {e.ref for e in result.evidence}


def test_age_is_completed_years_at_day_1():
    # born 2 Mar 1964: still 59 on 1 Mar 2024 -> (140 - 59) x 72 / 72 = 81
    result = risk([*RENAL], birth=dt.date(1964, 3, 2))
    assert result.crcl == pytest.approx(81.0)


def test_crcl_threshold_is_a_setting_and_sex_is_needed():
    assert risk([*RENAL], crcl_threshold=90).crcl_low is True
    female = risk([*RENAL], sex="F")
    assert female.crcl == pytest.approx(68.0) and female.crcl_low is True
    unknown = risk([*RENAL], sex="U")
    assert unknown.crcl is None and "no sex" in unknown.reason


# ## Test 4: property: a bigger burden never lowers the category ----

ORDER = {"low": 0, "medium": 1, "high": 2}


@settings(max_examples=50, deadline=None)
@given(n1=st.floats(0, 20), n2=st.floats(0, 20), a1=st.floats(0.5, 300), a2=st.floats(0.5, 300))
def test_category_is_monotone_in_node_and_alc(n1, n2, a1, a2):
    lo = risk([ob("LNDIAM", 2, min(n1, n2), "neck"), ob("LYM", 2, min(a1, a2))]).category
    hi = risk([ob("LNDIAM", 2, max(n1, n2), "neck"), ob("LYM", 2, max(a1, a2))]).category
    assert ORDER[lo] <= ORDER[hi]
