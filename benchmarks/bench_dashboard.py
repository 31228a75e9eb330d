"""Server time of each dashboard page with 1,000 patients loaded (run by hand, not in tests;
figures in docs/dashboard.md).

    .venv/bin/python benchmarks/bench_dashboard.py                        # 1,000 patients, temporary SQLite
    .venv/bin/python benchmarks/bench_dashboard.py --keep /tmp/dash.db    # keep the database (reused next time)

The trial is ``bench_server.py``'s (1,000 patients x six 28-day cycles of daily labs, lenalidomide on
days 1-21, imported as SDTM zips of 100 patients through ``service.import_records``), with one
change that makes the pages work: every tenth patient's potassium, phosphate and uric acid rise on
days 3-5 of cycle 1 (laboratory TLS, critical alerts and a DLT), so the inbox and the cohort board
have something to show. Each page is requested through FastAPI's TestClient (in-process, no
network) by a logged-in nurse, investigator and statistician: a few warm-up requests, then
``--repeat`` timed ones; p50 and max per page are printed, in milliseconds.
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_server  # noqa: E402  (the synthetic trial and its import)

# Laboratory TLS in every tenth patient: values (canonical units) on study days 3-5.
TLS_DAYS = (3, 4, 5)
TLS_VALUES = {"K": 6.4, "PHOS": 2.1, "URATE": 560.0}
USERS = [("investigator", "investigator", ["S1"]), ("statistician", "statistician", [])]


def with_tls(cohort):
    """``cohort`` with laboratory TLS on days 3-5 in the patients bench-0, bench-10, ..."""
    obs = cohort.observations
    number = pl.col("patient_id").str.strip_prefix("bench-").cast(pl.Int64)
    day = (pl.col("date") - pl.lit(bench_server.DAY1)).dt.total_days() + 1
    hit = (number % 10 == 0) & day.is_in(list(TLS_DAYS)) & pl.col("code").is_in(list(TLS_VALUES))
    value = pl.col("code").replace_strict(TLS_VALUES, default=None, return_dtype=pl.Float64)
    obs = obs.with_columns(pl.when(hit).then(value).otherwise(pl.col("value")).alias("value"))
    obs = obs.with_columns(pl.col("value").alias("orig_value"))
    return type(cohort)(cohort.patients, obs, cohort.doses, cohort.events)


def build(url: str, n_patients: int):
    from dosewatch.store.admin import add_user

    store = bench_server.setup_trial(url)
    with store.writing() as session:
        for name, role, sites in USERS:
            add_user(session, "bench", name, role, bench_server.PASSWORD, sites)
    start = time.perf_counter()
    for first in range(0, n_patients, 100):
        cohort = with_tls(bench_server.trial_cohort(first, min(100, n_patients - first)))
        bench_server.import_store(store, [(cohort.observations.height, bench_server.sdtm_zip(cohort))], "sdtm")
        print(f"  {first + min(100, n_patients - first)} patients loaded, {time.perf_counter() - start:.0f} s",
              flush=True)
    return store


def login(app, user: str):
    from fastapi.testclient import TestClient

    client = TestClient(app)
    form = client.get("/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    r = client.post("/login", data={"username": user, "password": bench_server.PASSWORD, "csrf": csrf},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    return client


def time_page(client, path: str, repeat: int, warm: int = 2) -> tuple[float, float, int]:
    """(p50, max) in ms and the response size, after ``warm`` untimed requests."""
    for _ in range(warm):
        r = client.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        r = client.get(path)
        times.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, path
    return statistics.median(times), max(times), len(r.content)


PAGES = [  # (user, label, path)
    ("nurse", "Today", "/trials/bench/today"),
    ("nurse", "Alert inbox", "/trials/bench/alerts"),
    ("nurse", "Alert inbox, critical", "/trials/bench/alerts?severity=critical"),
    ("nurse", "Alert inbox, page 5", "/trials/bench/alerts?page=5"),
    ("nurse", "Patient (with TLS)", "/trials/bench/patients/bench-10"),
    ("nurse", "Patient (no alerts)", "/trials/bench/patients/bench-11"),
    ("investigator", "Patient, investigator", "/trials/bench/patients/bench-20"),
    ("nurse", "Cohort board 3+3", "/trials/bench/cohort"),
    ("statistician", "Cohort board BOIN", "/trials/bench/cohort?design=boin&target=0.3"),
    ("statistician", "Cohort board TITE-BOIN", "/trials/bench/cohort?design=tite-boin&target=0.3"),
    ("statistician", "Cohort board CRM", "/trials/bench/cohort?design=crm&target=0.3"),
    ("statistician", "Cohort board TITE-CRM", "/trials/bench/cohort?design=tite-crm&target=0.3"),
    ("nurse", "Import", "/trials/bench/import"),
    ("nurse", "Audit (trial)", "/trials/bench/audit"),
    ("nurse", "Audit of a patient", "/trials/bench/audit?patient=bench-10"),
    ("statistician", "Audit (statistician)", "/trials/bench/audit"),
    ("statistician", "Audit, verify the chain", "/trials/bench/audit?verify=yes"),  # on request, not the page
]


def run(args, url: str) -> None:
    from dosewatch.api.app import Settings, create_app
    from dosewatch.store.db import Store

    if not args.keep or not Path(args.keep).exists():
        print(f"loading {args.patients} patients into {url}", flush=True)
        build(url, args.patients).dispose()
    store = Store(url, today=bench_server.TODAY)
    app = create_app(Settings(db_url=url, secret_key=bench_server.SECRET, today=bench_server.TODAY), store=store)
    clients = {user: login(app, user) for user in {u for u, _, _ in PAGES}}
    print(f"\n{'page':<26} {'user':<13} {'p50 ms':>8} {'max ms':>8} {'kB':>6}")
    for user, label, path in PAGES:
        if args.only and not re.search(args.only, label, re.I):
            continue
        p50, worst, size = time_page(clients[user], path, args.repeat)
        print(f"{label:<26} {user:<13} {p50:8.0f} {worst:8.0f} {size / 1000:6.0f}", flush=True)
    store.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=10, help="timed requests per page")
    parser.add_argument("--keep", help="SQLite file to load into and keep (reused, not reloaded, when it exists)")
    parser.add_argument("--only", help="time only the pages whose label matches this regular expression")
    args = parser.parse_args()
    if args.keep:
        run(args, f"sqlite:///{Path(args.keep).resolve()}")
        return
    with tempfile.TemporaryDirectory(prefix="dosewatch-bench-") as tmp:
        run(args, f"sqlite:///{Path(tmp) / 'dashboard.db'}")


if __name__ == "__main__":
    main()
