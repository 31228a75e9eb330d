"""SDTM datasets from disk: CSV (on whole columns when the file is plain RFC 4180, else row by
row with the ``csv`` module) and SAS XPORT v5, every value as text with its row number (``_row``).
See docs/sdtm.md, "How CSV is read"."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import polars as pl

from ..errors import Problem


def read_csv(path: Path) -> tuple[pl.DataFrame | None, list[Problem]]:
    """A CSV dataset as text columns; row n is the n-th record after the header (blank lines keep
    their number and are skipped; a ragged row is reported and left out).

    Read on whole columns by polars whenever the file is plain RFC 4180 CSV (checked on the bytes
    first, see ``_read_csv_columns``); anything else (not UTF-8, stray quotes, bare carriage returns,
    a duplicate or empty header, a giant field) goes through Python's ``csv`` module row by row
    (``_read_csv_rows``), which reads and reports it exactly as before."""
    fast = _read_csv_columns(path.name, path.read_bytes())
    return fast if fast is not None else _read_csv_rows(path)


def _read_csv_columns(name: str, data: bytes) -> tuple[pl.DataFrame, list[Problem]] | None:
    """The fast path of ``_read_csv``: the records and their field counts are found on the bytes
    (numpy: separators and newlines outside quotes), the values parsed by ``pl.read_csv``. Gives
    exactly what ``_read_csv_rows`` gives, or None when it cannot be sure to (the caller then
    takes the row-by-row path)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    buf = np.frombuffer(data, np.uint8)
    returns = np.flatnonzero(buf == 13)
    if returns.size and (returns[-1] == len(buf) - 1 or (buf[returns + 1] != 10).any()):
        return None  # bare carriage returns end records for the csv module, not for polars
    newlines, commas = np.flatnonzero(buf == 10), np.flatnonzero(buf == 44)
    quotes = np.flatnonzero(buf == 34)
    if quotes.size:
        # RFC 4180 quoting only: quotes alternate opening / closing; an opening quote starts a field
        # (or is the second of an escaped ""), a closing one ends it (or is the first of "").
        if quotes.size % 2:
            return None
        n = len(buf)
        opening, closing = quotes[0::2], quotes[1::2]
        before = buf[np.maximum(opening - 1, 0)]
        after = buf[np.minimum(closing + 1, n - 1)]
        ok_open = (opening == 0) | (before == 44) | (before == 10) | (before == 34)
        ok_close = (closing == n - 1) | (after == 44) | (after == 10) | (after == 13) | (after == 34)
        if not (ok_open.all() and ok_close.all()):
            return None
        # A separator is inside a quoted field when an odd number of quotes come before it.
        # (the parity of a running count of quotes: one pass over the bytes, where searching each
        # separator among the quotes took longer on files that quote every field)
        inside = np.cumsum(buf == 34, dtype=np.uint8) & 1  # uint8 wraps at 256, which keeps the parity
        newlines = newlines[inside[newlines] == 0]
        commas = commas[inside[commas] == 0]
    ends = newlines if data.endswith(b"\n") else np.append(newlines, len(data))
    if not ends.size:
        return None
    starts = np.concatenate(([0], ends[:-1] + 1))
    if int((ends - starts).max()) > csv.field_size_limit():
        return None  # the csv module refuses fields this long
    fields = np.searchsorted(commas, ends) - np.searchsorted(commas, starts) + 1
    first = data[: ends[0] + 1].decode("utf-8")
    header_rows = list(csv.reader(io.StringIO(first, newline="")))
    if len(header_rows) != 1 or not any(h.strip() for h in header_rows[0]):
        return None
    header = [h.strip().upper() for h in header_rows[0]]
    if len(set(header)) != len(header) or fields[0] != len(header):
        return None
    try:
        df = pl.read_csv(data, has_header=False, schema={f"_c{i}": pl.String for i in range(len(header))},
                         empty_string_is_null=False, truncate_ragged_lines=True, raise_if_empty=False)
    except Exception:  # noqa: BLE001 - whatever polars does not read, the csv module reports
        return None
    if df.height != len(ends):
        return None
    # Blank records: an empty line, or a single field of white space (as the csv module reads it).
    blank = np.zeros(len(ends), dtype=bool)
    single = np.flatnonzero(fields == 1)
    single = single[single > 0]
    if single.size:
        values = df.get_column("_c0").gather(single).to_list()
        blank[single] = [not (v or "").strip() for v in values]
    ragged = (fields != len(header)) & ~blank
    ragged[0] = False
    problems = [Problem(f"{name} row {n}", "(row)",
                        f"malformed CSV row: {fields[n]} fields, the header has {len(header)}")
                for n in np.flatnonzero(ragged).tolist()]
    keep = ~(blank | ragged)
    keep[0] = False  # the header
    numbers = np.flatnonzero(keep)
    df = df.rename(dict(zip(df.columns, header, strict=True)))
    if numbers.size != df.height:
        df = df.filter(pl.Series(keep))
    return df.with_columns(pl.Series("_row", numbers, dtype=pl.Int64)), problems


