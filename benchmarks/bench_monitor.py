"""Speed of the daily monitor (run by hand, not in tests).

    .venv/bin/python benchmarks/bench_monitor.py --patients 10000

Builds a synthetic cohort (``dosewatch.synthetic``, also used by the tests): patients enrolled over
four weeks on the escalation protocol (lenalidomide-cll-escalation), each with at least six 28-day
cycles of daily labs (12 analytes) and examination (4 findings) up to ``as_of``, the day the last
patient enrolled reaches day 168; about 5% on a toxicity trajectory. Then times ``evaluate(cohort, protocol, as_of)``, with the criteria engine
(``check_cohort``) timed on its own.
"""
from __future__ import annotations

import argparse
import os
import time

from dosewatch.synthetic import synthetic_cohort


def main() -> None:
    import dosewatch.monitor.evaluation as monitor
    from dosewatch.protocols import builtin

    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=10_000)
    args = ap.parse_args()
    load = os.getloadavg()
    t0 = time.perf_counter()
    cohort, as_of = synthetic_cohort(args.patients)
    t1 = time.perf_counter()
    print(f"built {args.patients:,} patients, {cohort.observations.height:,} observations, {cohort.doses.height:,} doses, "
          f"{cohort.events.height:,} events in {t1 - t0:.1f} s (as of {as_of})")
    protocol = builtin("lenalidomide-cll-escalation")

    # Time the criteria engine on its own by wrapping the monitor's reference to it.
    timed = {}
    check_cohort = monitor.check_cohort

    def timed_check(*a, **k):
        t = time.perf_counter()
        out = check_cohort(*a, **k)
        timed["check_cohort"] = time.perf_counter() - t
        return out

    monitor.check_cohort = timed_check
    t2 = time.perf_counter()
    result = monitor.evaluate(cohort, protocol, as_of=as_of)
    t3 = time.perf_counter()
    monitor.check_cohort = check_cohort
    total, engine = t3 - t2, timed["check_cohort"]
    n = {k: sum(len(getattr(a, k)) for a in result) for k in ("events", "alerts", "dose_actions", "adherence")}
    dlt = sum(a.dlt.get("status") == "DLT" for a in result)
    print(f"evaluate: {len(result):,} assessments ({n['events']:,} events, {n['alerts']:,} alerts, "
          f"{n['dose_actions']:,} dose actions, {n['adherence']:,} adherence findings, {dlt} DLTs) in {total:.1f} s: "
          f"check_cohort {engine:.1f} s, the rest (known_on, protocol, adherence, plans) {total - engine:.1f} s")
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; after: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f"; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
