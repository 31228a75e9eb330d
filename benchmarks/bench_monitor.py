"""Speed of the daily monitor (run by hand, not in tests).

    .venv/bin/python benchmarks/bench_monitor.py --patients 10000

Builds a synthetic cohort in the canonical shape (no file I/O): each patient on the escalation
protocol (lenalidomide-cll-escalation) for six 28-day cycles with daily labs (12 analytes), daily
exam findings and temperature, and daily doses; a few patients drift into hyperkalemia, neutropenia
or flare so that every criterion has work. Then times ``evaluate(cohort, protocol, as_of)``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import time

import numpy as np
import polars as pl

from dosewatch.record import DOSES_SCHEMA, EVENTS_SCHEMA, OBSERVATIONS_SCHEMA, PATIENTS_SCHEMA, Cohort

LABS = {  # code: (typical, spread, unit, low, high)
    "WBC": (40.0, 0.3, "10*9/L", 4.0, 10.8), "NEUT": (2.5, 0.35, "10*9/L", 1.8, 7.7),
    "LYM": (35.0, 0.3, "10*9/L", 1.0, 4.8), "PLAT": (140.0, 0.25, "10*9/L", 150.0, 400.0),
    "HGB": (120.0, 0.1, "g/L", 135.0, 175.0), "CREAT": (90.0, 0.15, "umol/L", 62.0, 115.0),
    "K": (4.3, 0.08, "mmol/L", 3.5, 5.1), "PHOS": (1.1, 0.15, "mmol/L", 0.8, 1.45),
    "CA": (2.3, 0.05, "mmol/L", 2.12, 2.62), "ALB": (40.0, 0.08, "g/L", 35.0, 50.0),
    "URATE": (350.0, 0.15, "umol/L", 208.0, 428.0), "LDH": (250.0, 0.3, "U/L", 120.0, 250.0),
}
EXAM = {"TEMP": (36.9, 0.01, "Cel"), "LNDIAM": (3.0, 0.1, "cm"), "LNTENDER": (0.0, 0.0, "1"), "PAIN": (0.0, 0.0, "1")}


def synthetic_cohort(n_patients: int, days: int = 168, seed: int = 1) -> Cohort:
    rng = np.random.default_rng(seed)
    start = dt.date(2024, 1, 1)
    pids = np.array([f"P{i:06d}" for i in range(n_patients)])
    offsets = rng.integers(0, 365, n_patients)
    day1 = np.array([np.datetime64(start) + int(o) for o in offsets])
    patients = pl.DataFrame({
        "patient_id": pids, "sex": rng.choice(["M", "F"], n_patients),
        "birth_date": [dt.date(1950, 1, 1)] * n_patients, "deceased_date": [None] * n_patients,
        "source": ["bench"] * n_patients,
    }, schema=PATIENTS_SCHEMA)
    study_days = np.concatenate([[-3], np.arange(1, days + 1)])
    grid_p = np.repeat(np.arange(n_patients), len(study_days))
    grid_d = np.tile(study_days, n_patients)
    cal = day1[grid_p] + np.where(grid_d > 0, grid_d - 1, grid_d).astype("timedelta64[D]")
    frames = []
    items = {**{k: v for k, v in LABS.items()}, **{k: (*v, None, None) for k, v in EXAM.items()}}
    drift = rng.random(n_patients) < 0.05  # 5% of patients drift upward in K and down in ANC
    for code, (typ, spread, unit, lo, hi) in items.items():
        v = typ * rng.lognormal(0, spread, grid_p.size) if spread else np.full(grid_p.size, typ)
        if code == "K":
            v = v + np.where(drift[grid_p], np.clip(grid_d, 0, 40) * 0.05, 0)
        if code == "NEUT":
            v = v * np.where(drift[grid_p], np.exp(-np.clip(grid_d, 0, 60) / 20), 1)
        if code == "LNTENDER":
            v = np.where(drift[grid_p] & (grid_d == 5), 1.0, 0.0)
        if code == "PAIN":
            v = np.where(drift[grid_p] & (grid_d == 5), 2.0, 0.0)
        frames.append(pl.DataFrame({
            "patient_id": pids[grid_p], "obs_id": np.char.add(np.char.add(pids[grid_p], f"-{code}-"), grid_d.astype(str)),
            "code": code, "time": cal.astype("datetime64[us]") + np.timedelta64(8, "h"), "date": cal,
            "time_known": True, "value": np.round(v, 3), "unit": unit, "orig_value": np.round(v, 3), "orig_unit": unit,
            "ref_low": lo, "ref_high": hi, "site": "neck" if code in ("LNDIAM", "LNTENDER") else None,
            "tz_offset_min": None, "source": "bench",
        }).select([pl.col(c).cast(t) for c, t in OBSERVATIONS_SCHEMA.items()]))
    observations = pl.concat(frames)
    dose_mask = grid_d >= 1
    level = np.minimum((grid_d[dose_mask] - 1) // 28, 5)
    doses = pl.DataFrame({
        "patient_id": pids[grid_p[dose_mask]],
        "dose_id": np.char.add(pids[grid_p[dose_mask]], np.char.add("-len-", grid_d[dose_mask].astype(str))),
        "drug": "lenalidomide", "rxnorm": "342369", "time": cal[dose_mask].astype("datetime64[us]") + np.timedelta64(9, "h"),
        "date": cal[dose_mask], "time_known": True, "dose": np.array([2.5, 5, 10, 15, 20, 25])[level],
        "dose_unit": "mg", "route": "oral", "status": "completed", "source": "bench",
    }).select([pl.col(c).cast(t) for c, t in DOSES_SCHEMA.items()])
    return Cohort(patients, observations, doses, pl.DataFrame(schema=EVENTS_SCHEMA))


def main() -> None:
    from dosewatch.monitor import evaluate
    from dosewatch.protocols import builtin

    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=10_000)
    args = ap.parse_args()
    t0 = time.perf_counter()
    cohort = synthetic_cohort(args.patients)
    t1 = time.perf_counter()
    print(f"built {args.patients} patients, {cohort.observations.height:,} observations, "
          f"{cohort.doses.height:,} doses in {t1 - t0:.1f} s")
    protocol = builtin("lenalidomide-cll-escalation")
    as_of = cohort.doses["date"].max()
    t2 = time.perf_counter()
    result = evaluate(cohort, protocol, as_of=as_of)
    t3 = time.perf_counter()
    n_alerts = sum(len(a.alerts) for a in result)
    print(f"evaluate: {len(result)} assessments, {n_alerts:,} alerts in {t3 - t2:.1f} s")


if __name__ == "__main__":
    main()
