"""The four patients of the seed abstract as a synthetic FHIR R4 dataset.

Andritsos et al. (OSU; Blood 2007;110: abstract 4727; J Clin Oncol 2008) treated four patients with
relapsed CLL at lenalidomide 25 mg/day, days 1-21 of 28, with dexamethasone 12 mg days 1-7 then
4 mg days 8-14 (patient 1: prednisone 20 mg daily). The abstract gives the stories, not the numbers:
every value below is invented to be plausible and to match its story, day by day. No real patient
data. The stories:

- P1: bulky nodes, WBC 197,000/uL; omitted his steroid on day 3; worsening lymphocytosis, node
  enlargement, laboratory TLS and acute renal failure; mechanical ventilation; died of hypoxemic
  respiratory failure on day 10.
- P2: did well, then on day 25 of cycle 1 gram-negative sepsis with neutropenia at an outside
  facility; recovered; progressed soon after and went off study.
- P3: asymptomatic until day 8 (steroid taper): severe abdominal and back pain, rash, low-grade
  fever (tumor flare); resolved when the drug was stopped; flared again after each dose reduction.
- P4: well through the taper; on day 25, in the off week, dramatic cervical and supraclavicular node
  enlargement and new tonsillar hypertrophy obstructing the airway; steroids; drug discontinued.

``build_bundle()`` returns the Bundle; ``python -m dosewatch.seed OUT.json`` writes it.
"""
from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
FINDING = "https://dosewatch.org/fhir/CodeSystem/finding"

# code -> (LOINC, display, UCUM unit as the US site reported it, reference range)
LABS = {
    "WBC": ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", (4.0, 10.8)),
    "NEUT": ("751-8", "Neutrophils [#/volume] in Blood by Automated count", "10*3/uL", (1.8, 7.7)),
    "LYM": ("731-0", "Lymphocytes [#/volume] in Blood by Automated count", "10*3/uL", (1.0, 4.8)),
    "PLAT": ("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", (150.0, 400.0)),
    "HGB": ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", (13.5, 17.5)),
    "CREAT": ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", (0.7, 1.3)),
    "K": ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "meq/L", (3.5, 5.1)),
    "PHOS": ("2777-1", "Phosphate [Mass/volume] in Serum or Plasma", "mg/dL", (2.5, 4.5)),
    "CA": ("17861-6", "Calcium [Mass/volume] in Serum or Plasma", "mg/dL", (8.5, 10.5)),
    "ALB": ("1751-7", "Albumin [Mass/volume] in Serum or Plasma", "g/dL", (3.5, 5.0)),
    "URATE": ("3084-1", "Urate [Mass/volume] in Serum or Plasma", "mg/dL", (3.5, 7.2)),
    "LDH": ("2532-0", "Lactate dehydrogenase [Enzymatic activity/volume] in Serum or Plasma", "U/L", (120.0, 250.0)),
}
VITALS = {
    "TEMP": ("8310-5", "Body temperature", "Cel"),
    "HR": ("8867-4", "Heart rate", "/min"),
    "RESP": ("9279-1", "Respiratory rate", "/min"),
    "OXYSAT": ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%"),
    "WEIGHT": ("29463-7", "Body weight", "kg"),
    "HEIGHT": ("8302-2", "Body height", "cm"),
}
FINDINGS = {  # dosewatch finding code -> (display, UCUM unit)
    "LNDIAM": ("Lymph node longest diameter", "cm"),
    "LNTENDER": ("Lymph node tenderness", "1"),
    "SPLEEN": ("Spleen below costal margin", "cm"),
    "TONSIL": ("Tonsillar enlargement (Brodsky grade)", "1"),
    "PAIN": ("Pain (CTCAE grade)", "1"),
    "RASH": ("Rash (CTCAE grade)", "1"),
}
DRUGS = {
    "lenalidomide": ("342369", "lenalidomide"),
    "dexamethasone": ("3264", "dexamethasone"),
    "prednisone": ("8640", "prednisone"),
    "allopurinol": ("519", "allopurinol"),
}
EVENTS = {
    "SEPSIS": ("91302008", "Sepsis"),
    "HOSPITAL": ("32485007", "Hospital admission"),
    "MECHVENT": ("40617009", "Artificial ventilation"),
    "DIALYSIS": ("108241001", "Dialysis procedure"),
    "AIRWAY": ("79688008", "Respiratory obstruction"),
}

