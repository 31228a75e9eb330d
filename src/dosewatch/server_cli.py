"""Commands of the trial server: ``serve``, ``db upgrade``, ``sites add``, ``users add``,
``trials add / reassess``, ``audit verify``. Light to import: the server's modules load inside
each command. Registered by the main app (``dosewatch.cli``)."""
from __future__ import annotations

import getpass
import sys
from typing import Annotated, Optional

import typer

DbOpt = Annotated[Optional[str], typer.Option("--db", envvar="DOSEWATCH_DB", help="Database URL: sqlite:///file.db "
                                              "or postgresql+psycopg://user@host/db [default: a SQLite file in "
                                              "$DOSEWATCH_DATA or ~/.dosewatch]")]


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _store(db: str | None):
    from .store.db import Store

    store = Store(db)
    store.upgrade()
    return store


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(code=2)


def serve(
    db: DbOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8000,
    demo: Annotated[bool, typer.Option("--demo", help="A demo trial (seed patients at site OSU, a synthetic "
                                       "patient at site NORTH) and demo users of every role; without --db, in a "
                                       "fresh demo.db")] = False,
    reassess_hour: Annotated[int, typer.Option(min=0, max=23, help="Reassess every patient at start and daily at "
                                               "this hour (local time): overdue labs and missed doses raise "
                                               "their alerts without new data")] = 2,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Server processes, about one a core: reads scale "
                                         "with them; the daily reassessment runs once, in this process")] = 1,
) -> None:
    """Start the trial server (HTTP API, OpenAPI at /openapi.json); migrations apply on start."""
    import uvicorn

    from .api.app import Settings, create_app
    from .store.db import Store, data_dir

    today = None
    if demo:
        from .store.demo import TODAY, create_demo, demo_database, login_help

        today = TODAY
        if db is None:
            db = demo_database(data_dir())
    store = Store(db, today=today)
    store.upgrade()
    typer.echo(f"database: {store.engine.url.render_as_string(hide_password=True)}", err=True)
    if demo:
        create_demo(store)  # nothing to do in a copy of the template
        typer.echo(login_help(f"http://{host}:{port}"), err=True)
    import os

    from .store.notify import NotifyConfig

    notify = NotifyConfig.from_env({"DOSEWATCH_BASE_URL": f"http://{host}:{port}", **os.environ})
    if workers == 1:
        app = create_app(Settings(db_url=store.url, today=today, reassess_hour=reassess_hour, notify=notify),
                         store=store)
        uvicorn.run(app, host=host, port=port)
        return
    # Several processes: each worker builds the app from the environment (same database, same
    # server key file in the data folder), and this process keeps the one daily reassessment.
    import asyncio
    import threading

    from .api.app import notify_forever, reassess_daily

    os.environ["DOSEWATCH_DB"] = store.engine.url.render_as_string(hide_password=False)
    if today is not None:
        os.environ["DOSEWATCH_TODAY"] = today.isoformat()
    threading.Thread(target=asyncio.run, args=(reassess_daily(store, reassess_hour),), daemon=True,
                     name="daily-reassessment").start()
    threading.Thread(target=asyncio.run, args=(notify_forever(store, notify, 15.0),), daemon=True,
                     name="notifications").start()
    uvicorn.run("dosewatch.api.app:app_from_env", factory=True, host=host, port=port, workers=workers)


db_app = typer.Typer(help="The server's database.", no_args_is_help=True)


@db_app.callback()
def _db_group() -> None:
    """The server's database. (a group, so that its one command keeps its name)"""


@db_app.command("upgrade")
def db_upgrade(db: DbOpt = None) -> None:
    """Apply the database migrations (also done when the server starts)."""
    store = _store(db)
    typer.echo(f"database at the newest schema: {store.engine.url.render_as_string(hide_password=True)}")


sites_app = typer.Typer(help="Trial sites.", no_args_is_help=True)


@sites_app.callback()
def _sites_group() -> None:
    """Trial sites. (a group, so that its one command keeps its name)"""


@sites_app.command("add")
def sites_add(
    code: Annotated[str, typer.Argument(help="Short site code, e.g. OSU")],
    name: Annotated[Optional[str], typer.Option(help="Full name")] = None,
    db: DbOpt = None,
) -> None:
    """Add a site."""
    from .store.admin import add_site
    from .store.scope import Refused

    try:
        with _store(db).writing() as session:
            add_site(session, _actor(), code, name)
    except Refused as exc:
        _fail(exc)
    typer.echo(f"site {code} added")


users_app = typer.Typer(help="Users and their roles.", no_args_is_help=True)


@users_app.callback()
def _users_group() -> None:
    """Users and their roles. (a group, so that its one command keeps its name)"""


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name (the login)")],
    role: Annotated[str, typer.Option(help="admin, investigator, nurse, statistician or monitor")],
    site: Annotated[Optional[list[str]], typer.Option(help="Site code (repeat for several); investigators and nurses")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from standard input")] = False,
    db: DbOpt = None,
) -> None:
    """Add a user; the password is stored as an Argon2 hash (there is no default password)."""
    from .store.admin import add_user
    from .store.scope import NotFound, Refused

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        with _store(db).writing() as session:
            add_user(session, _actor(), name, role, password, site or [])
    except (Refused, NotFound) as exc:
        _fail(exc)
    typer.echo(f"user {name} ({role}) added")


trials_app = typer.Typer(help="Trials and their protocols.", no_args_is_help=True)


@trials_app.callback()
def _trials_group() -> None:
    """Trials and their protocols. (a group, so that its one command keeps its name)"""


