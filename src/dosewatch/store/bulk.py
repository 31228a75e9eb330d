"""Large writes and reads of whole columns, below the ORM: an import of a million observations
would spend most of its time building ORM rows otherwise.

Inserts use the driver directly, in the caller's transaction: ``executemany`` on SQLite, ``COPY``
on PostgreSQL. Values are written in the storage format SQLAlchemy reads back (SQLite: dates as
``YYYY-MM-DD``, times as ``YYYY-MM-DD HH:MM:SS.ffffff``, booleans as 0/1). ``read_frame`` runs a
select and returns a polars frame, parsing those formats on whole columns.
"""
from __future__ import annotations

import io

import polars as pl
from sqlalchemy import Select
from sqlalchemy.orm import Session

SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%6f"


def _dbapi(session: Session):
    return session.connection().connection.dbapi_connection


def insert_frame(session: Session, table: str, df: pl.DataFrame) -> None:
    """Insert every row of ``df`` (columns named as the table's) into ``table``."""
    if df.is_empty():
        return
    session.flush()  # pending ORM changes first (the rows inserted here may refer to them)
    cols = ", ".join(f'"{c}"' for c in df.columns)
    cur = _dbapi(session).cursor()
    try:
        if session.bind.dialect.name == "sqlite":
            out = df.with_columns(
                *(pl.col(c).dt.strftime(SQLITE_TIME) for c, t in df.schema.items() if isinstance(t, pl.Datetime)),
                *(pl.col(c).dt.strftime("%Y-%m-%d") for c, t in df.schema.items() if t == pl.Date),
                *(pl.col(c).cast(pl.Int8) for c, t in df.schema.items() if t == pl.Boolean))
            marks = ", ".join("?" * df.width)
            cur.executemany(f'INSERT INTO "{table}" ({cols}) VALUES ({marks})', out.rows())
        else:
            buf = io.BytesIO()
            df.write_csv(buf, include_header=False, datetime_format="%Y-%m-%dT%H:%M:%S%.6f")
            with cur.copy(f'COPY "{table}" ({cols}) FROM STDIN (FORMAT csv)') as copy:
                copy.write(buf.getvalue())
    finally:
        cur.close()


def read_frame(session: Session, stmt: Select, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """The rows of ``stmt`` (its columns in ``schema``'s order) as a frame with that schema."""
    if session.bind.dialect.name != "sqlite":
        return pl.DataFrame(session.execute(stmt).all(), schema=schema, orient="row")
    compiled = stmt.compile(session.bind, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    cur = _dbapi(session).cursor()
    try:
        cur.execute(str(compiled), [params[p] for p in compiled.positiontup])
        rows = cur.fetchall()
    finally:
        cur.close()
    raw = {c: (pl.String if isinstance(t, pl.Datetime) or t == pl.Date else pl.Int64 if t == pl.Boolean else t)
           for c, t in schema.items()}
    columns = list(zip(*rows)) if rows else [[] for _ in raw]
    df = pl.DataFrame([pl.Series(c, v, t, strict=False) for (c, t), v in zip(raw.items(), columns, strict=True)])
    return df.with_columns(
        *(pl.col(c).str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us") for c, t in schema.items()
          if isinstance(t, pl.Datetime)),
        *(pl.col(c).str.to_date("%Y-%m-%d") for c, t in schema.items() if t == pl.Date),
        *(pl.col(c).cast(pl.Boolean) for c, t in schema.items() if t == pl.Boolean))