Curve = Callable[[int], float | None]


def path(*points: tuple[int, float]) -> Curve:
    """A value per study day, linear between (day, value) points and flat outside them."""
    days = np.array([p[0] for p in points], dtype=float)
    values = np.array([p[1] for p in points], dtype=float)
    return lambda day: float(np.interp(day, days, values))


@dataclass
class Story:
    pid: str
    name: str
    sex: str
    birth: dt.date
    day1: dt.date
    labs: dict[str, Curve]
    lab_days: list[int]
    vitals: dict[str, Curve]
    findings: dict[str, Curve]  # LNDIAM curves keyed "LNDIAM:<site>"
    exam_days: list[int]
    doses: list[tuple[str, int, float, str]]  # (drug, study day, mg, status)
    events: list[tuple[str, int, int | None]]  # (event code, study day, end study day)
    deceased_day: int | None = None
    notes: list[str] = field(default_factory=list)

    def date(self, day: int) -> dt.date:
        return self.day1 + dt.timedelta(days=day - 1 if day > 0 else day)


def _dose_plan(drug: str, days: range, mg: float, missed: set[int] = frozenset()) -> list[tuple[str, int, float, str]]:
    return [(drug, d, mg, "not-done" if d in missed else "completed") for d in days]


def _len_cycle1(last_day: int = 21, mg: float = 25.0) -> list[tuple[str, int, float, str]]:
    return _dose_plan("lenalidomide", range(1, last_day + 1), mg)


def _dex_taper(last_day: int = 14) -> list[tuple[str, int, float, str]]:
    # dexamethasone 12 mg days 1-7, then 4 mg from day 8 to day 14 (Andritsos, Blood 2007 abstract 4727)
    return _dose_plan("dexamethasone", range(1, min(7, last_day) + 1), 12.0) + _dose_plan(
        "dexamethasone", range(8, last_day + 1), 4.0
    )