def _read_csv_rows(path: Path) -> tuple[pl.DataFrame | None, list[Problem]]:
    """CSV with Python's csv module, so that ragged rows can be named; row n is the n-th line after
    the header (blank lines keep their number and are skipped)."""
    name = path.name
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            lines = []
            try:
                for line in reader:
                    lines.append(line)
            except csv.Error as exc:
                return None, [Problem(name, "(file)", f"malformed CSV at line {reader.line_num}: {exc}", kind="file")]
    except UnicodeDecodeError as exc:
        return None, [Problem(name, "(file)", f"not UTF-8 text: {exc}", kind="file")]
    if not lines or not any(h.strip() for h in lines[0]):
        return None, [Problem(name, "(file)", "empty file: no header row", kind="file")]
    header = [h.strip().upper() for h in lines[0]]
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        return None, [Problem(name, c, "column appears more than once in the header", kind="file") for c in dupes]
    problems, rows, numbers = [], [], []
    for n, line in enumerate(lines[1:], start=1):
        if not line or (len(line) == 1 and not line[0].strip()):
            continue
        if len(line) != len(header):
            problems.append(Problem(f"{name} row {n}", "(row)",
                                    f"malformed CSV row: {len(line)} fields, the header has {len(header)}"))
            continue
        rows.append(line)
        numbers.append(n)
    df = pl.DataFrame(rows, schema={h: pl.String for h in header}, orient="row")
    return df.with_columns(pl.Series("_row", numbers, dtype=pl.Int64)), problems


def read_xpt(path: Path) -> tuple[pl.DataFrame | None, list[Problem]]:
    import pyreadstat

    try:
        df, _ = pyreadstat.read_xport(path, output_format="polars")
    except Exception as exc:  # pyreadstat raises its own ReadstatError and others
        return None, [Problem(path.name, "(file)", f"cannot read SAS XPORT file: {exc}", kind="file")]
    # Everything as text, as in CSV; whole numbers without ".0" so that --SEQ 3 gives id "...-3".
    cols = []
    for c, t in df.schema.items():
        s = pl.col(c)
        if t.is_float():
            x = df[c].drop_nulls()
            whole = x.is_finite().all() and (x == x.round(0)).all()
            cols.append((s.cast(pl.Int64) if whole else s).cast(pl.String).alias(c.upper()))
        else:
            cols.append(s.cast(pl.String).alias(c.upper()))
    df = df.select(cols)
    return df.with_columns(pl.int_range(1, df.height + 1, dtype=pl.Int64).alias("_row")), []


def load_dataset(path: Path) -> tuple[pl.DataFrame | None, list[Problem]]:
    df, problems = read_xpt(path) if path.suffix.lower() == ".xpt" else read_csv(path)
    if df is not None:
        text = [c for c in df.columns if c != "_row"]
        df = df.with_columns(pl.col(text).str.strip_chars().replace("", None))
    return df, problems
