"""Speed of the trial server (run by hand, not in tests; figures in docs/server.md).

    .venv/bin/python benchmarks/bench_server.py import                     # SQLite, SDTM + FHIR, store + API
    .venv/bin/python benchmarks/bench_server.py import --db postgresql+psycopg://postgres@127.0.0.1/test
    .venv/bin/python benchmarks/bench_server.py reads [--db URL]           # p99 of assessment reads, 20 clients
    .venv/bin/python benchmarks/bench_server.py reads --keep /tmp/bench.db --clients-list 1 5 10 20 --client httpx raw

The trial: 1,000 patients x six 28-day cycles of daily labs (a 12-analyte panel from day -2, so
2,016 observations a patient, 2,016,000 in all) and daily lenalidomide on days 1-21 of each cycle.
``import`` loads it in batches, as sites would (SDTM: 100 patients a zip; FHIR: 25 patients a
Bundle, under the 50 MB upload limit), on a fresh database each time, and counts observations per
second of wall time for the whole import: reading, checking, writing the records and their audit
entries, and assessing the patients. "store" calls ``service.import_records`` in-process; "api"
posts to a uvicorn server on 127.0.0.1. ``reads`` loads the same trial, then runs 20 concurrent
clients against a uvicorn server on 127.0.0.1 for a fixed number of requests and prints the
latency percentiles of ``GET .../patients/{id}/assessment``, the server's CPU time a request (with
psutil) and the load client's. The client runs on the same cores as the server: ``--client raw``
(a minimal HTTP/1.1 client on asyncio streams) needs about a tenth of httpx's CPU a request.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

import numpy as np
import polars as pl

from dosewatch.record import DOSES_SCHEMA, EVENTS_SCHEMA, OBSERVATIONS_SCHEMA, PATIENTS_SCHEMA, Cohort

# canonical code, canonical unit, typical value, spread (a normal patient: no alerts from the values)
PANEL = [("WBC", "10*9/L", 42.0, 0.05), ("NEUT", "10*9/L", 3.1, 0.05), ("LYM", "10*9/L", 37.0, 0.05),
         ("PLAT", "10*9/L", 160.0, 0.05), ("HGB", "g/L", 128.0, 0.03), ("K", "mmol/L", 4.1, 0.02),
         ("PHOS", "mmol/L", 1.1, 0.03), ("CA", "mmol/L", 2.35, 0.01), ("ALB", "g/L", 41.0, 0.03),
         ("URATE", "umol/L", 330.0, 0.03), ("CREAT", "umol/L", 80.0, 0.03), ("LDH", "U/L", 210.0, 0.03)]
CYCLES, CYCLE_DAYS, DOSE_DAYS = 6, 28, 21
DAY1 = dt.date(2024, 1, 8)
TODAY = DAY1 + dt.timedelta(days=CYCLES * CYCLE_DAYS)  # the day after the last lab
PROTOCOL = "lenalidomide-cll-25mg-2007"
PASSWORD = "bench-password"
SECRET = "bench-secret-key-" + "x" * 32


def trial_cohort(first: int, n: int, seed: int = 0) -> Cohort:
    """Patients ``bench-{first}`` .. ``bench-{first + n - 1}`` with their labs and doses (canonical record)."""
    rng = np.random.default_rng(seed + first)
    pids = [f"bench-{i}" for i in range(first, first + n)]
    days = [d for d in range(-2, CYCLES * CYCLE_DAYS + 1) if d != 0]
    patients = pl.DataFrame({"patient_id": pids, "sex": ["F", "M"] * (n // 2) + ["F"] * (n % 2),
                             "birth_date": [dt.date(1950, 1, 1)] * n, "deceased_date": [None] * n,
                             "source": ["bench"] * n}).cast({c: t for c, t in PATIENTS_SCHEMA.items()
                                                             if c in ("patient_id", "sex", "birth_date",
                                                                      "deceased_date", "source")})
    grid = pl.DataFrame({"patient_id": pids}).join(pl.DataFrame({"day": days}), how="cross").join(
        pl.DataFrame({"code": [p[0] for p in PANEL], "unit": [p[1] for p in PANEL], "typical": [p[2] for p in PANEL],
                      "spread": [p[3] for p in PANEL]}), how="cross")
    noise = rng.normal(0, 1, grid.height)
    date = pl.lit(DAY1) + pl.duration(days=pl.when(pl.col("day") > 0).then(pl.col("day") - 1).otherwise(pl.col("day")))
    obs = grid.with_columns(date.alias("date"), pl.Series("noise", noise)).select(
        "patient_id", (pl.col("patient_id") + "-" + pl.col("code").str.to_lowercase() + "-d" + pl.col("day").cast(pl.String))
        .alias("obs_id"), "code", (pl.col("date").cast(pl.Datetime("us")) + pl.duration(hours=7, minutes=30)).alias("time"),
        "date", pl.lit(True).alias("time_known"),
        (pl.col("typical") * (1 + pl.col("spread") * pl.col("noise").clip(-2, 2))).round(2).alias("value"), "unit")
    obs = obs.with_columns(pl.col("value").alias("orig_value"), pl.col("unit").alias("orig_unit"))
    obs = obs.with_columns(*(pl.lit(None, dtype=t).alias(c) for c, t in OBSERVATIONS_SCHEMA.items() if c not in obs.columns))
    dose_days = pl.DataFrame({"day": [c * CYCLE_DAYS + d for c in range(CYCLES) for d in range(1, DOSE_DAYS + 1)]})
    doses = pl.DataFrame({"patient_id": pids}).join(dose_days, how="cross").select(
        "patient_id", (pl.col("patient_id") + "-len-d" + pl.col("day").cast(pl.String)).alias("dose_id"),
        pl.lit("lenalidomide").alias("drug"), pl.lit(None, pl.String).alias("rxnorm"),
        ((pl.lit(DAY1) + pl.duration(days=pl.col("day") - 1)).cast(pl.Datetime("us")) + pl.duration(hours=9)).alias("time"),
        (pl.lit(DAY1) + pl.duration(days=pl.col("day") - 1)).alias("date"), pl.lit(True).alias("time_known"),
        pl.lit(25.0).alias("dose"), pl.lit("mg").alias("dose_unit"), pl.lit("oral").alias("route"),
        pl.lit("completed").alias("status"), pl.lit(None, pl.Int32).alias("tz_offset_min"), pl.lit("bench").alias("source"))
    return Cohort(patients, obs.select(list(OBSERVATIONS_SCHEMA)).cast(OBSERVATIONS_SCHEMA),
                  doses.cast(DOSES_SCHEMA), pl.DataFrame(schema=EVENTS_SCHEMA))


def sdtm_zip(cohort: Cohort) -> bytes:
    from dosewatch.io.sdtm_write import write_sdtm

    with tempfile.TemporaryDirectory() as tmp:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for path in write_sdtm(cohort, Path(tmp), studyid="BENCH"):
                zf.write(path, path.name)
    return buf.getvalue()


def fhir_bytes(cohort: Cohort) -> bytes:
    from dosewatch.io.fhir_write import cohort_to_bundle

    return json.dumps(cohort_to_bundle(cohort), separators=(",", ":")).encode()


# -------------------------------------------------------------------------------------------- setup

def fresh_url(base: str | None, folder: Path) -> tuple[str, callable]:
    """A database nobody used: a new SQLite file, or a new schema in the PostgreSQL database ``base``."""
    if base is None or base.startswith("sqlite"):
        return f"sqlite:///{folder / f'bench-{uuid.uuid4().hex[:8]}.db'}", lambda: None
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(base)
    schema = f"dw_bench_{uuid.uuid4().hex[:8]}"
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')

    def drop() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')

    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False), drop


def setup_trial(url: str):
    from dosewatch.store.admin import add_site, add_trial, add_user
    from dosewatch.store.db import Store

    store = Store(url, today=TODAY)
    store.upgrade()
    with store.writing() as session:
        add_site(session, "bench", "S1")
        add_user(session, "bench", "nurse", "nurse", PASSWORD, ["S1"])
        add_trial(session, "bench", "bench", PROTOCOL)
    return store


def batches(n_patients: int, size: int, kind: str):
    for first in range(0, n_patients, size):
        cohort = trial_cohort(first, min(size, n_patients - first))
        yield cohort.observations.height, (sdtm_zip(cohort) if kind == "sdtm" else fhir_bytes(cohort))


# -------------------------------------------------------------------------------------------- server

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(url: str, port: int, workers: int = 1) -> subprocess.Popen:
    import httpx

    env = {**os.environ, "DOSEWATCH_DB": url, "DOSEWATCH_TODAY": TODAY.isoformat(), "DOSEWATCH_SECRET_KEY": SECRET}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "dosewatch.api.app:app_from_env",
                             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
                             "--workers", str(workers)], env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def token(base: str, user: str = "nurse") -> dict[str, str]:
    import httpx

    r = httpx.post(f"{base}/api/token", data={"username": user, "password": PASSWORD}, timeout=30)
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


# -------------------------------------------------------------------------------------------- import

def import_store(store, data: list[tuple[int, bytes]], kind: str) -> float:
    from dosewatch.store import service
    from dosewatch.store.admin import trial_by_code
    from dosewatch.store.scope import Viewer

    nurse = Viewer("nurse", "nurse", frozenset({1}))
    start = time.perf_counter()
    for _, payload in data:
        with store.writing() as session:
            service.import_records(session, trial_by_code(session, "bench"), nurse, kind, payload, as_of=TODAY)
    return time.perf_counter() - start


def import_api(url: str, data: list[tuple[int, bytes]], kind: str) -> float:
    import httpx

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(url, port)
    try:
        auth = token(base)
        media = "application/zip" if kind == "sdtm" else "application/fhir+json"
        start = time.perf_counter()
        for _, payload in data:
            r = httpx.post(f"{base}/api/trials/bench/{kind}", content=payload, timeout=600,
                           headers={**auth, "Content-Type": media})
            r.raise_for_status()
        return time.perf_counter() - start
    finally:
        stop(server)


def run_import(args) -> None:
    sizes = {"sdtm": 100, "fhir": 25}
    with tempfile.TemporaryDirectory(prefix="dosewatch-bench-") as tmp:
        for kind in args.kinds:
            t = time.perf_counter()
            data = list(batches(args.patients, sizes[kind], kind))
            n_obs = sum(n for n, _ in data)
            mb = sum(len(b) for _, b in data) / 1e6
            print(f"{kind}: {args.patients} patients, {n_obs:,} observations in {len(data)} uploads "
                  f"({mb:.0f} MB), made in {time.perf_counter() - t:.0f} s", flush=True)
            for how in args.via:
                url, drop = fresh_url(args.db, Path(tmp))
                try:
                    store = setup_trial(url)
                    if how == "store":
                        seconds = import_store(store, data, kind)
                    else:
                        store.dispose()
                        seconds = import_api(url, data, kind)
                    print(f"  {kind} via {how} on {url.split(':')[0]}: {seconds:.1f} s = "
                          f"{n_obs / seconds:,.0f} observations/s", flush=True)
                finally:
                    store.dispose()
                    drop()


# -------------------------------------------------------------------------------------------- reads

async def load(base: str, auth: dict, pids: list[str], n_requests: int, clients: int) -> list[float]:
    import httpx

    latencies: list[float] = []
    todo = iter(range(n_requests))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers=auth, timeout=10, limits=limits) as client:
        async def worker() -> None:
            for i in todo:
                pid = pids[(i * 7919) % len(pids)]
                t = time.perf_counter()
                r = await client.get(f"/api/trials/bench/patients/{pid}/assessment")
                latencies.append(time.perf_counter() - t)
                r.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies


async def raw_load(base: str, auth: dict, pids: list[str], n_requests: int, clients: int) -> list[float]:
    """``load`` with a minimal HTTP/1.1 keep-alive client on asyncio streams: the same requests,
    a fraction of httpx's CPU a request (the client shares the machine's cores with the server)."""
    host, port = base.removeprefix("http://").split(":")
    header = "".join(f"{k}: {v}\r\n" for k, v in auth.items())
    latencies: list[float] = []
    todo = iter(range(n_requests))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for i in todo:
                pid = pids[(i * 7919) % len(pids)]
                t = time.perf_counter()
                writer.write(f"GET /api/trials/bench/patients/{pid}/assessment HTTP/1.1\r\nHost: {host}\r\n"
                             f"{header}\r\n".encode())
                status = (await reader.readline()).split(b" ", 2)[1]
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - t)
                if status != b"200":
                    raise SystemExit(f"GET {pid}: HTTP {status.decode()}")
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies


def server_cpu_seconds(proc: subprocess.Popen) -> float | None:
    """User + system CPU time of the server and its worker processes so far (None without psutil)."""
    try:
        import psutil
    except ImportError:
        return None
    try:
        top = psutil.Process(proc.pid)
        return sum(sum(p.cpu_times()[:2]) for p in [top, *top.children(recursive=True)])
    except psutil.Error:
        return None


def kept_pg_url(base: str, schema: str) -> tuple[str, bool]:
    """The PostgreSQL schema ``schema`` in the database ``base`` (made when missing), and whether it existed."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(base)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        existed = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is not None
        if not existed:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False), existed