def stories() -> list[Story]:
    return [
        Story(
            pid="seed-1",
            name="Patient 1 (off study, bulky, WBC 197,000/uL)",
            sex="male",
            birth=dt.date(1948, 6, 2),
            day1=dt.date(2007, 3, 5),
            labs={
                "WBC": path((-3, 190), (1, 197), (3, 205), (5, 238), (7, 262), (9, 270)),
                "LYM": path((-3, 183), (1, 190), (3, 198), (5, 231), (7, 255), (9, 262)),
                "NEUT": path((-3, 3.4), (1, 3.3), (9, 2.6)),
                "PLAT": path((-3, 92), (1, 90), (9, 61)),
                "HGB": path((-3, 10.9), (1, 10.8), (9, 9.6)),
                "K": path((-3, 4.3), (1, 4.4), (3, 4.6), (4, 5.1), (5, 5.9), (6, 6.4), (8, 7.1), (9, 6.2)),
                "URATE": path((-3, 6.9), (1, 7.0), (3, 7.6), (4, 8.9), (5, 10.4), (6, 12.1), (8, 13.5)),
                "PHOS": path((-3, 3.6), (1, 3.7), (3, 4.1), (4, 4.9), (5, 5.8), (6, 6.9), (8, 8.2)),
                "CA": path((-3, 9.3), (1, 9.2), (3, 9.0), (4, 8.6), (5, 8.0), (6, 7.4), (8, 6.8)),
                "ALB": path((-3, 3.8), (1, 3.8), (6, 3.4), (9, 3.1)),
                "CREAT": path((-3, 1.1), (1, 1.1), (3, 1.2), (4, 1.4), (5, 1.9), (6, 2.6), (7, 3.1), (8, 3.9), (9, 4.3)),
                "LDH": path((-3, 480), (1, 495), (4, 900), (6, 1850), (8, 2600)),
            },
            lab_days=[-3, *range(1, 10)],
            vitals={
                "TEMP": path((-3, 36.8), (3, 37.0), (5, 37.9), (6, 38.2), (8, 38.0), (9, 37.6)),
                "HR": path((-3, 84), (5, 102), (8, 124), (9, 130)),
                "RESP": path((-3, 16), (5, 22), (7, 28), (9, 30)),
                "OXYSAT": path((-3, 97), (5, 94), (7, 88), (8, 90), (9, 84)),
                "WEIGHT": path((-3, 82), (9, 84)),
            },
            findings={
                "LNDIAM:cervical": path((-3, 5.6), (1, 5.6), (3, 6.0), (5, 7.4), (7, 8.2)),
                "LNDIAM:axillary": path((-3, 6.2), (1, 6.3), (3, 6.6), (5, 7.9), (7, 8.8)),
                "LNDIAM:inguinal": path((-3, 4.8), (1, 4.8), (5, 6.1), (7, 6.9)),
                "LNTENDER:cervical": path((-3, 0), (3, 0), (4, 1), (9, 1)),
                "SPLEEN": path((-3, 8), (5, 10), (9, 11)),
                "PAIN": path((-3, 0), (3, 0), (4, 1), (5, 2), (9, 2)),
            },
            exam_days=[-3, *range(1, 10)],
            doses=_len_cycle1(last_day=5)
            # prednisone 20 mg daily; omitted from day 3 on (the abstract: "on day 3 ... omitted his steroid")
            + _dose_plan("prednisone", range(1, 6), 20.0, missed={3, 4, 5})
            + _dose_plan("allopurinol", range(-2, 10), 300.0),
            events=[("HOSPITAL", 6, 10), ("DIALYSIS", 7, 10), ("MECHVENT", 8, 10)],
            deceased_day=10,
            notes=["Lenalidomide stopped after day 5 on admission; died day 10 of hypoxemic respiratory failure."],
        ),
        Story(
            pid="seed-2",
            name="Patient 2 (neutropenic sepsis, day 25)",
            sex="male",
            birth=dt.date(1941, 11, 20),
            day1=dt.date(2007, 4, 9),
            labs={
                "WBC": path((-3, 48), (1, 47), (8, 42), (15, 26), (22, 14), (25, 9.6), (29, 8.1), (36, 12)),
                "LYM": path((-3, 44), (1, 43.5), (8, 39), (15, 24.2), (22, 13.1), (25, 9.2), (29, 7.4), (36, 10.5)),
                "NEUT": path((-3, 2.3), (1, 2.2), (8, 1.9), (12, 1.6), (15, 1.3), (18, 1.05), (22, 0.72), (25, 0.28), (29, 0.6), (36, 1.6)),
                "PLAT": path((-3, 128), (1, 125), (15, 96), (22, 71), (25, 58), (36, 102)),
                "HGB": path((-3, 12.1), (1, 12.0), (22, 10.9), (25, 10.1), (36, 10.8)),
                "K": path((-3, 4.1), (25, 4.4), (36, 4.2)),
                "URATE": path((-3, 5.8), (25, 6.1)),
                "PHOS": path((-3, 3.3), (25, 3.9)),
                "CA": path((-3, 9.4), (25, 8.7), (36, 9.1)),
                "ALB": path((-3, 4.0), (25, 3.3), (36, 3.7)),
                "CREAT": path((-3, 1.0), (22, 1.05), (25, 2.1), (27, 2.4), (29, 1.6), (36, 1.1)),
                "LDH": path((-3, 260), (36, 240)),
            },
            lab_days=[-3, *range(1, 16), 18, 22, 25, 26, 27, 29, 36, 43],
            vitals={
                "TEMP": path((-3, 36.7), (24, 36.9), (25, 39.4), (26, 38.9), (27, 37.8), (29, 37.0)),
                "HR": path((-3, 76), (24, 80), (25, 122), (27, 96), (29, 82)),
                "RESP": path((-3, 14), (25, 24), (29, 16)),
                "OXYSAT": path((-3, 98), (25, 94), (29, 97)),
                "WEIGHT": path((-3, 74), (36, 73)),
            },
            findings={
                "LNDIAM:cervical": path((-3, 2.5), (1, 2.5), (15, 2.1), (36, 2.0)),
                "LNDIAM:axillary": path((-3, 3.0), (1, 3.0), (15, 2.6), (36, 2.5)),
                "LNTENDER:cervical": path((-3, 0), (43, 0)),
                "SPLEEN": path((-3, 3), (36, 2)),
                "PAIN": path((-3, 0), (43, 0)),
            },
            exam_days=[-3, *range(1, 16), 18, 22, 25, 29, 36, 43],
            doses=_len_cycle1() + _dex_taper() + _dose_plan("allopurinol", range(-2, 15), 300.0),
            events=[("SEPSIS", 25, 31), ("HOSPITAL", 25, 31)],
            notes=["Off study for progression after recovery; cycle 2 not started."],
        ),
        Story(
            pid="seed-3",
            name="Patient 3 (tumor flare day 8, recurring after dose reductions)",
            sex="male",
            birth=dt.date(1950, 2, 14),
            day1=dt.date(2007, 5, 7),
            labs={
                "WBC": path((-3, 62), (1, 61), (7, 60), (8, 71), (10, 78), (14, 64), (20, 55), (29, 50), (31, 61), (36, 52), (57, 46), (59, 55), (64, 47)),
                "LYM": path((-3, 57), (1, 56.5), (7, 55), (8, 66.2), (10, 73), (14, 59.6), (20, 50.8), (29, 45.9), (31, 56.8), (36, 48), (57, 42.1), (59, 51), (64, 43)),
                "NEUT": path((-3, 3.1), (1, 3.0), (14, 2.4), (29, 2.2), (64, 2.0)),
                "PLAT": path((-3, 141), (1, 140), (14, 118), (29, 124), (64, 119)),
                "HGB": path((-3, 12.8), (64, 12.2)),
                "K": path((-3, 4.2), (8, 4.5), (64, 4.3)),
                "URATE": path((-3, 5.2), (8, 6.0), (64, 5.5)),
                "PHOS": path((-3, 3.2), (8, 3.6), (64, 3.4)),
                "CA": path((-3, 9.5), (8, 10.1), (14, 9.6), (64, 9.4)),
                "ALB": path((-3, 4.1), (8, 3.9), (64, 4.0)),
                "CREAT": path((-3, 0.9), (8, 1.0), (64, 0.9)),
                "LDH": path((-3, 230), (8, 410), (14, 260), (31, 330), (36, 240), (59, 310), (64, 250)),
            },
            lab_days=[-3, *range(1, 16), 17, 20, 22, 24, 29, 30, 31, 32, 33, 36, 43, 50, 57, 58, 59, 60, 61, 64, 71],
            vitals={
                "TEMP": path((-3, 36.6), (7, 36.8), (8, 38.4), (9, 38.6), (10, 38.2), (11, 37.4), (13, 36.9), (30, 36.8), (31, 38.1), (32, 37.6), (33, 37.0), (58, 36.8), (59, 38.0), (60, 37.2)),
                "HR": path((-3, 72), (8, 98), (11, 80), (31, 92), (33, 76), (59, 88), (61, 74)),
                "WEIGHT": path((-3, 80), (64, 79)),
            },
            findings={
                "LNDIAM:cervical": path((-3, 3.1), (7, 3.1), (8, 4.4), (10, 4.8), (14, 3.6), (20, 3.2), (30, 3.1), (31, 4.0), (33, 4.1), (36, 3.3), (58, 3.1), (59, 3.8), (61, 3.9), (64, 3.2)),
                "LNDIAM:abdominal": path((-3, 4.0), (7, 4.0), (8, 5.6), (10, 6.0), (14, 4.6), (20, 4.1), (30, 4.0), (31, 5.0), (33, 5.1), (36, 4.2), (58, 4.0), (59, 4.7), (61, 4.8), (64, 4.1)),
                "LNTENDER:cervical": path((-3, 0), (7, 0), (8, 1), (12, 1), (13, 0), (30, 0), (31, 1), (33, 1), (34, 0), (58, 0), (59, 1), (61, 1), (62, 0)),
                "PAIN": path((-3, 0), (7, 0), (8, 3), (10, 3), (12, 1), (13, 0), (30, 0), (31, 2), (33, 2), (34, 1), (35, 0), (58, 0), (59, 2), (61, 2), (62, 0)),
                "RASH": path((-3, 0), (7, 0), (8, 2), (11, 2), (13, 0), (30, 0), (31, 1), (33, 0)),
            },
            exam_days=[-3, *range(1, 16), 17, 20, 22, 24, 29, 30, 31, 32, 33, 34, 35, 36, 43, 50, 57, 58, 59, 60, 61, 62, 64, 71],
            # cycle 1: 25 mg days 1-8, stopped for flare; cycle 2 (day 29): 10 mg; cycle 3 (day 57): 5 mg
            doses=_len_cycle1(last_day=8)
            + _dose_plan("lenalidomide", range(29, 50), 10.0)
            + _dose_plan("lenalidomide", range(57, 78), 5.0)
            + _dex_taper()
            + _dose_plan("prednisone", range(31, 38), 40.0)
            + _dose_plan("prednisone", range(59, 66), 40.0)
            + _dose_plan("allopurinol", range(-2, 15), 300.0),
            events=[("HOSPITAL", 9, 12)],
            notes=["Flare treated with prednisone and opioid analgesics at each recurrence."],
        ),
        Story(
            pid="seed-4",
            name="Patient 4 (airway-threatening nodal flare, day 25 in the off week)",
            sex="male",
            birth=dt.date(1945, 9, 30),
            day1=dt.date(2007, 6, 4),
            labs={
                "WBC": path((-3, 88), (1, 87), (14, 80), (21, 84), (24, 112), (25, 131), (27, 120), (29, 96)),
                "LYM": path((-3, 82), (1, 81), (14, 75), (21, 79), (24, 106), (25, 125), (27, 114), (29, 90)),
                "NEUT": path((-3, 2.9), (1, 2.8), (14, 2.2), (21, 1.7), (25, 1.9), (29, 2.1)),
                "PLAT": path((-3, 110), (1, 108), (21, 88), (25, 85), (29, 92)),
                "HGB": path((-3, 11.6), (25, 11.0), (29, 11.2)),
                "K": path((-3, 4.3), (25, 4.8), (29, 4.4)),
                "URATE": path((-3, 6.3), (25, 7.4), (29, 6.6)),
                "PHOS": path((-3, 3.4), (25, 4.0), (29, 3.6)),
                "CA": path((-3, 9.2), (25, 9.6), (29, 9.3)),
                "ALB": path((-3, 3.9), (25, 3.7), (29, 3.8)),
                "CREAT": path((-3, 1.0), (25, 1.2), (29, 1.0)),
                "LDH": path((-3, 300), (21, 320), (25, 720), (29, 410)),
            },
            lab_days=[-3, *range(1, 16), 17, 21, 22, 24, 25, 26, 27, 29],
            vitals={
                "TEMP": path((-3, 36.7), (24, 36.9), (25, 37.8), (26, 37.4), (29, 36.8)),
                "HR": path((-3, 78), (24, 84), (25, 112), (27, 92), (29, 80)),
                "RESP": path((-3, 14), (24, 18), (25, 28), (27, 20), (29, 16)),
                "OXYSAT": path((-3, 97), (24, 95), (25, 89), (26, 93), (29, 96)),
                "WEIGHT": path((-3, 77), (29, 76)),
            },
            findings={
                "LNDIAM:cervical": path((-3, 3.4), (1, 3.4), (14, 3.2), (21, 3.6), (24, 5.2), (25, 7.8), (27, 6.4), (29, 5.0)),
                "LNDIAM:supraclavicular": path((-3, 2.2), (1, 2.2), (14, 2.1), (21, 2.5), (24, 4.1), (25, 6.3), (27, 5.0), (29, 3.9)),
                "LNTENDER:cervical": path((-3, 0), (24, 0), (25, 1), (28, 1), (29, 0)),
                "TONSIL": path((-3, 1), (21, 1), (24, 2), (25, 4), (27, 4), (29, 2)),
                "PAIN": path((-3, 0), (23, 0), (24, 1), (25, 2), (28, 1), (29, 0)),
            },
            exam_days=[-3, *range(1, 16), 17, 21, 22, 24, 25, 26, 27, 29],
            doses=_len_cycle1() + _dex_taper() + _dose_plan("allopurinol", range(-2, 15), 300.0)
            + _dose_plan("dexamethasone", range(25, 30), 20.0),
            events=[("AIRWAY", 25, 27), ("HOSPITAL", 25, 29)],
            notes=["Tonsillectomy showed CLL without transformation; lenalidomide discontinued."],
        ),
    ]


