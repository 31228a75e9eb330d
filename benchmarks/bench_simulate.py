"""Speed of operating-characteristic simulation (run by hand; never part of the tests).

    .venv/bin/python benchmarks/bench_simulate.py            # in process, best of 3
    .venv/bin/python benchmarks/bench_simulate.py --command  # also the whole `dosewatch design simulate` command

Targets (issue 7): BOIN 5 doses, 10 cohorts of 3, 100,000 trials < 0.5 s in process and < 2 s for the
command (R get.oc: 46 s); CRM same trial, 10,000 trials < 1 s / < 3 s (R crmsim: 55 s); TITE-BOIN
10,000 trials < 2 s."""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from dosewatch.escalation.crm import get_prior
from dosewatch.escalation.simulate import simulate

S1 = [0.05, 0.10, 0.20, 0.30, 0.45]
T1 = [0.05, 0.12, 0.25, 0.40, 0.55]
SK = get_prior(0.05, 0.25, 3, 5)
CASES = {
    "BOIN 100,000 trials": (dict(design="boin", true_tox=S1, trials=100_000), 0.5),
    "CRM 10,000 trials (x0 = 3)": (dict(design="crm", true_tox=S1, trials=10_000, skeleton=SK, start_dose=3), 1.0),
    "TITE-BOIN 10,000 trials (28 d, 1/7 per day)": (dict(design="tite-boin", true_tox=T1, trials=10_000, window=28,
                                                         accrual=1 / 7), 2.0),
    "3+3 100,000 trials": (dict(design="3+3", true_tox=S1, trials=100_000), None),
    "TITE-CRM 2,000 trials": (dict(design="tite-crm", true_tox=T1, trials=2_000, window=28, accrual=1 / 7,
                                   skeleton=SK), None),
}
COMMANDS = {
    "BOIN 100,000 trials": (["--design", "boin", "--true-tox", "0.05,0.10,0.20,0.30,0.45", "--trials", "100000"], 2.0),
    "CRM 10,000 trials (x0 = 3)": (["--design", "crm", "--true-tox", "0.05,0.10,0.20,0.30,0.45", "--trials", "10000",
                                    "--skeleton", ",".join(f"{p:.6f}" for p in SK), "--start-dose", "3"], 3.0),
    "TITE-BOIN 10,000 trials (28 d, 1/7 per day)": (["--design", "tite-boin", "--true-tox", "0.05,0.12,0.25,0.40,0.55",
                                                     "--trials", "10000", "--window", "28",
                                                     "--accrual", "0.142857"], None),
}


def best_of(fn, repeat=3):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--command", action="store_true", help="also time the whole command line")
    args = ap.parse_args()
    for name, (kw, target) in CASES.items():
        kw = dict(kw)
        design = kw.pop("design")
        t = best_of(lambda: simulate(design, target=0.25, cohort_size=3, max_cohorts=10, seed=6, **kw))
        flag = "" if target is None else (" ok" if t < target else f" SLOWER than {target} s")
        print(f"in process  {name:45s} {t:7.3f} s{flag}")
    if args.command:
        exe = shutil.which("dosewatch") or str(Path(sys.executable).with_name("dosewatch"))
        for name, (argv, target) in COMMANDS.items():
            cmd = [exe, "design", "simulate", *argv, "--target", "0.25", "--cohort-size", "3", "--max-cohorts", "10",
                   "--seed", "6", "--json"]
            t = best_of(lambda: subprocess.run(cmd, check=True, capture_output=True))
            flag = "" if target is None else (" ok" if t < target else f" SLOWER than {target} s")
            print(f"command     {name:45s} {t:7.3f} s{flag}")


if __name__ == "__main__":
    main()
