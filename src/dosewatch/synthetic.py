"""Synthetic cohorts for tests and benchmarks (no file I/O): patients on the escalation protocol
(lenalidomide-cll-escalation) with daily labs and examination, some on a toxicity trajectory.

Patients enrol over four weeks; each has a pretreatment visit on day -3, daily lenalidomide (one level
up each cycle) and allopurinol 300 mg daily from day -3 through cycle 3, as the protocol asks, and data
up to ``as_of``, the day the last patient enrolled reaches ``last_patient_day``.

Values vary between patients (the spreads in ``LABS``) and from day to day around each patient's
own level (``DAILY_CV``, analytic plus within-subject biological variation). About 1 in 100 lab days,
1 in 100 allopurinol doses and 1 in 200 recorded "not taken" are missing, so adherence has findings.
By default about 5% of patients follow a toxicity trajectory (``TOXIC``): laboratory TLS with
hyperkalemia and a creatinine rise (half of them admitted), neutropenia to grade 4 (a third with fever)
or a tumor flare (half with severe pain); each is followed by a 7-day interruption and a restart one
level lower, as the dose rules ask.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from .record import DOSES_SCHEMA, EVENTS_SCHEMA, OBSERVATIONS_SCHEMA, PATIENTS_SCHEMA, Cohort

LABS = {  # code: (typical, between-patient spread (log sd), unit, ref low, ref high)
    "WBC": (40.0, 0.3, "10*9/L", 4.0, 10.8), "NEUT": (2.5, 0.25, "10*9/L", 1.8, 7.7),
    "LYM": (35.0, 0.3, "10*9/L", 1.0, 4.8), "PLAT": (160.0, 0.2, "10*9/L", 150.0, 400.0),
    "HGB": (125.0, 0.08, "g/L", 135.0, 175.0), "CREAT": (85.0, 0.12, "umol/L", 62.0, 115.0),
    "K": (4.2, 0.05, "mmol/L", 3.5, 5.1), "PHOS": (1.05, 0.1, "mmol/L", 0.8, 1.45),
    "CA": (2.35, 0.03, "mmol/L", 2.12, 2.62), "ALB": (41.0, 0.06, "g/L", 35.0, 50.0),
    "URATE": (300.0, 0.12, "umol/L", 208.0, 428.0), "LDH": (230.0, 0.2, "U/L", 120.0, 250.0),
    "TEMP": (36.8, 0.0, "Cel", None, None), "LNDIAM": (3.0, 0.3, "cm", None, None),
    "LNTENDER": (0.0, 0.0, "1", None, None), "PAIN": (0.0, 0.0, "1", None, None),
}
EXAM = ("TEMP", "LNDIAM", "LNTENDER", "PAIN")
# Day-to-day coefficient of variation around a patient's own level (analytic + within-subject).
DAILY_CV = {"K": 0.04, "PHOS": 0.08, "URATE": 0.05, "CREAT": 0.05, "WBC": 0.10, "NEUT": 0.10, "LYM": 0.10,
            "PLAT": 0.10, "HGB": 0.03, "CA": 0.02, "ALB": 0.03, "LDH": 0.08, "LNDIAM": 0.04}
TEMP_SD = 0.25  # Cel, day to day
LEVELS = np.array([2.5, 5, 10, 15, 20, 25])  # lenalidomide-cll-escalation, one level per cycle
TOXIC = {"tls": 0.02, "neutropenia": 0.015, "flare": 0.015}  # fraction of patients
HOLD_DAYS = 7
FIRST_DAY = -3  # the pretreatment visit
START = dt.date(2024, 1, 1)


def synthetic_cohort(n_patients: int, seed: int = 1, last_patient_day: int = 168,
                     toxic: dict[str, float] | None = None) -> tuple[Cohort, dt.date]:
    """(cohort, as_of): enrolment over 28 days, data up to as_of (the last patient's day
    ``last_patient_day``); ``toxic``: the fraction of patients on each toxicity trajectory."""
    rng = np.random.default_rng(seed)
    toxic = TOXIC if toxic is None else toxic
    last_day = last_patient_day + 27
    pids = pl.Series("patient_id", [f"P{i:06d}" for i in range(n_patients)])
    offset = rng.integers(0, 28, n_patients)  # day 1 = START + offset
    as_of = START + dt.timedelta(days=27 + last_patient_day - 1)
    # Toxicity: kind per patient (0 none), its onset study day and the restart after the hold.
    kinds = list(TOXIC)  # the trajectories below, in this order
    kind = np.zeros(n_patients, dtype=np.int8)
    u = rng.random(n_patients)
    edges = np.cumsum([toxic.get(k, 0.0) for k in kinds])
    for i in range(len(kinds)):
        kind[(u >= (edges[i - 1] if i else 0)) & (u < edges[i])] = i + 1
    onset = np.where(kind == 1, rng.choice([2, 3, 4, 30, 31], n_patients),  # TLS: after start or an increase
                     np.where(kind == 2, rng.integers(15, 60, n_patients),  # neutropenia: weeks in
                              rng.integers(4, 10, n_patients) + 28 * rng.integers(0, 2, n_patients)))  # flare
    severe = rng.random(n_patients) < 0.5  # flare: severe pain (grade 3); TLS: admitted
    febrile = rng.random(n_patients) < 1 / 3
    holds = (kind == 1) | (kind == 2) | ((kind == 3) & severe)

    # The (patient, study day) grid up to as_of; there is no day 0.
    days = np.array([FIRST_DAY, *range(1, last_day + 1)])
    gp = np.repeat(np.arange(n_patients), days.size)
    gd = np.tile(days, n_patients)
    date_num = (np.datetime64(START) + offset[gp] + np.where(gd > 0, gd - 1, gd)).astype("datetime64[D]")
    keep = date_num <= np.datetime64(as_of)
    gp, gd, date_num = gp[keep], gd[keep], date_num[keep]
    since = gd - onset[gp]  # days since the toxicity began
    kp = kind[gp]
    lab_day = rng.random(gp.size) >= 0.01  # ~1% of lab days missed (exam too)
    lab_day |= gd == FIRST_DAY

    frames = []
    for code, (typical, spread, unit, lo, hi) in LABS.items():
        level = typical * rng.lognormal(0, spread, n_patients) if spread else np.full(n_patients, typical)
        v = level[gp] * rng.lognormal(0, DAILY_CV.get(code, 0.0), gp.size)
        tls = (kp == 1) & (since >= 0) & (since < 6)
        ramp = np.where(tls, np.minimum(since + 1, 6 - since) / 3, 0)  # up 3 days, down 3 days
        if code == "K":
            v = v * (1 + 0.5 * ramp)
        elif code == "PHOS":
            v = v * (1 + 0.9 * ramp)
        elif code == "URATE":
            v = v * (1 + 0.8 * ramp)
        elif code == "CREAT":
            v = v * (1 + 0.7 * ramp)
        elif code == "CA":
            v = v * (1 - 0.15 * ramp)
        elif code == "NEUT":
            nadir = (kp == 2) & (since >= 0) & (since < 10)
            v = v * np.where(nadir, 0.12, np.where((kp == 2) & (since >= -4) & (since < 0), 0.5, 1))
        elif code == "TEMP":
            v = v + rng.normal(0, TEMP_SD, gp.size) + np.where((kp == 2) & febrile[gp] & (since == 3), 2.0, 0)
        elif code in ("LNDIAM", "LNTENDER", "PAIN"):
            flare = (kp == 3) & (since >= 0) & (since < 5)
            if code == "LNDIAM":
                v = v * np.where(flare, 1.5, 1)
            elif code == "LNTENDER":
                v = np.where(flare, 1.0, 0.0)
            else:
                v = np.where(flare, np.where(severe[gp], 3.0, 1.0), 0.0)
        v = np.round(v, 1 if code in EXAM else 3)
        frames.append(pl.DataFrame({
            "p": gp[lab_day], "day": gd[lab_day], "date": date_num[lab_day], "value": v[lab_day],
        }).with_columns(code=pl.lit(code), unit=pl.lit(unit), ref_low=pl.lit(lo, pl.Float64), ref_high=pl.lit(hi, pl.Float64),
                        site=pl.lit("neck" if code in ("LNDIAM", "LNTENDER") else None, pl.String)))
    obs = pl.concat(frames)
    observations = Cohort.conform(obs.select(
        pids.gather(obs["p"]).alias("patient_id"),
        pl.format("{}-{}-{}", pids.gather(obs["p"]), "code", "day").alias("obs_id"),
        "code",
        (pl.col("date").cast(pl.Datetime("us")) + pl.duration(hours=8)).alias("time"),
        "date", pl.lit(True).alias("time_known"), "value", "unit", pl.col("value").alias("orig_value"),
        pl.col("unit").alias("orig_unit"), "ref_low", "ref_high", "site", pl.lit(None).alias("tz_offset_min"),
        pl.lit("bench").alias("source"),
    ), OBSERVATIONS_SCHEMA)

    # Lenalidomide daily from day 1, one level up each cycle; a hold skips 7 days after the onset and
    # restarts one level lower (not below the first), escalating from there.
    on = gd >= 1
    idx = (gd - 1) // 28
    in_hold = holds[gp] & (since >= 1) & (since <= HOLD_DAYS)
    lower = holds[gp] & (since > HOLD_DAYS) & ((onset[gp] - 1) // 28 > 0)
    idx = np.minimum(idx - lower, len(LEVELS) - 1)
    # Allopurinol 300 mg daily from day -3 through cycle 3; ~1% not recorded, ~0.5% recorded not taken.
    allo = (gd <= 84) & (rng.random(gp.size) >= 0.01)
    not_taken = rng.random(gp.size) < 0.005
    study = pl.DataFrame({"p": gp[on & ~in_hold], "day": gd[on & ~in_hold], "date": date_num[on & ~in_hold],
                          "dose": LEVELS[idx[on & ~in_hold]]}).with_columns(
        drug=pl.lit("lenalidomide"), rxnorm=pl.lit("342369"), status=pl.lit("completed"), hour=pl.lit(9))
    allopurinol = pl.DataFrame({"p": gp[allo], "day": gd[allo], "date": date_num[allo],
                                "status": np.where(not_taken[allo], "not-done", "completed")}).with_columns(
        dose=pl.lit(300.0), drug=pl.lit("allopurinol"), rxnorm=pl.lit("519"), hour=pl.lit(8))
    d = pl.concat([study, allopurinol], how="diagonal")
    doses = Cohort.conform(d.select(
        pids.gather(d["p"]).alias("patient_id"),
        pl.format("{}-{}-{}", pids.gather(d["p"]), "drug", "day").alias("dose_id"),
        "drug", "rxnorm", (pl.col("date").cast(pl.Datetime("us")) + pl.duration(hours=pl.col("hour"))).alias("time"),
        "date", pl.lit(True).alias("time_known"), "dose", pl.lit("mg").alias("dose_unit"), pl.lit("oral").alias("route"),
        "status", pl.lit(None, pl.Int32).alias("tz_offset_min"), pl.lit("bench").alias("source"),
    ), DOSES_SCHEMA)

    # Admission the day after a TLS onset for half of the TLS patients.
    admitted = np.flatnonzero((kind == 1) & severe)
    adm_date = (np.datetime64(START) + offset[admitted] + onset[admitted]).astype("datetime64[D]")
    events = pl.DataFrame({
        "patient_id": pids.gather(admitted), "event_id": pids.gather(admitted) + "-HOSPITAL",
        "code": "HOSPITAL", "term": "hospital admission", "date": adm_date,
    }).with_columns(time=pl.col("date").cast(pl.Datetime("us")), time_known=pl.lit(False), end_date=pl.lit(None, pl.Date),
                    grade=pl.lit(None, pl.Int32), tz_offset_min=pl.lit(None, pl.Int32), source=pl.lit("bench"))
    events = Cohort.conform(events.filter(pl.col("date") <= as_of), EVENTS_SCHEMA)

    patients = pl.DataFrame({
        "patient_id": pids, "sex": rng.choice(["M", "F"], n_patients), "birth_date": [dt.date(1950, 1, 1)] * n_patients,
        "deceased_date": [None] * n_patients, "source": ["bench"] * n_patients,
    })
    patients = Cohort.conform(patients, PATIENTS_SCHEMA)
    return Cohort(patients, observations, doses, events), as_of