def loaded_database(args, tmp: Path) -> tuple[str, callable]:
    """The trial with ``args.patients`` patients loaded: in ``--keep FILE`` (SQLite; with ``--db``
    PostgreSQL, a schema of that name), loaded once and reused by later runs, else in a fresh database."""
    if args.keep and args.db and not args.db.startswith("sqlite"):
        url, existed = kept_pg_url(args.db, args.keep)
        if not existed:
            store = setup_trial(url)
            t = time.perf_counter()
            import_store(store, list(batches(args.patients, 100, "sdtm")), "sdtm")
            store.dispose()
            print(f"{args.patients} patients loaded into schema {args.keep} in {time.perf_counter() - t:.0f} s",
                  flush=True)
        return url, lambda: None
    if args.keep:
        path = Path(args.keep).resolve()
        url = f"sqlite:///{path}"
        if not path.exists():
            store = setup_trial(url)
            t = time.perf_counter()
            import_store(store, list(batches(args.patients, 100, "sdtm")), "sdtm")
            store.dispose()
            print(f"{args.patients} patients loaded into {path} in {time.perf_counter() - t:.0f} s", flush=True)
        return url, lambda: None
    url, drop = fresh_url(args.db, tmp)
    store = setup_trial(url)
    t = time.perf_counter()
    import_store(store, list(batches(args.patients, 100, "sdtm")), "sdtm")
    store.dispose()
    print(f"{args.patients} patients loaded in {time.perf_counter() - t:.0f} s", flush=True)
    return url, drop


