"""Speed of the in-silico trials (run by hand, not in tests; figures in docs/insilico.md).

    .venv/bin/python benchmarks/bench_insilico.py                    # model alone and closed loop, default sizes
    .venv/bin/python benchmarks/bench_insilico.py --patients 2000 --days 28

Two figures: the model alone (``Arm.watch = False``: physiology, dosing, no record, no monitor) and
the closed loop (the record built and dosewatch's monitor called on every day with new data), both
for the OSU protocol (lenalidomide 25 mg/day, daily labs on days 1-14 of cycle 1).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from dosewatch.insilico import loop, params, population
from dosewatch.protocols import load_protocol


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--model-patients", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=28)
    args = ap.parse_args()
    v = params.central()
    protocol = load_protocol("lenalidomide-cll-25mg-2007")
    pop = population.sample(args.model_patients, v, np.random.default_rng(1))
    t = time.perf_counter()
    loop.run(loop.Arm(protocol, args.days, watch=False), pop, v, 1)
    alone = time.perf_counter() - t
    print(f"model alone: {args.model_patients} patients x {args.days} days in {alone:.1f} s")
    pop = population.sample(args.patients, v, np.random.default_rng(1))
    t = time.perf_counter()
    trace = loop.run(loop.Arm(protocol, args.days), pop, v, 1)
    closed = time.perf_counter() - t
    print(f"closed loop: {args.patients} patients x {args.days} days in {closed:.1f} s "
          f"({trace.evaluations} monitor calls, {closed / max(trace.evaluations, 1):.2f} s each)")


if __name__ == "__main__":
    main()
