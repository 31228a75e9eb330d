"""``dosewatch serve --demo``: a demo trial on the seed regimen, two sites, a user of every role.

Site ``OSU`` holds the four seed patients (the shipped FHIR Bundle); site ``NORTH`` holds one
synthetic patient built here, so that site scoping can be tried. The demo's passwords are printed
at start; they exist only in a demo database.
"""
from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from ..demo import seed_bundle_path
from ..io import ReadResult
from ..record import DOSES_SCHEMA, EVENTS_SCHEMA, OBSERVATIONS_SCHEMA, PATIENTS_SCHEMA, Cohort, frame
from .admin import add_site, add_trial, add_user, site_by_code
from .assess import recompute
from .db import Store
from .records import import_cohort
from .scope import Viewer
from .service import import_records

TRIAL = "demo"
PROTOCOL = "lenalidomide-cll-25mg-2007"
TODAY = dt.date(2007, 7, 22)  # the last day of the seed data: the demo's "today"
USERS = [  # name, role, sites
    ("admin", "admin", []),
    ("investigator", "investigator", ["OSU"]),
    ("nurse", "nurse", ["OSU"]),
    ("nurse-north", "nurse", ["NORTH"]),
    ("statistician", "statistician", []),
    ("monitor", "monitor", []),
]
PASSWORD = "demo-password"  # the demo database only
DEMO = Viewer("demo", "admin", None)

# The synthetic NORTH patient: daily labs (canonical units) from day -2 to day 14 of cycle 1, all in range,
# lenalidomide 25 mg and dexamethasone prophylaxis on days 1-14; the later planned labs are missing.
LABS = {"WBC": 42.0, "NEUT": 3.1, "LYM": 37.0, "PLAT": 160.0, "HGB": 128.0, "K": 4.1, "PHOS": 1.1, "CA": 2.35,
        "ALB": 41.0, "URATE": 330.0, "CREAT": 80.0, "LDH": 210.0}
UNITS = {"WBC": "10*9/L", "NEUT": "10*9/L", "LYM": "10*9/L", "PLAT": "10*9/L", "HGB": "g/L", "K": "mmol/L",
         "PHOS": "mmol/L", "CA": "mmol/L", "ALB": "g/L", "URATE": "umol/L", "CREAT": "umol/L", "LDH": "U/L"}


def north_patient(day1: dt.date = dt.date(2007, 6, 4), pid: str = "north-1") -> Cohort:
    src = "demo NORTH"
    obs, doses = [], []
    for day in range(-2, 15):
        if day == 0:
            continue
        date = day1 + dt.timedelta(days=day - 1 if day > 0 else day)
        for code, value in LABS.items():
            time = dt.datetime.combine(date, dt.time(7, 30))
            obs.append({"patient_id": pid, "obs_id": f"{pid}-{code.lower()}-d{day}", "code": code, "time": time,
                        "date": date, "time_known": True, "value": value, "unit": UNITS[code], "orig_value": value,
                        "orig_unit": UNITS[code], "source": src})
        if day >= 1:
            time = dt.datetime.combine(date, dt.time(9, 0))
            doses.append({"patient_id": pid, "dose_id": f"{pid}-lenalidomide-d{day}", "drug": "lenalidomide",
                          "time": time, "date": date, "time_known": True, "dose": 25.0, "dose_unit": "mg",
                          "route": "oral", "status": "completed", "source": src})
            doses.append({"patient_id": pid, "dose_id": f"{pid}-dexamethasone-d{day}", "drug": "dexamethasone",
                          "time": time, "date": date, "time_known": True, "dose": 12.0 if day <= 7 else 4.0,
                          "dose_unit": "mg", "route": "oral", "status": "completed", "source": src})
    patient = [{"patient_id": pid, "sex": "F", "birth_date": dt.date(1952, 4, 11), "source": src}]
    return Cohort(frame(patient, PATIENTS_SCHEMA), frame(obs, OBSERVATIONS_SCHEMA), frame(doses, DOSES_SCHEMA),
                  frame([], EVENTS_SCHEMA))


def create_demo(store: Store) -> list[tuple[str, str, list[str]]]:
    """Create the demo trial, sites, users and patients (once); returns the users."""
    from sqlalchemy import select

    from .models import Trial

    with store.writing() as session:
        if session.scalar(select(Trial).where(Trial.code == TRIAL)) is not None:
            return USERS
        add_site(session, "demo", "OSU", "Ohio State (seed patients)")
        add_site(session, "demo", "NORTH", "North (synthetic patient)")
        for name, role, sites in USERS:
            add_user(session, "demo", name, role, PASSWORD, sites)
        trial = add_trial(session, "demo", TRIAL, PROTOCOL)
        import_records(session, trial, DEMO, "fhir", seed_bundle_path().read_bytes(),
                       as_of=store.today(), site="OSU", name="seed-patients.json")
        north = site_by_code(session, "NORTH")
        report = import_cohort(session, trial, ReadResult(north_patient()), DEMO,
                               site_id=north.id)
        recompute(session, trial, report.changed_pks, store.today())
    return USERS


def _code_key() -> str:
    """A digest of the package's code and data: a demo built by other code is built again."""
    import hashlib
    from importlib import resources

    root = Path(str(resources.files("dosewatch")))
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.suffix in (".py", ".yaml", ".yml", ".csv", ".json") and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def demo_database(folder: Path) -> str:
    """A fresh ``demo.db`` in ``folder``, copied from a template built on the first start (and again
    whenever the code changed), so that ``serve --demo`` starts in about a second."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    template = folder / f"demo-template-{_code_key()}.db"
    if not template.exists():
        for old in folder.glob("demo-template-*"):
            old.unlink()
        building = folder / f"{template.stem}.{os.getpid()}.tmp"
        store = Store(f"sqlite:///{building}", today=TODAY)
        store.upgrade()
        create_demo(store)
        with store.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        store.dispose()
        for suffix in ("-wal", "-shm"):
            Path(f"{building}{suffix}").unlink(missing_ok=True)
        building.replace(template)
    for suffix in ("", "-wal", "-shm"):
        (folder / f"demo.db{suffix}").unlink(missing_ok=True)
    shutil.copy(template, folder / "demo.db")
    return f"sqlite:///{folder / 'demo.db'}"


def login_help(base_url: str) -> str:
    """What ``serve --demo`` prints: where to go and how to log in."""
    users = "\n".join(f"    {n:<13} {r}{' at ' + '/'.join(s) if s else ' (all sites)'}" for n, r, s in USERS)
    return (f"\ndosewatch demo trial server: {base_url}\n"
            f"  dashboard: open {base_url}/ in a browser and log in as nurse (password below)\n"
            f"  API docs, try it in the browser:  {base_url}/docs   (Authorize: a user below)\n"
            f"  OpenAPI schema:                   {base_url}/openapi.json\n"
            f"  users (password for all: {PASSWORD}):\n{users}\n"
            f"  log in:  curl -s -X POST {base_url}/api/token -d 'username=nurse&password={PASSWORD}'\n"
            f"  then:    curl -s -H 'Authorization: Bearer TOKEN' '{base_url}/api/trials/{TRIAL}/alerts?status=open'\n"
            f"  the demo's today is {TODAY.isoformat()} (the seed data's last day); stop with Ctrl-C\n")
