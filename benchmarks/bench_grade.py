"""Speed of CTCAE grading (run by hand, not in tests).

    POLARS_MAX_THREADS=1 .venv/bin/python benchmarks/bench_grade.py            # grade_frame in memory
    .venv/bin/python benchmarks/bench_grade.py --file                          # + `dosewatch grade` on a CSV

The in-memory figure is rows per second of ``grade_frame`` (both directions, literal reading)
on a synthetic frame of 18 analytes in their usual units. ``--file`` also writes a 10-million-row
ADLB CSV to benchmarks/data/ (git-ignored) and times the `dosewatch grade` command on it.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from dosewatch.criteria.ctcae import grade_frame

# code, unit, LLN, ULN, typical value
LABS = [("WBC", "10^9/L", 4.0, 11.0, 6.0), ("NEUT", "10^9/L", 2.0, 7.5, 3.5), ("LYM", "10^9/L", 1.0, 4.0, 2.0),
        ("PLAT", "10^9/L", 150, 400, 220), ("HGB", "g/L", 120, 160, 135), ("CREAT", "umol/L", 60, 110, 85),
        ("K", "mmol/L", 3.5, 5.1, 4.2), ("SODIUM", "mmol/L", 135, 145, 140), ("CA", "mmol/L", 2.15, 2.55, 2.35),
        ("ALB", "g/L", 35, 50, 40), ("GLUC", "mmol/L", 3.9, 6.1, 5.0), ("CHOL", "mmol/L", 0, 5.2, 4.8),
        ("ALT", "U/L", 5, 40, 25), ("AST", "U/L", 5, 40, 25), ("ALP", "U/L", 40, 130, 80),
        ("BILI", "umol/L", 3, 21, 10), ("GGT", "U/L", 5, 50, 25), ("CK", "U/L", 30, 200, 100)]


def synthetic(n: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(LABS), n)
    code, unit, lln, uln, typ = (np.array(c) for c in zip(*LABS))
    tight = np.isin(code, ["SODIUM", "K", "CA", "ALB", "HGB", "GLUC", "CHOL"])  # regulated: narrow spread
    value = np.round(typ[i].astype(float) * rng.lognormal(0, np.where(tight, 0.08, 0.35)[i]), 2)
    return pl.DataFrame({"code": code[i], "value": value, "unit": unit[i], "ref_low": lln[i].astype(float),
                         "ref_high": uln[i].astype(float), "base": typ[i].astype(float)})


def bench_memory(n: int, repeat: int = 3) -> None:
    df = synthetic(n)
    grade_frame(df.head(1000))  # warm the caches (CSV, unit registry)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        grade_frame(df)
        best = min(best, time.perf_counter() - t)
    print(f"grade_frame: {n:,} rows in {best:.3f} s = {n / best / 1e6:.1f} million rows/s (best of {repeat})")


def bench_file(n: int) -> None:
    folder = Path(__file__).parent / "data"
    folder.mkdir(exist_ok=True)
    src, out = folder / f"adlb_{n}.csv", folder / f"adlb_{n}_graded.csv"
    if not src.exists():
        df = synthetic(n, seed=1)
        adlb = df.select(
            pl.lit("STUDY1").alias("STUDYID"),
            (pl.int_range(pl.len()) // 200).cast(pl.String).str.zfill(6).alias("USUBJID"),
            pl.col("code").alias("PARAMCD"), pl.col("code").alias("LBTESTCD"),
            pl.col("value").alias("AVAL"), pl.col("unit").alias("AVALU"),
            pl.col("ref_low").alias("ANRLO"), pl.col("ref_high").alias("ANRHI"), pl.col("base").alias("BASE"),
            (pl.int_range(pl.len()) % 200 + 1).alias("ADY"))
        adlb.write_csv(src)
    exe = Path(sys.executable).with_name("dosewatch")
    t = time.perf_counter()
    subprocess.run([str(exe), "grade", str(src), "-o", str(out), "--criteria", "ctcae-5.0"], check=True)
    took = time.perf_counter() - t
    print(f"dosewatch grade: {n:,}-row ADLB CSV ({src.stat().st_size / 1e6:.0f} MB) in {took:.1f} s "
          f"= {n / took / 1e6:.2f} million rows/s end to end")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--file", action="store_true", help="also time `dosewatch grade` on a CSV of --rows rows")
    args = ap.parse_args()
    bench_memory(args.rows)
    if args.file:
        bench_file(args.rows)