@trials_app.command("add")
def trials_add(
    code: Annotated[str, typer.Argument(help="Trial code used in the API's URLs")],
    protocol: Annotated[str, typer.Option(help="Built-in protocol id or protocol YAML file")],
    db: DbOpt = None,
) -> None:
    """Add a trial; its protocol (and every later version) is stored."""
    from .errors import InputError
    from .store.admin import add_trial
    from .store.scope import Refused

    try:
        with _store(db).writing() as session:
            trial = add_trial(session, _actor(), code, protocol)
            version = trial.protocol_version
    except (Refused, InputError) as exc:
        _fail(exc)
    typer.echo(f"trial {code} added on protocol {protocol} version {version}")


@trials_app.command("reassess")
def trials_reassess(
    code: Annotated[str, typer.Argument(help="Trial code")],
    as_of: Annotated[Optional[str], typer.Option(help="Assessment date YYYY-MM-DD [default: today]")] = None,
    db: DbOpt = None,
) -> None:
    """Reassess every patient (the daily run: overdue labs and missed doses raise alerts without new data)."""
    import datetime as dt

    from .store.admin import trial_by_code
    from .store.assess import recompute_all
    from .store.scope import NotFound

    try:
        day = dt.date.fromisoformat(as_of) if as_of else dt.date.today()
        with _store(db).writing() as session:
            n = recompute_all(session, trial_by_code(session, code), day)
    except (NotFound, ValueError) as exc:
        _fail(exc)
    typer.echo(f"{n} patient(s) of {code} reassessed as of {day}")


@trials_app.command("set-protocol")
def trials_set_protocol(
    code: Annotated[str, typer.Argument(help="Trial code")],
    protocol: Annotated[str, typer.Option(help="Built-in protocol id or protocol YAML file: the same protocol id, "
                                          "a higher version")],
    reason: Annotated[str, typer.Option(help="Why the protocol changed (audited)")],
    as_of: Annotated[Optional[str], typer.Option(help="Reassess as of YYYY-MM-DD [default: today]")] = None,
    db: DbOpt = None,
) -> None:
    """Put a new version of the trial's protocol in force; every patient is reassessed under it and
    every later assessment, alert and dose action names it. Earlier versions stay stored."""
    import datetime as dt

    from .errors import InputError
    from .store.admin import new_protocol_version, trial_by_code
    from .store.assess import recompute_all
    from .store.scope import NotFound, Refused

    try:
        day = dt.date.fromisoformat(as_of) if as_of else dt.date.today()
        with _store(db).writing() as session:
            trial = new_protocol_version(session, _actor(), trial_by_code(session, code), protocol, reason)
            version = trial.protocol_version
            n = recompute_all(session, trial, day)
    except (NotFound, Refused, InputError, ValueError) as exc:
        _fail(exc)
    typer.echo(f"trial {code} now on protocol version {version}; {n} patient(s) reassessed as of {day}")


@trials_app.command("signatures")
def trials_signatures(
    code: Annotated[str, typer.Argument(help="Trial code")],
    required: Annotated[bool, typer.Option("--required/--optional", help="Require an electronic signature "
                                           "(password again, meaning) on every cohort decision and dose action")],
    reason: Annotated[str, typer.Option(help="Why (audited)")],
    db: DbOpt = None,
) -> None:
    """Require electronic signatures on the trial's decisions, or make them optional."""
    from .store.admin import require_signatures, trial_by_code
    from .store.scope import NotFound, Refused

    try:
        with _store(db).writing() as session:
            require_signatures(session, _actor(), trial_by_code(session, code), required, reason)
    except (NotFound, Refused) as exc:
        _fail(exc)
    typer.echo(f"trial {code}: signatures {'required' if required else 'optional'}")


audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)


@audit_app.callback()
def _audit_group() -> None:
    """The audit trail. (a group, so that its one command keeps its name)"""


@audit_app.command("verify")
def audit_verify(db: DbOpt = None) -> None:
    """Check the audit trail's hash chain and every electronic signature against its record; names the
    first entry edited, removed or reordered, or the signed record changed. Exit 1 if any."""
    from .store.audit import verify

    with _store(db).reading() as session:
        result = verify(session)
    if result.ok:
        typer.echo(f"audit trail intact: {result.entries} entries, {result.signatures} signature(s) match "
                   "their records")
        return
    typer.echo(f"audit trail broken at entry {result.first_bad}: {result.problem}")
    raise typer.Exit(code=1)


notify_app = typer.Typer(help="Alerts sent to people (e-mail, webhook).", no_args_is_help=True)


@notify_app.callback()
def _notify_group() -> None:
    """Alerts sent to people. (a group, so that its one command keeps its name)"""


@notify_app.command("run")
def notify_run(
    db: DbOpt = None,
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit (for cron)")] = False,
    every: Annotated[float, typer.Option(min=1, help="Seconds between passes")] = 15.0,
) -> None:
    """Send what is due: critical alerts at once, digests at each user's hour, retries with back-off.
    The SMTP relay and the dashboard's address come from DOSEWATCH_SMTP_HOST, _PORT, _FROM, _USER,
    _PASSWORD, _STARTTLS and DOSEWATCH_BASE_URL. `serve` runs the same passes itself."""
    import os
    import time

    from .channels import send
    from .store.notify import NotifyConfig, deliver_once

    store = _store(db)
    config = NotifyConfig.from_env(dict(os.environ))
    while True:
        counts = deliver_once(store, config, send)
        typer.echo(f"queued {counts['queued']}, sent {counts['sent']}, to retry or failed {counts['failed']}", err=True)
        if once:
            return
        time.sleep(every)
