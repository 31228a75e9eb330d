"""Writes under load on SQLite (run by hand, not in tests; figures in docs/server.md, issue 15):
20 clients each importing one small patient after another while one client uploads a 7 MB FHIR
Bundle again and again, against one uvicorn server on 127.0.0.1.

    .venv/bin/python benchmarks/bench_lock.py                       # 20 clients, 60 s
    .venv/bin/python benchmarks/bench_lock.py --clients 20 --seconds 120 --big-mb 7

Prints the latency percentiles of the one-patient imports, how many answered other than 200 (and
whether any said "locked"), and the big uploads' count and times. A one-patient import is one
patient with a week of the benchmark trial's daily labs and doses (``bench_server.trial_cohort``).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_server import fhir_bytes, free_port, setup_trial, start_server, stop, token, trial_cohort  # noqa: E402

from dosewatch.record import Cohort  # noqa: E402


def small_patient(n: int) -> bytes:
    """Patient ``bench-{n}``: one week of daily labs and doses."""
    import polars as pl

    full = trial_cohort(n, 1)
    first = full.observations["date"].min()
    week = lambda df: df.filter(pl.col("date") <= first + __import__("datetime").timedelta(days=7))  # noqa: E731
    return fhir_bytes(Cohort(full.patients, week(full.observations), week(full.doses), full.events))


def big_upload(megabytes: float) -> tuple[bytes, int]:
    """Patients from 100000 on, as many as make ``megabytes`` of FHIR JSON."""
    one = len(fhir_bytes(trial_cohort(100_000, 1)))
    n = max(1, round(megabytes * 1024 * 1024 / one))
    return fhir_bytes(trial_cohort(100_000, n)), n


def main() -> None:
    import httpx

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--big-mb", type=float, default=7, help="0: no big upload (the baseline)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'lock.db'}"
        setup_trial(url).dispose()
        big, n_big = big_upload(args.big_mb) if args.big_mb > 0 else (b"", 0)
        print(f"big upload: {len(big) / 1024 / 1024:.1f} MB ({n_big} patients); {args.clients} clients, "
              f"{args.seconds:.0f} s", flush=True)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(url, port)
        try:
            auth = {**token(base), "Content-Type": "application/fhir+json"}
            stop_at = time.monotonic() + args.seconds
            latencies: list[float] = []
            statuses: dict[int, int] = {}
            locked = []
            big_times: list[float] = []
            lock = threading.Lock()

            def small_client(c: int) -> None:
                with httpx.Client(timeout=300) as client:
                    i = 0
                    while time.monotonic() < stop_at:
                        payload = small_patient(1000 + c * 10_000 + i)
                        start = time.perf_counter()
                        r = client.post(f"{base}/api/trials/bench/fhir", content=payload, headers=auth)
                        took = time.perf_counter() - start
                        with lock:
                            latencies.append(took)
                            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                            if "locked" in r.text:
                                locked.append(r.text[:200])
                        i += 1

            def big_client() -> None:
                with httpx.Client(timeout=600) as client:
                    while time.monotonic() < stop_at:
                        start = time.perf_counter()
                        r = client.post(f"{base}/api/trials/bench/fhir", content=big, headers=auth)
                        with lock:
                            big_times.append(time.perf_counter() - start)
                            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

            threads = [threading.Thread(target=big_client)] if big else []
            threads += [threading.Thread(target=small_client, args=(c,)) for c in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            stop(server)
    q = statistics.quantiles(latencies, n=100)
    print(f"one-patient imports: {len(latencies)}; p50 {q[49]:.2f} s, p90 {q[89]:.2f} s, p99 {q[98]:.2f} s, "
          f"max {max(latencies):.2f} s")
    print(f"big uploads: {len(big_times)}, {', '.join(f'{t:.1f}' for t in big_times)} s")
    print(f"statuses: {dict(sorted(statuses.items()))}; answers saying 'locked': {len(locked)}")


if __name__ == "__main__":
    main()
