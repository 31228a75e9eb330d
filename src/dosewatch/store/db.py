"""Engine, sessions and migrations for SQLite (default, a file in the data folder) or PostgreSQL.

Writes take one lock first (``Store.writing``): ``BEGIN IMMEDIATE`` on SQLite, a row lock on the
audit chain's head on PostgreSQL. So writers run one at a time, the audit chain never forks and an
import never interleaves with another; readers are not blocked (SQLite WAL, PostgreSQL MVCC).
"""
from __future__ import annotations

import datetime as dt
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, exc as sa_exc, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from .models import AuditHead
from .scope import Refused


def data_dir() -> Path:
    """Where the default database and the token key live: $DOSEWATCH_DATA, else ~/.dosewatch."""
    return Path(os.environ.get("DOSEWATCH_DATA") or Path.home() / ".dosewatch")


def load_audit_secret(folder: Path) -> str:
    """The audit chain's secret: $DOSEWATCH_AUDIT_KEY, else a random one kept in ``folder/audit.key``
    (readable by the owner only). Kept outside the database, so that whoever can write the database
    cannot recompute the chain; apart from the tokens' key, so that rotating that one (which logs
    everyone out) leaves the chain verifiable. Back it up with the database, apart from it."""
    if os.environ.get("DOSEWATCH_AUDIT_KEY"):
        return os.environ["DOSEWATCH_AUDIT_KEY"]
    path = folder / "audit.key"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return path.read_text().strip()
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def private_dir(folder: Path) -> Path:
    """``folder``, created readable by this user only (0700), and checked: owned by this user and
    not open to others (a folder another local user made first, in /tmp say, is refused)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = folder.stat()
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise PermissionError(f"{folder} belongs to another user: not used")
    if st.st_mode & 0o077:
        os.chmod(folder, 0o700)
    return folder


def private_file(path: Path) -> None:
    """``path`` created (empty) readable and writable by this user only (0600), or made so."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)


def clean_stale(folder: Path, prefix: str, max_age_s: float) -> int:
    """Remove what ``folder`` holds under ``prefix`` older than ``max_age_s`` (left by a killed
    server: an import's temporary folder lives seconds). Returns how many were removed."""
    import shutil
    import time

    removed = 0
    for path in folder.glob(f"{prefix}*") if folder.is_dir() else ():
        try:
            if time.time() - path.lstat().st_mtime > max_age_s:
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def work_dir() -> Path:
    """The server's own temporary folder (imports unpack there): private, in the data folder."""
    return private_dir(data_dir() / "tmp")


def default_url(name: str = "dosewatch.db") -> str:
    folder = private_dir(data_dir())
    return f"sqlite:///{folder / name}"


def _has_nul(params: Any) -> bool:
    values = params.values() if isinstance(params, dict) else params if isinstance(params, list | tuple) else ()
    for v in values:
        if (isinstance(v, str) and "\x00" in v) or (isinstance(v, dict | list | tuple) and _has_nul(v)):
            return True
    return False


def _refuse_nul(_conn, _cursor, _statement, params, _context, _executemany) -> None:
    # PostgreSQL refuses text with a NUL (a driver error, a 500); SQLite would store it. Refused on
    # both, whichever form or field brought it (imports name the row: ``records._nul_characters``).
    if params and _has_nul(params):
        raise Refused("a NUL character in the text: refused")


def make_engine(url: str, **kwargs) -> Engine:
    if not url.startswith("sqlite"):
        engine = create_engine(url, pool_pre_ping=True, **kwargs)
        event.listen(engine, "before_cursor_execute", _refuse_nul)
        return engine
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60}, **kwargs)
    event.listen(engine, "before_cursor_execute", _refuse_nul)
    database = engine.url.database
    if database and database != ":memory:" and not database.startswith("file:") and Path(database).parent.is_dir():
        private_file(Path(database))  # SQLite makes its -wal and -shm files with the same mode

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        # We emit BEGIN ourselves (pysqlite's own transaction handling would start it late).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")  # an acknowledged import survives a power cut
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA cache_size=-65536")  # 64 MB: bulk imports update several indexes
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("writer") else "BEGIN")

    return engine


SCHEMES = ("sqlite", "postgresql")


class DatabaseUnavailable(Exception):
    """The database cannot be used: one line naming it (password hidden) and what to do."""


def _shown(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa_exc.ArgumentError:
        return repr(url)


def _unavailable(url: str, error: Exception) -> DatabaseUnavailable:
    """The first line of the driver's message and the usual remedy for this kind of database."""
    reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
    if url.startswith("sqlite"):
        hint = "check that its folder exists and that you may write there"
    else:
        hint = "check that PostgreSQL runs at that host and port, that the database exists (createdb), " \
               "and the user and password"
    return DatabaseUnavailable(f"cannot open the database {_shown(url)}: {reason}; {hint}")


class Store:
    """A database: ``reading()`` and ``writing()`` give sessions; ``today()`` is the assessment
    date (fixed in the demo, whose data are from 2007)."""

    def __init__(self, url: str | None = None, *, today: dt.date | None = None, audit_secret: str | None = None):
        from .audit import audit_key

        self.url = url or default_url()
        try:
            scheme = make_url(self.url).get_backend_name()
        except sa_exc.ArgumentError:
            scheme = None
        if scheme not in SCHEMES:
            raise DatabaseUnavailable(f"{_shown(self.url)} is not a database dosewatch can use: give "
                                      "sqlite:///path/file.db or postgresql+psycopg://user@host/database")
        try:
            self.engine = make_engine(self.url)
        except (sa_exc.ArgumentError, ImportError) as error:
            raise _unavailable(self.url, error) from error
        # The audit chain's HMAC key (never stored in the database: ``audit_secret``).
        self.audit_key = audit_key(audit_secret or load_audit_secret(data_dir()))
        info = {"audit_key": self.audit_key}
        self._sessions = sessionmaker(self.engine, expire_on_commit=False, info=info)
        self._writer_sessions = sessionmaker(self.engine.execution_options(writer=True), expire_on_commit=False,
                                             info=info)
        self.fixed_today = today

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def today(self) -> dt.date:
        return self.fixed_today or dt.date.today()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with self._sessions() as session:
            yield session

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """A transaction that holds the write lock from its first statement; committed at the end
        of the block, rolled back on any exception."""
        with self._writer_sessions() as session, session.begin():
            if not self.is_sqlite:
                session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update())
            yield session

    def upgrade(self) -> None:
        """Migrate to the newest schema; the first use of the database, so a database that cannot be
        opened is a DatabaseUnavailable here."""
        try:
            upgrade(self.engine, audit_key=self.audit_key)
        except (sa_exc.OperationalError, sa_exc.InterfaceError) as error:
            raise _unavailable(self.url, error) from error

    def dispose(self) -> None:
        self.engine.dispose()


def migrations_config(engine: Engine):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("dosewatch.store") / "migrations"))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head", audit_key: bytes | None = None) -> None:
    """Apply the Alembic migrations shipped in the package (``audit_key``: the key the audit chain
    is re-keyed with by migration 0008; default: the server key's)."""
    from alembic import command

    from .audit import audit_key as key_of

    cfg = migrations_config(engine)
    cfg.attributes["audit_key"] = audit_key or key_of(load_audit_secret(data_dir()))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