def _decimals(code: str) -> int:
    return {"WBC": 1, "LYM": 1, "NEUT": 2, "PLAT": 0, "HGB": 1, "CREAT": 2, "K": 1, "PHOS": 1, "CA": 1,
            "ALB": 1, "URATE": 1, "LDH": 0, "TEMP": 1, "HR": 0, "RESP": 0, "OXYSAT": 0, "WEIGHT": 1,
            "LNDIAM": 1}.get(code, 0)


def _ref(resource_type: str, rid: str) -> dict:
    return {"reference": f"{resource_type}/{rid}"}


def _when(story: Story, day: int, hour: int, minute: int = 0) -> str:
    return dt.datetime.combine(story.date(day), dt.time(hour, minute)).isoformat() + "-05:00"


def _observation(story: Story, oid: str, coding: dict, value: float, unit: str, when: str, *,
                 ref_range: tuple[float, float] | None = None, site: str | None = None,
                 category: str = "laboratory") -> dict:
    obs = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
        "code": {"coding": [coding], "text": coding.get("display")},
        "subject": _ref("Patient", story.pid),
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }
    if ref_range:
        obs["referenceRange"] = [{
            "low": {"value": ref_range[0], "unit": unit, "system": UCUM, "code": unit},
            "high": {"value": ref_range[1], "unit": unit, "system": UCUM, "code": unit},
        }]
    if site:
        obs["bodySite"] = {"text": site}
    return obs