def run_reads(args) -> None:
    with tempfile.TemporaryDirectory(prefix="dosewatch-bench-") as tmp:
        url, drop = loaded_database(args, Path(tmp))
        try:
            port = free_port()
            server = start_server(url, port, args.workers)
            try:
                base = f"http://127.0.0.1:{port}"
                auth = token(base)
                pids = [f"bench-{i}" for i in range(args.patients)]
                asyncio.run(load(base, auth, pids, 200, args.clients))  # warm-up
                for kind, clients in [(k, c) for k in args.client for c in args.clients_list or [args.clients]]:
                    run_load = load if kind == "httpx" else raw_load
                    cpu, client_cpu = server_cpu_seconds(server), time.process_time()
                    t = time.perf_counter()
                    lat = sorted(asyncio.run(run_load(base, auth, pids, args.requests, clients)))
                    wall = time.perf_counter() - t
                    cpu_after, client_cpu = server_cpu_seconds(server), time.process_time() - client_cpu
                    q = statistics.quantiles(lat, n=100)
                    per = (f", server CPU {(cpu_after - cpu) / len(lat) * 1000:.2f} ms/request"
                           if cpu is not None and cpu_after is not None else "")
                    per += f", client ({kind}) CPU {client_cpu / len(lat) * 1000:.2f} ms/request"
                    print(f"assessment reads, {clients} clients, {len(lat)} requests, {args.workers} worker(s) on "
                          f"{url.split(':')[0]}: p50 {q[49] * 1000:.1f} ms, p95 {q[94] * 1000:.1f} ms, "
                          f"p99 {q[98] * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms, {len(lat) / wall:,.0f} requests/s"
                          f"{per}", flush=True)
            finally:
                stop(server)
        finally:
            drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["import", "reads"])
    parser.add_argument("--db", help="PostgreSQL URL (a fresh schema is made and dropped); default: SQLite")
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--kinds", nargs="+", default=["sdtm", "fhir"], choices=["sdtm", "fhir"])
    parser.add_argument("--via", nargs="+", default=["store", "api"], choices=["store", "api"])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--client", choices=["httpx", "raw"], nargs="+", default=["httpx"],
                        help="reads: the load client(s): httpx.AsyncClient, or a minimal HTTP/1.1 client on asyncio")
    parser.add_argument("--clients-list", type=int, nargs="+", metavar="N",
                        help="reads: one load run for each number of clients (e.g. 1 5 10 20)")
    parser.add_argument("--keep", metavar="FILE", help="reads: keep the loaded trial in this SQLite file (with a "
                        "PostgreSQL --db: in this schema) and reuse it in later runs (loaded when missing)")
    args = parser.parse_args()
    (run_import if args.what == "import" else run_reads)(args)


if __name__ == "__main__":
    main()