def story_resources(story: Story) -> list[dict]:
    res: list[dict] = []
    patient = {"resourceType": "Patient", "id": story.pid, "gender": story.sex, "birthDate": story.birth.isoformat(),
               "name": [{"text": story.name}]}
    if story.deceased_day:
        patient["deceasedDateTime"] = _when(story, story.deceased_day, 6, 40)
    res.append(patient)
    for day in story.lab_days:
        for code, curve in story.labs.items():
            loinc, display, unit, rr = LABS[code]
            value = round(curve(day), _decimals(code))
            res.append(_observation(story, f"{story.pid}-{code.lower()}-d{day}", {"system": LOINC, "code": loinc, "display": display},
                                    value, unit, _when(story, day, 7, 30), ref_range=rr))
        for code, curve in story.vitals.items():
            loinc, display, unit = VITALS[code]
            res.append(_observation(story, f"{story.pid}-{code.lower()}-d{day}", {"system": LOINC, "code": loinc, "display": display},
                                    round(curve(day), _decimals(code)), unit, _when(story, day, 8, 0), category="vital-signs"))
        if day == story.lab_days[0]:
            loinc, display, unit = VITALS["HEIGHT"]
            res.append(_observation(story, f"{story.pid}-height", {"system": LOINC, "code": loinc, "display": display},
                                    178.0, unit, _when(story, day, 8, 0), category="vital-signs"))
    for day in story.exam_days:
        for key, curve in story.findings.items():
            code, _, site = key.partition(":")
            display, unit = FINDINGS[code]
            value = round(curve(day), _decimals(code))
            oid = f"{story.pid}-{code.lower()}{'-' + site if site else ''}-d{day}"
            res.append(_observation(story, oid, {"system": FINDING, "code": code, "display": display}, value, unit,
                                    _when(story, day, 9, 0), site=site or None, category="exam"))
    for drug, day, mg, status in story.doses:
        rx, display = DRUGS[drug]
        ma = {
            "resourceType": "MedicationAdministration",
            "id": f"{story.pid}-{drug}-d{day}",
            "status": status,
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": rx, "display": display}], "text": display},
            "subject": _ref("Patient", story.pid),
            "effectiveDateTime": _when(story, day, 8, 30),
            "dosage": {"route": {"text": "oral"}, "dose": {"value": mg, "unit": "mg", "system": UCUM, "code": "mg"}},
        }
        if status == "not-done":
            ma["statusReason"] = [{"text": "dose not taken (patient report)"}]
        res.append(ma)
    for code, day, end in story.events:
        snomed, display = EVENTS[code]
        cond = {
            "resourceType": "Condition",
            "id": f"{story.pid}-{code.lower()}-d{day}",
            "code": {"coding": [{"system": SNOMED, "code": snomed, "display": display}], "text": display},
            "subject": _ref("Patient", story.pid),
            "onsetDateTime": _when(story, day, 14, 0),
        }
        if end:
            cond["abatementDateTime"] = _when(story, end, 12, 0)
        res.append(cond)
    return res


def build_bundle() -> dict:
    entries = [
        {"fullUrl": f"https://dosewatch.org/fhir/{r['resourceType']}/{r['id']}", "resource": r}
        for story in stories()
        for r in story_resources(story)
    ]
    return {"resourceType": "Bundle", "id": "dosewatch-seed-patients", "type": "collection", "entry": entries}


if __name__ == "__main__":  # python -m dosewatch.seed OUT.json
    out = sys.argv[1] if len(sys.argv) > 1 else "seed-patients.json"
    with open(out, "w") as fh:
        json.dump(build_bundle(), fh, indent=1)
        fh.write("\n")
