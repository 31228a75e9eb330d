"""CDISC SDTM in and out.

``read_sdtm`` reads a folder of SDTM datasets (CSV or SAS XPORT v5) into the canonical ``Cohort``;
``write_sdtm`` writes a cohort back as SDTM so that read -> write -> read gives the same tables;
``adlb_frame`` and ``ae_frame`` derive ADaM-style ADLB rows and SDTM AE rows for export, and
``write_frame`` writes any of these frames as CSV or XPT. The variables read and written, and every
problem the reader reports, are listed in docs/sdtm.md.

Everything works on whole columns: each dataset is read as text, checked with polars expressions
(one problem frame per check), converted once per (analyte, unit) and filtered.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import numpy as np
import polars as pl

from ..analytes import catalog
from ..drugs import drug_catalog
from ..errors import Problem, UnitError
from ..events import Event
from ..record import (
    DOSES_SCHEMA,
    EVENTS_SCHEMA,
    OBSERVATIONS_SCHEMA,
    PATIENTS_SCHEMA,
    Cohort,
    empty,
    study_day,
    study_day_expr,
)
from . import ReadResult, finish

FINDINGS = ("LB", "VS", "TR", "PE")
DOMAINS = ("DM", *FINDINGS, "EX", "EC", "CE", "AE")

# LBSPEC values read as blood (serum or plasma); a urine potassium is not a serum potassium.
BLOOD_SPECIMENS = {"BLOOD", "SERUM", "PLASMA", "SERUM OR PLASMA", "WHOLE BLOOD", "VENOUS BLOOD",
                   "ARTERIAL BLOOD", "CAPILLARY BLOOD"}

# ISO 8601 date or date-time as SDTM --DTC writes it; groups: Y M D h m s fraction offset.
_DTC = (r"^(\d{4})-(\d{2})-(\d{2})"
        r"(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?(Z|[+-]\d{2}(?::?\d{2})?)?)?$")
# Partial dates (SDTMIG 4.4.4: missing parts are left out or written as "-"): "2024", "2024-03", "2024---15".
_PARTIAL = r"^\d{4}(?:-(?:\d{2}|-)?)?(?:-(?:\d{2})?)?(?:T.*)?$"
# Ids dosewatch writes into --SPID (see _ids): "<2-letter domain>-<USUBJID>-...".
_OWN_ID = r"^[A-Z]{2}-"


# ---------------------------------------------------------------------------------------------
# Reading


class _Log:
    """Problems of one dataset, gathered as frames (one per check) and turned into Problems at the end."""

    def __init__(self, file: str):
        self.file = file
        self.parts: list[pl.DataFrame] = []

    def flag(self, df: pl.DataFrame, mask: pl.Expr, field: str, message: pl.Expr | str,
             severity: str = "error", drop: bool = True) -> None:
        """Report every row where ``mask`` holds; ``drop`` rows are left out of the cohort."""
        if not df.select(mask.fill_null(False).any()).item():
            return  # the usual case: nothing to report, and no message to build on every row
        msg = message if isinstance(message, pl.Expr) else pl.lit(message)
        # The message is built on the whole frame, so that windows in it ("first at row n") see every row.
        hit = df.with_columns(mask.fill_null(False).alias("_hit"), msg.cast(pl.String).alias("_msg")).filter("_hit")
        hit = hit.select(
            pl.col("_row"),
            pl.lit(field).alias("field"),
            pl.col("_msg").alias("message"),
            pl.lit(severity).alias("severity"),
            pl.lit(drop).alias("drop"),
        )
        if hit.height:
            self.parts.append(hit)

    def drop(self, df: pl.DataFrame) -> pl.DataFrame:
        """The rows no check asked to drop."""
        if not self.parts:
            return df
        bad = pl.concat(self.parts).filter("drop")["_row"].unique()
        return df.filter(~pl.col("_row").is_in(bad.implode()))

    def problems(self) -> list[Problem]:
        if not self.parts:
            return []
        found = pl.concat(self.parts).sort("_row", maintain_order=True)
        return [Problem(f"{self.file} row {r}", f, m, s)
                for r, f, m, s in found.select("_row", "field", "message", "severity").iter_rows()]


def _txt(col: str) -> pl.Expr:
    """A column as text for a message ('' when empty)."""
    return pl.col(col).cast(pl.String).fill_null("")


def _number(col: str) -> pl.Expr:
    """Text to a finite float; null when empty or not a number."""
    x = pl.col(col).cast(pl.Float64, strict=False)
    return pl.when(x.is_finite()).then(x)


def _read_csv(path: Path) -> tuple[pl.DataFrame | None, list[Problem]]:
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
        newlines = newlines[np.searchsorted(quotes, newlines) % 2 == 0]
        commas = commas[np.searchsorted(quotes, commas) % 2 == 0]
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
                return None, [Problem(name, "(file)", f"malformed CSV at line {reader.line_num}: {exc}")]
    except UnicodeDecodeError as exc:
        return None, [Problem(name, "(file)", f"not UTF-8 text: {exc}")]
    if not lines or not any(h.strip() for h in lines[0]):
        return None, [Problem(name, "(file)", "empty file: no header row")]
    header = [h.strip().upper() for h in lines[0]]
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        return None, [Problem(name, c, "column appears more than once in the header") for c in dupes]
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


def _read_xpt(path: Path) -> tuple[pl.DataFrame | None, list[Problem]]:
    import pyreadstat

    try:
        df, _ = pyreadstat.read_xport(path, output_format="polars")
    except Exception as exc:  # pyreadstat raises its own ReadstatError and others
        return None, [Problem(path.name, "(file)", f"cannot read SAS XPORT file: {exc}")]
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


def _load(path: Path) -> tuple[pl.DataFrame | None, list[Problem]]:
    df, problems = _read_xpt(path) if path.suffix.lower() == ".xpt" else _read_csv(path)
    if df is not None:
        text = [c for c in df.columns if c != "_row"]
        df = df.with_columns(pl.col(text).str.strip_chars().replace("", None))
    return df, problems


def _require(df: pl.DataFrame, cols: list[str], file: str, problems: list[Problem]) -> bool:
    missing = [c for c in cols if c not in df.columns]
    problems.extend(Problem(file, c, "missing required column") for c in missing)
    return not missing


def _optional(df: pl.DataFrame, cols: list[str]) -> pl.DataFrame:
    return df.with_columns(pl.lit(None, pl.String).alias(c) for c in cols if c not in df.columns)


def _dates(df: pl.DataFrame, col: str, out: str) -> pl.DataFrame:
    """Parse an ISO 8601 --DTC column into ``{out}_date``, ``_time``, ``_tk`` (time known),
    ``_tz`` (UTC offset in minutes, not applied) and ``_err`` (why it cannot be used, else null)."""
    s = pl.col(col)
    df = df.with_columns(s.str.extract_groups(_DTC).alias("_g"))
    g = [pl.col("_g").struct.field(str(i)) for i in range(1, 9)]
    y, mo, d, h, mi, se, fr, tz = g
    date = pl.concat_str([y, mo, d], separator="-").str.to_date("%Y-%m-%d", strict=False)
    hour, minute, second = (x.cast(pl.Int64) for x in (h, mi, se))
    micro = fr.str.slice(0, 6).str.pad_end(6, "0").cast(pl.Int64)
    bad_time = ((hour > 23) | (minute > 59) | (second > 59)).fill_null(False)
    sign = pl.when(tz.str.starts_with("-")).then(-1).otherwise(1)
    offset = sign * (tz.str.slice(1, 2).cast(pl.Int64) * 60
                     + tz.str.replace(":", "").str.slice(3, 2).cast(pl.Int64, strict=False).fill_null(0))
    err = (
        pl.when(s.is_null()).then(pl.lit("missing date"))
        .when(y.is_null() & s.str.contains(_PARTIAL))
        .then(pl.format("partial date '{}': a complete date (YYYY-MM-DD) is needed", s))
        .when(y.is_null())
        .then(pl.format("'{}' is not an ISO 8601 date (YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss])", s))
        .when(date.is_null() | bad_time).then(pl.format("'{}' is not a valid date or time", s))
    )
    return df.with_columns(
        date.alias(f"{out}_date"),
        (date.cast(pl.Datetime("us")) + pl.duration(
            hours=hour.fill_null(0), minutes=minute.fill_null(0), seconds=second.fill_null(0),
            microseconds=micro.fill_null(0))).alias(f"{out}_time"),
        h.is_not_null().alias(f"{out}_tk"),
        pl.when(tz == "Z").then(0).otherwise(offset).cast(pl.Int32).alias(f"{out}_tz"),
        err.alias(f"{out}_err"),
    ).drop("_g")


def _flag_date(df: pl.DataFrame, log: _Log, col: str, out: str, required: bool = True) -> None:
    """Report dates that cannot be used; an empty optional date is fine."""
    bad = pl.col(f"{out}_err").is_not_null()
    log.flag(df, bad if required else bad & pl.col(col).is_not_null(), col, pl.col(f"{out}_err"))


def _ids(df: pl.DataFrame, dom: str, log: _Log) -> pl.DataFrame:
    """Record id "<DOM>-<USUBJID>-<--SEQ>", or --SPID itself when it already has that shape (as
    dosewatch writes it) so that ids survive a write and a read. Duplicates are reported."""
    seq, spid = f"{dom}SEQ", f"{dom}SPID"
    own = (pl.col(spid).str.contains(_OWN_ID)
           & pl.col(spid).str.slice(3).str.starts_with(pl.col("USUBJID") + "-")).fill_null(False)
    df = df.with_columns(
        pl.when(own).then(pl.col(spid)).otherwise(pl.format("{}-{}-{}", pl.lit(dom), "USUBJID", seq)).alias("_id"),
        pl.when(own).then(pl.lit(spid)).otherwise(pl.lit(seq)).alias("_idcol"),
    )
    log.flag(df, pl.col(seq).is_null() & ~own, seq, "missing sequence number")
    keyed = df.filter(pl.col("_id").is_not_null())
    later = ~pl.col("_id").is_first_distinct()  # as int_range(len).over("_id") > 0, without the window
    log.flag(keyed, later & (pl.col("_idcol") == seq), seq,
             pl.format("duplicate {} {} for subject {} (first at row {})", pl.lit(seq), _txt(seq), _txt("USUBJID"),
                       pl.col("_row").first().over("_id")))
    log.flag(keyed, later & (pl.col("_idcol") == spid), spid,
             pl.format("duplicate {} {} (first at row {})", pl.lit(spid), _txt(spid),
                       pl.col("_row").first().over("_id")))
    return df


def _flag_subject(df: pl.DataFrame, log: _Log, subjects: set[str]) -> None:
    log.flag(df, pl.col("USUBJID").is_null(), "USUBJID", "missing subject id")
    log.flag(df, pl.col("USUBJID").is_not_null() & ~pl.col("USUBJID").is_in(sorted(subjects)), "USUBJID",
             pl.format("subject {} is not in DM", pl.col("USUBJID")))


def _read_dm(df: pl.DataFrame, file: str, problems: list[Problem]) -> tuple[pl.DataFrame, pl.DataFrame, set[str]]:
    """Patients and the DEATH events given by DTHDTC; also every USUBJID named in DM."""
    if not _require(df, ["USUBJID"], file, problems):
        return empty(PATIENTS_SCHEMA), empty(EVENTS_SCHEMA), set()
    log = _Log(file)
    df = _optional(df, ["SEX", "BRTHDTC", "DTHDTC", "DTHFL"])
    df = _dates(_dates(df, "BRTHDTC", "birth"), "DTHDTC", "death")
    sex = pl.col("SEX").str.to_uppercase()
    df = df.with_columns(pl.when(sex.is_null()).then(pl.lit("U"))
                         .when(sex == "UNDIFFERENTIATED").then(pl.lit("U")).otherwise(sex).alias("sex"))
    log.flag(df, pl.col("USUBJID").is_null(), "USUBJID", "missing subject id")
    log.flag(df, (pl.int_range(pl.len()).over("USUBJID") > 0) & pl.col("USUBJID").is_not_null(), "USUBJID",
             pl.format("duplicate subject {} (first at row {})", "USUBJID", pl.col("_row").first().over("USUBJID")))
    log.flag(df, ~pl.col("sex").is_in(["M", "F", "U"]), "SEX",
             pl.format("unknown SEX '{}' (expected M, F, U or UNDIFFERENTIATED)", "SEX"))
    # A partial birth date is common (privacy); it is not imputed: the age is then unknown.
    partial_birth = pl.col("BRTHDTC").is_not_null() & pl.col("birth_err").str.starts_with("partial")
    log.flag(df, partial_birth, "BRTHDTC", pl.format("{}; birth date not used", "birth_err"), "warning", drop=False)
    log.flag(df, pl.col("BRTHDTC").is_not_null() & pl.col("birth_err").is_not_null() & ~partial_birth,
             "BRTHDTC", pl.col("birth_err"))
    _flag_date(df, log, "DTHDTC", "death", required=False)
    flag = pl.col("DTHFL").str.to_uppercase()
    log.flag(df, (flag == "N") & pl.col("DTHDTC").is_not_null(), "DTHFL", "DTHFL is N but DTHDTC gives a death date")
    log.flag(df, (flag == "Y") & pl.col("DTHDTC").is_null(), "DTHDTC",
             "DTHFL is Y but DTHDTC is empty: death date unknown, no DEATH event", "warning", drop=False)
    log.flag(df, flag.is_not_null() & ~flag.is_in(["Y", "N"]), "DTHFL", pl.format("DTHFL '{}' is not Y or N", "DTHFL"))
    subjects = set(df["USUBJID"].drop_nulls().to_list())
    problems.extend(log.problems())
    df = log.drop(df)
    source = pl.format("{} row {}", pl.lit(file), "_row")
    patients = df.select(
        pl.col("USUBJID").alias("patient_id"), "sex",
        pl.when(pl.col("birth_err").is_null()).then(pl.col("birth_date")).alias("birth_date"),
        pl.col("death_date").alias("deceased_date"), source.alias("source"))
    deaths = df.filter(pl.col("death_date").is_not_null()).select(
        pl.col("USUBJID").alias("patient_id"),
        pl.format("DM-{}-DTH", "USUBJID").alias("event_id"),
        pl.lit("DEATH").alias("code"),
        pl.lit(catalog().events["DEATH"].term).alias("term"),
        pl.col("death_time").alias("time"), pl.col("death_date").alias("date"), pl.col("death_tk").alias("time_known"),
        pl.lit(None, pl.Date).alias("end_date"), pl.lit(None, pl.Int32).alias("grade"),
        pl.col("death_tz").alias("tz_offset_min"), source.alias("source"))
    return patients, deaths, subjects


def _read_findings(df: pl.DataFrame, dom: str, file: str, subjects: set[str],
                   problems: list[Problem]) -> pl.DataFrame:
    """LB, VS, TR, PE: one observation per row, value converted to the analyte's canonical unit."""
    p = dom
    tc, orres, oru, stresn, stresu = f"{p}TESTCD", f"{p}ORRES", f"{p}ORRESU", f"{p}STRESN", f"{p}STRESU"
    need = ["USUBJID", f"{p}SEQ", tc, f"{p}DTC"]
    if orres not in df.columns and stresn not in df.columns:
        need.append(orres)
    if not _require(df, need, file, problems):
        return empty(OBSERVATIONS_SCHEMA)
    log = _Log(file)
    df = _optional(df, [orres, oru, stresn, stresu, f"{p}ORNRLO", f"{p}ORNRHI", f"{p}STNRLO", f"{p}STNRHI",
                        f"{p}STAT", f"{p}LOC", f"{p}SPID", "LBSPEC"])
    cat = catalog()
    analytes = [a for a in cat.analytes.values() if a.sdtm_domain == dom]
    codes = {a.sdtm_testcd: a.code for a in analytes}
    df = df.with_columns(pl.col(tc).str.to_uppercase().replace_strict(codes, default=None, return_dtype=pl.String)
                         .alias("code"))

    # Rows that are not read at all: not done, not blood, not a dosewatch analyte.
    not_done = pl.col(f"{p}STAT").str.to_uppercase() == "NOT DONE"
    log.flag(df, not_done, f"{p}STAT", "test not done (--STAT NOT DONE): skipped", "warning")
    spec = pl.col("LBSPEC").str.to_uppercase()
    other_spec = ~not_done.fill_null(False) & spec.is_not_null() & ~spec.is_in(sorted(BLOOD_SPECIMENS))
    log.flag(df, other_spec, "LBSPEC", pl.format("specimen {} is not blood, serum or plasma: skipped", "LBSPEC"),
             "warning")
    unknown = pl.col(tc).is_not_null() & pl.col("code").is_null()
    log.flag(df, ~not_done.fill_null(False) & ~other_spec & unknown, tc,
             pl.format("unknown test code {} in {}: not in the analyte catalog", tc, pl.lit(dom)))
    log.flag(df, ~not_done.fill_null(False) & ~other_spec & pl.col(tc).is_null(), tc, "missing test code")
    df = log.drop(df)

    # The value: --ORRES when it is a number (unit --ORRESU, range --ORNRLO/HI), else --STRESN
    # (unit --STRESU, range --STNRLO/HI).
    from_or = _number(orres).is_not_null()
    pick = lambda a, b: pl.when(from_or).then(pl.col(a)).otherwise(pl.col(b))  # noqa: E731
    df = df.with_columns(
        pl.when(from_or).then(_number(orres)).otherwise(_number(stresn)).alias("orig_value"),
        pick(oru, stresu).alias("orig_unit"),
        pl.when(from_or).then(pl.lit(oru)).otherwise(pl.lit(stresu)).alias("_ufield"),
        pick(f"{p}ORNRLO", f"{p}STNRLO").alias("_lo"),
        pick(f"{p}ORNRHI", f"{p}STNRHI").alias("_hi"),
    )
    no_value = pl.col("orig_value").is_null()
    log.flag(df, no_value & pl.col(orres).is_not_null(), orres,
             pl.format("non-numeric result '{}'{}", orres,
                       pl.when(pl.col(stresn).is_not_null()).then(pl.format(" and {} '{}'", pl.lit(stresn), stresn))
                       .otherwise(pl.lit(""))))
    log.flag(df, no_value & pl.col(orres).is_null() & pl.col(stresn).is_not_null(), stresn,
             pl.format("non-numeric result '{}'", stresn))
    log.flag(df, no_value & pl.col(orres).is_null() & pl.col(stresn).is_null(), orres,
             pl.format("no result ({} and {} are empty)", pl.lit(orres), pl.lit(stresn)))

    # One conversion per (analyte, unit), applied to the whole column.
    pairs = df.filter(~no_value).select("code", "orig_unit").unique()
    conv = []
    for code, unit in pairs.iter_rows():
        a = cat[code]
        if unit is None and a.unit != "1":
            conv.append((code, unit, None, None, f"no unit given ({code} is in {a.unit} or a unit convertible to it)"))
            continue
        try:
            scale, offset = a.conversion(unit or "1")
            conv.append((code, unit, scale, offset, None))
        except UnitError:
            conv.append((code, unit, None, None, f"unknown or incompatible unit '{unit}' for {code} "
                                                 f"(canonical unit {a.unit})"))
    conv_df = pl.DataFrame(conv, schema={"code": pl.String, "orig_unit": pl.String, "_scale": pl.Float64,
                                         "_offset": pl.Float64, "_uerr": pl.String}, orient="row")
    df = df.join(conv_df, on=["code", "orig_unit"], how="left", nulls_equal=True, maintain_order="left")
    for field in (oru, stresu):
        log.flag(df, pl.col("_uerr").is_not_null() & (pl.col("_ufield") == field), field, pl.col("_uerr"))
    lo_plaus = pl.col("code").replace_strict({a.code: a.plausible[0] for a in analytes}, return_dtype=pl.Float64)
    hi_plaus = pl.col("code").replace_strict({a.code: a.plausible[1] for a in analytes}, return_dtype=pl.Float64)
    canon = pl.col("code").replace_strict({a.code: a.unit for a in analytes}, return_dtype=pl.String)
    df = df.with_columns(
        (pl.col("orig_value") * pl.col("_scale") + pl.col("_offset")).alias("value"),
        canon.alias("unit"), lo_plaus.alias("_plo"), hi_plaus.alias("_phi"),
        (_number("_lo") * pl.col("_scale") + pl.col("_offset")).alias("ref_low"),
        (_number("_hi") * pl.col("_scale") + pl.col("_offset")).alias("ref_high"),
    )
    value_field = pl.when(pl.col("_ufield") == oru).then(pl.lit(orres)).otherwise(pl.lit(stresn))
    implausible = (pl.col("value") < pl.col("_plo")) | (pl.col("value") > pl.col("_phi"))
    for field in (orres, stresn):
        log.flag(df, implausible & (value_field == field), field,
                 pl.format("implausible value {} {} (= {} {}); plausible range {} to {} {}", "orig_value",
                           _txt("orig_unit"), pl.col("value").round_sig_figs(6), "unit", "_plo", "_phi", "unit"))
    for name, used in ((f"{p}ORNRLO", from_or), (f"{p}ORNRHI", from_or), (f"{p}STNRLO", ~from_or),
                       (f"{p}STNRHI", ~from_or)):
        log.flag(df, used & pl.col(name).is_not_null() & _number(name).is_null(), name,
                 pl.format("non-numeric reference limit '{}': not used", name), "warning", drop=False)

    df = _dates(df, f"{p}DTC", "obs")
    _flag_date(df, log, f"{p}DTC", "obs")
    sited = [a.code for a in analytes if a.sited]
    df = df.with_columns(pl.when(pl.col("code").is_in(sited)).then(pl.col(f"{p}LOC")).alias("site"))
    _flag_subject(df, log, subjects)
    df = _ids(df, dom, log)
    # Same subject, test, time, site and value twice: the same record entered twice.
    key = ["USUBJID", "code", "obs_time", "site", "value"]
    keyed = df.filter(pl.col("value").is_not_null() & pl.col("obs_time").is_not_null())
    log.flag(keyed, ~pl.struct(key).is_first_distinct(), tc,
             pl.format("duplicate record: same subject, test, date/time, site and value as row {}",
                       pl.col("_row").first().over(key)))
    problems.extend(log.problems())
    df = log.drop(df)
    return df.select(
        pl.col("USUBJID").alias("patient_id"), pl.col("_id").alias("obs_id"), "code",
        pl.col("obs_time").alias("time"), pl.col("obs_date").alias("date"), pl.col("obs_tk").alias("time_known"),
        "value", "unit", "orig_value", "orig_unit", "ref_low", "ref_high", "site",
        pl.col("obs_tz").alias("tz_offset_min"), pl.format("{} row {}", pl.lit(file), "_row").alias("source"),
    )


def _read_exposure(df: pl.DataFrame, dom: str, file: str, subjects: set[str], deaths: dict[str, dt.date],
                   with_completed: bool, problems: list[Problem]) -> pl.DataFrame:
    """EX (doses given) or EC (doses as collected: ECOCCUR N = not given). A record spanning several
    days at a daily frequency becomes one dose per day."""
    p = dom
    need = ["USUBJID", f"{p}SEQ", f"{p}TRT", f"{p}STDTC"] + ([f"{p}DOSE", f"{p}DOSU"] if dom == "EX" else [])
    if not _require(df, need, file, problems):
        return empty(DOSES_SCHEMA)
    log = _Log(file)
    df = _optional(df, [f"{p}DOSE", f"{p}DOSU", f"{p}ENDTC", f"{p}ROUTE", f"{p}DOSFRQ", f"{p}SPID",
                        "EXADJ", "ECOCCUR", "ECMOOD"])
    dose = _number(f"{p}DOSE")
    if dom == "EX":
        # EXDOSE 0 is a dose not given (SDTMIG: the reason goes to EXADJ).
        status = pl.when(dose == 0).then(pl.lit("not-done")).otherwise(pl.lit("completed"))
        log.flag(df, (dose == 0) & pl.col("EXADJ").is_null(), "EXDOSE",
                 "EXDOSE 0 without EXADJ: read as a dose not given", "warning", drop=False)
    else:
        occur = pl.col("ECOCCUR").str.to_uppercase()
        status = pl.when(occur == "N").then(pl.lit("not-done")).otherwise(pl.lit("completed"))
        log.flag(df, occur.is_not_null() & ~occur.is_in(["Y", "N"]), "ECOCCUR",
                 pl.format("ECOCCUR '{}' is not Y or N", "ECOCCUR"))
        # Planned doses are not administrations; given doses are EX's when EX is present.
        skip = (pl.col("ECMOOD").str.to_uppercase() == "SCHEDULED").fill_null(False)
        if not with_completed:
            skip = skip | (occur != "N").fill_null(True)
        df = df.filter(~skip)
    df = df.with_columns(status.alias("status"), dose.alias("dose"))
    log.flag(df, pl.col(f"{p}DOSE").is_not_null() & pl.col("dose").is_null(), f"{p}DOSE",
             pl.format("non-numeric dose '{}'", f"{p}DOSE"))
    log.flag(df, pl.col(f"{p}DOSE").is_null() & (pl.col("status") == "completed"), f"{p}DOSE",
             "missing dose for a dose given")
    log.flag(df, pl.col("dose") < 0, f"{p}DOSE", pl.format("negative dose {}", "dose"))

    trts = df[f"{p}TRT"].drop_nulls().unique().to_list()
    found = {t: drug_catalog().find(text=t) for t in trts}
    df = df.with_columns(
        pl.col(f"{p}TRT").replace_strict({t: d.name if d else t.lower() for t, d in found.items()},
                                         default=None, return_dtype=pl.String).alias("drug"),
        pl.col(f"{p}TRT").replace_strict({t: d.rxnorm[0] if d and d.rxnorm else None for t, d in found.items()},
                                         default=None, return_dtype=pl.String).alias("rxnorm"),
    )
    log.flag(df, pl.col(f"{p}TRT").is_null(), f"{p}TRT", "missing treatment name")
    unknown = [t for t, d in found.items() if d is None]
    log.flag(df, pl.col(f"{p}TRT").is_in(unknown), f"{p}TRT",
             pl.format("treatment '{}' is not in the drug catalog: kept as '{}'", f"{p}TRT", "drug"),
             "warning", drop=False)

    df = _dates(_dates(df, f"{p}STDTC", "st"), f"{p}ENDTC", "en")
    _flag_date(df, log, f"{p}STDTC", "st")
    _flag_date(df, log, f"{p}ENDTC", "en", required=False)
    days = ((pl.col("en_date") - pl.col("st_date")).dt.total_days() + 1).fill_null(1)
    log.flag(df, days < 1, f"{p}ENDTC",
             pl.format("{} {} is before {} {}", pl.lit(f"{p}ENDTC"), f"{p}ENDTC", pl.lit(f"{p}STDTC"), f"{p}STDTC"))
    freq = pl.col(f"{p}DOSFRQ").str.to_uppercase()
    log.flag(df, (days > 1) & freq.is_not_null() & (freq != "QD"), f"{p}DOSFRQ",
             pl.format("cannot expand a record over several days at frequency '{}' (only QD or empty)",
                       f"{p}DOSFRQ"))
    _flag_subject(df, log, subjects)
    df = _ids(df, dom, log)
    df = log.drop(df)

    # One dose per day; the first keeps --STDTC's time, the others are date-only.
    df = df.with_columns(days.clip(1).alias("_days"))
    df = df.with_columns(pl.int_ranges(0, "_days").alias("_n")).explode("_n")
    first = pl.col("_n") == 0
    df = df.with_columns(
        pl.when(pl.col("_days") == 1).then(pl.col("_id"))
        .otherwise(pl.format("{}-{}", "_id", pl.col("_n") + 1)).alias("dose_id"),
        (pl.col("st_date") + pl.duration(days="_n")).alias("date"),
    ).with_columns(
        pl.when(first).then(pl.col("st_time")).otherwise(pl.col("date").cast(pl.Datetime("us"))).alias("time"),
        (first & pl.col("st_tk")).alias("time_known"),
        pl.when(first).then(pl.col("st_tz")).alias("tz_offset_min"),
    )
    death = pl.col("USUBJID").replace_strict(deaths, default=None, return_dtype=pl.Date)
    after = (pl.col("status") == "completed") & (pl.col("date") > death)
    log.flag(df, after, f"{p}STDTC", pl.format("dose given on {} after the death date {} (DM.DTHDTC)", "date", death),
             drop=False)
    problems.extend(log.problems())
    return df.filter(~after.fill_null(False)).select(
        pl.col("USUBJID").alias("patient_id"), "dose_id", "drug", "rxnorm", "time", "date", "time_known", "dose",
        pl.col(f"{p}DOSU").alias("dose_unit"), pl.col(f"{p}ROUTE").alias("route"), "status", "tz_offset_min",
        pl.format("{} row {}", pl.lit(file), "_row").alias("source"),
    )


def _read_events(df: pl.DataFrame, dom: str, file: str, subjects: set[str], problems: list[Problem]) -> pl.DataFrame:
    """CE and AE: clinical events, matched to the event catalog on --DECOD, else --TERM."""
    p = dom
    need = ["USUBJID", f"{p}SEQ", f"{p}STDTC"]
    if f"{p}TERM" not in df.columns and f"{p}DECOD" not in df.columns:
        need.append(f"{p}TERM")
    if not _require(df, need, file, problems):
        return empty(EVENTS_SCHEMA)
    log = _Log(file)
    df = _optional(df, [f"{p}TERM", f"{p}DECOD", f"{p}ENDTC", f"{p}TOXGR", f"{p}OCCUR", f"{p}SPID"])
    # --OCCUR N: a pre-specified event that did not happen.
    df = df.filter((pl.col(f"{p}OCCUR").str.to_uppercase() != "N").fill_null(True))
    texts = set(df[f"{p}TERM"].drop_nulls().to_list()) | set(df[f"{p}DECOD"].drop_nulls().to_list())
    kinds = {t: k.code for t in texts if (k := catalog().event_for_text(t))}
    as_code = lambda c: pl.col(c).replace_strict(kinds, default=None, return_dtype=pl.String)  # noqa: E731
    grade = pl.col(f"{p}TOXGR").cast(pl.Float64, strict=False)
    df = df.with_columns(
        pl.coalesce(as_code(f"{p}DECOD"), as_code(f"{p}TERM")).alias("code"),
        pl.coalesce(f"{p}TERM", f"{p}DECOD").alias("term"),
        grade.cast(pl.Int32, strict=False).alias("grade"),
    )
    log.flag(df, pl.col("term").is_null(), f"{p}TERM", pl.format("missing event term ({} and {} are empty)",
                                                                 pl.lit(f"{p}TERM"), pl.lit(f"{p}DECOD")))
    log.flag(df, pl.col(f"{p}TOXGR").is_not_null() & ~grade.is_in([1.0, 2.0, 3.0, 4.0, 5.0]).fill_null(False),
             f"{p}TOXGR", pl.format("toxicity grade '{}' is not 1, 2, 3, 4 or 5", f"{p}TOXGR"))
    df = _dates(_dates(df, f"{p}STDTC", "st"), f"{p}ENDTC", "en")
    _flag_date(df, log, f"{p}STDTC", "st")
    _flag_date(df, log, f"{p}ENDTC", "en", required=False)
    log.flag(df, pl.col("en_date") < pl.col("st_date"), f"{p}ENDTC",
             pl.format("{} {} is before {} {}", pl.lit(f"{p}ENDTC"), f"{p}ENDTC", pl.lit(f"{p}STDTC"), f"{p}STDTC"))
    _flag_subject(df, log, subjects)
    df = _ids(df, dom, log)
    problems.extend(log.problems())
    df = log.drop(df)
    return df.select(
        pl.col("USUBJID").alias("patient_id"), pl.col("_id").alias("event_id"), "code", "term",
        pl.col("st_time").alias("time"), pl.col("st_date").alias("date"), pl.col("st_tk").alias("time_known"),
        pl.col("en_date").alias("end_date"), "grade", pl.col("st_tz").alias("tz_offset_min"),
        pl.format("{} row {}", pl.lit(file), "_row").alias("source"),
    )


def _datasets(folder: Path, problems: list[Problem]) -> dict[str, Path]:
    """Domain -> file; unknown domains and a domain given twice are reported."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in (".csv", ".xpt"):
            continue
        dom = path.stem.upper()
        if dom not in DOMAINS:
            problems.append(Problem(path.name, "(file)", f"domain {dom} is not read by dosewatch", "warning"))
        elif dom in found:
            problems.append(Problem(path.name, "(file)", f"domain {dom} is also given as {found[dom].name}"))
        else:
            found[dom] = path
    return found


def read_sdtm(folder: str | Path, *, skip_invalid: bool = False, collect: bool = False) -> ReadResult:
    """Read a folder of SDTM datasets (dm.csv / DM.xpt ...) into a Cohort.

    Every problem in every dataset is gathered in one pass. Any error fails the read
    (``InputError``) unless ``skip_invalid`` (invalid rows are left out, each one reported) or
    ``collect`` (return the problems with the valid rows)."""
    folder = Path(folder)
    problems: list[Problem] = []
    if not folder.is_dir():
        return finish(ReadResult(Cohort(), [Problem(str(folder), "(folder)", "not a folder")]),
                      skip_invalid=skip_invalid, collect=collect)
    files = dict(sorted(_datasets(folder, problems).items(), key=lambda kv: DOMAINS.index(kv[0])))
    if not files:
        problems.append(Problem(str(folder), "(folder)", "no SDTM datasets (.csv or .xpt) found"))
    frames: dict[str, pl.DataFrame] = {}
    for dom, path in files.items():
        df, found = _load(path)
        problems.extend(found)
        if df is not None:
            frames[dom] = df
    if "DM" not in files:
        problems.append(Problem(str(folder), "DM", "no DM dataset (dm.csv or dm.xpt): subjects unknown"))
        return finish(ReadResult(Cohort(), problems), skip_invalid=skip_invalid, collect=collect)
    if "DM" not in frames:
        return finish(ReadResult(Cohort(), problems), skip_invalid=skip_invalid, collect=collect)

    patients, deaths, subjects = _read_dm(frames["DM"], files["DM"].name, problems)
    death_dates = dict(zip(patients["patient_id"].to_list(), patients["deceased_date"].to_list(), strict=True))
    obs, doses, events = [], [], [deaths]
    for dom, df in frames.items():
        file = files[dom].name
        if dom in FINDINGS:
            obs.append(_read_findings(df, dom, file, subjects, problems))
        elif dom in ("EX", "EC"):
            doses.append(_read_exposure(df, dom, file, subjects, {k: v for k, v in death_dates.items() if v},
                                        with_completed=(dom == "EX" or "EX" not in frames), problems=problems))
        elif dom in ("CE", "AE"):
            events.append(_read_events(df, dom, file, subjects, problems))

    tables = {
        "observations": (obs, OBSERVATIONS_SCHEMA, ["patient_id", "time", "code", "obs_id"]),
        "doses": (doses, DOSES_SCHEMA, ["patient_id", "time", "drug", "dose_id"]),
        "events": (events, EVENTS_SCHEMA, ["patient_id", "time", "event_id"]),
    }
    kept = pl.Series(patients["patient_id"]).implode()
    out = {}
    for name, (parts, schema, order) in tables.items():
        table = pl.concat([p.cast(schema) for p in parts]) if parts else empty(schema)
        # Records of a subject whose DM row was invalid cannot stand alone.
        orphan = table.filter(~pl.col("patient_id").is_in(kept))
        problems.extend(Problem(src, "USUBJID", f"subject {pid} left out: its DM record is invalid")
                        for pid, src in orphan.select("patient_id", "source").iter_rows())
        out[name] = table.filter(pl.col("patient_id").is_in(kept)).sort(order, maintain_order=True)
    cohort = Cohort(patients.cast(PATIENTS_SCHEMA), out["observations"], out["doses"], out["events"])
    return finish(ReadResult(cohort, problems), skip_invalid=skip_invalid, collect=collect)


# ---------------------------------------------------------------------------------------------
# Writing


def _num_text(expr: pl.Expr) -> pl.Expr:
    """A float as the shortest text that reads back to the same float ("4" rather than "4.0")."""
    s = expr.cast(pl.String)
    return pl.when(s.str.ends_with(".0")).then(s.str.slice(0, s.str.len_chars() - 2)).otherwise(s)


def _dtc_text(time: str = "time", known: str = "time_known", tz: str = "tz_offset_min") -> pl.Expr:
    """ISO 8601 for --DTC: the date alone when the time is unknown, else date-time to the minute
    (seconds and microseconds when not zero) and the UTC offset when one was given."""
    t, offset_min = pl.col(time), pl.col(tz)
    clock = (pl.when(t.dt.microsecond() != 0).then(t.dt.strftime("%Y-%m-%dT%H:%M:%S%.6f"))
             .when(t.dt.second() != 0).then(t.dt.strftime("%Y-%m-%dT%H:%M:%S"))
             .otherwise(t.dt.strftime("%Y-%m-%dT%H:%M")))
    m = offset_min.abs()
    offset = pl.format("{}{}:{}", pl.when(offset_min < 0).then(pl.lit("-")).otherwise(pl.lit("+")),
                       (m // 60).cast(pl.String).str.zfill(2), (m % 60).cast(pl.String).str.zfill(2))
    clock = pl.when(offset_min.is_null()).then(clock).otherwise(clock + offset)
    return pl.when(pl.col(known)).then(clock).otherwise(t.dt.strftime("%Y-%m-%d"))


_CDISC_UNITS = {"Cel": "C", "mm[Hg]": "mmHg", "[degF]": "F", "/min": "beats/min"}


def adam_unit(ucum: str) -> str:
    """A canonical (UCUM) unit as CDISC Unit terminology writes it: 10*9/L -> 10^9/L, Cel -> C."""
    return _CDISC_UNITS.get(ucum, ucum.replace("10*", "10^"))


def _seq(dom: str) -> pl.Expr:
    return (pl.int_range(pl.len()).over("patient_id") + 1).alias(f"{dom}SEQ")


def _findings_frame(obs: pl.DataFrame, dom: str, studyid: str) -> pl.DataFrame:
    p = dom
    analytes = [a for a in catalog().analytes.values() if a.sdtm_domain == dom]
    meta = pl.DataFrame({"code": [a.code for a in analytes], "_testcd": [a.sdtm_testcd for a in analytes],
                         "_test": [a.name for a in analytes],
                         "_stresu": [adam_unit(a.unit) if a.unit != "1" else None for a in analytes]})
    df = obs.join(meta, on="code", how="inner", maintain_order="left")
    if df.is_empty():
        return pl.DataFrame()
    # Reference limits back in the unit of the result; 12 significant digits undo the float noise
    # of the round trip through the canonical unit.
    conv = []
    for code, unit in df.select("code", "orig_unit").unique().iter_rows():
        scale, offset = catalog()[code].conversion(unit or "1")
        conv.append((code, unit, scale, offset))
    conv_df = pl.DataFrame(conv, schema={"code": pl.String, "orig_unit": pl.String, "_s": pl.Float64,
                                         "_o": pl.Float64}, orient="row")
    df = df.join(conv_df, on=["code", "orig_unit"], how="left", nulls_equal=True, maintain_order="left")
    back = lambda c: _num_text(((pl.col(c) - pl.col("_o")) / pl.col("_s")).round_sig_figs(12))  # noqa: E731
    cols = [
        pl.lit(studyid).alias("STUDYID"), pl.lit(dom).alias("DOMAIN"), pl.col("patient_id").alias("USUBJID"),
        _seq(p), pl.col("obs_id").alias(f"{p}SPID"), pl.col("_testcd").alias(f"{p}TESTCD"),
        pl.col("_test").alias(f"{p}TEST"),
    ]
    if df["site"].is_not_null().any():
        cols.append(pl.col("site").alias(f"{p}LOC"))
    cols += [_num_text(pl.col("orig_value")).alias(f"{p}ORRES"), pl.col("orig_unit").alias(f"{p}ORRESU")]
    if dom == "LB" or df["ref_low"].is_not_null().any() or df["ref_high"].is_not_null().any():
        cols += [back("ref_low").alias(f"{p}ORNRLO"), back("ref_high").alias(f"{p}ORNRHI")]
    # Standard results rounded to 12 significant digits: conversions leave float noise (38.49999999999876).
    std = lambda c: pl.col(c).round_sig_figs(12)  # noqa: E731
    cols += [_num_text(std("value")).alias(f"{p}STRESC"), std("value").alias(f"{p}STRESN"),
             pl.col("_stresu").alias(f"{p}STRESU")]
    if dom == "LB" or df["ref_low"].is_not_null().any() or df["ref_high"].is_not_null().any():
        cols += [std("ref_low").alias(f"{p}STNRLO"), std("ref_high").alias(f"{p}STNRHI")]
    cols.append(_dtc_text().alias(f"{p}DTC"))
    return df.select(cols)


def _exposure_frame(doses: pl.DataFrame, dom: str, studyid: str) -> pl.DataFrame:
    p = dom
    if doses.is_empty():
        return pl.DataFrame()
    dtc = _dtc_text()
    cols = [pl.lit(studyid).alias("STUDYID"), pl.lit(dom).alias("DOMAIN"), pl.col("patient_id").alias("USUBJID"),
            _seq(p), pl.col("dose_id").alias(f"{p}SPID"), pl.col("drug").alias(f"{p}TRT"),
            pl.col("dose").alias(f"{p}DOSE"), pl.col("dose_unit").alias(f"{p}DOSU"),
            pl.col("route").alias(f"{p}ROUTE"), dtc.alias(f"{p}STDTC"), dtc.alias(f"{p}ENDTC")]
    if dom == "EC":
        cols += [pl.lit("PERFORMED").alias("ECMOOD"),
                 pl.when(pl.col("status") == "completed").then(pl.lit("Y")).otherwise(pl.lit("N")).alias("ECOCCUR")]
    return doses.select(cols)


def sdtm_frames(cohort: Cohort, *, studyid: str = "DOSEWATCH") -> dict[str, pl.DataFrame]:
    """The cohort as SDTM datasets (domain -> frame); only domains with rows, DM always."""
    pats = cohort.patients
    # The death DM carries (DTHDTC): a DEATH event on the patient's death date, whatever reader made it.
    deaths = cohort.events.join(pats.select("patient_id", "deceased_date"), on="patient_id", how="left")
    is_dm_death = (pl.col("code") == "DEATH") & (pl.col("date") == pl.col("deceased_date"))
    dm_death = deaths.filter(is_dm_death).unique("patient_id", keep="first", maintain_order=True)
    dm = pats.join(dm_death.select("patient_id", "time", "time_known", "tz_offset_min"), on="patient_id", how="left",
                   maintain_order="left")
    out = {"DM": dm.select(
        pl.lit(studyid).alias("STUDYID"), pl.lit("DM").alias("DOMAIN"), pl.col("patient_id").alias("USUBJID"),
        pl.col("sex").alias("SEX"), pl.col("birth_date").dt.strftime("%Y-%m-%d").alias("BRTHDTC"),
        pl.when(pl.col("time").is_not_null()).then(_dtc_text())
        .otherwise(pl.col("deceased_date").dt.strftime("%Y-%m-%d")).alias("DTHDTC"),
        pl.when(pl.col("deceased_date").is_not_null()).then(pl.lit("Y")).alias("DTHFL"),
    )}
    for dom in FINDINGS:
        out[dom] = _findings_frame(cohort.observations, dom, studyid)
    doses = cohort.doses
    out["EX"] = _exposure_frame(doses.filter(pl.col("status") == "completed"), "EX", studyid)
    # EC holds every dose as collected: given (ECOCCUR Y) and not given (N).
    out["EC"] = _exposure_frame(doses.filter(pl.col("status").is_in(["completed", "not-done"])), "EC", studyid)
    ce = deaths.filter(~is_dm_death.fill_null(False)).drop("deceased_date")
    terms = {k.code: k.term for k in catalog().events.values()}
    out["CE"] = pl.DataFrame() if ce.is_empty() else ce.select(
        pl.lit(studyid).alias("STUDYID"), pl.lit("CE").alias("DOMAIN"), pl.col("patient_id").alias("USUBJID"),
        _seq("CE"), pl.col("event_id").alias("CESPID"), pl.col("term").alias("CETERM"),
        pl.coalesce(pl.col("code").replace_strict(terms, default=None, return_dtype=pl.String), "term")
        .alias("CEDECOD"),
        pl.col("grade").cast(pl.String).alias("CETOXGR"),
        _dtc_text().alias("CESTDTC"), pl.col("end_date").dt.strftime("%Y-%m-%d").alias("CEENDTC"),
    )
    return {dom: df for dom, df in out.items() if dom == "DM" or not df.is_empty()}


def write_frame(df: pl.DataFrame, path: str | Path) -> Path:
    """Write a frame as CSV (.csv) or SAS XPORT v5 (.xpt, dataset name = file name, upper case)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        df.write_csv(path)
    elif suffix == ".xpt":
        import pyreadstat

        pyreadstat.write_xport(df, path, table_name=path.stem.upper()[:8], file_format_version=5)
    else:
        raise ValueError(f"{path}: write .csv or .xpt")
    return path


def write_sdtm(cohort: Cohort, folder: str | Path, fmt: str = "csv", *, studyid: str = "DOSEWATCH") -> list[Path]:
    """Write the cohort as SDTM datasets (dm, lb, vs, tr, pe, ex, ec, ce) in ``fmt`` (csv or xpt)."""
    if fmt not in ("csv", "xpt"):
        raise ValueError(f"format {fmt!r}: use csv or xpt")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frames = sdtm_frames(cohort, studyid=studyid)
    return [write_frame(df, folder / f"{dom.lower()}.{fmt}") for dom, df in frames.items()]


# ---------------------------------------------------------------------------------------------
# ADaM-style exports


def _day1_frame(day1: dict[str, dt.date]) -> pl.DataFrame:
    return pl.DataFrame({"patient_id": list(day1), "_day1": list(day1.values())},
                        schema={"patient_id": pl.String, "_day1": pl.Date})


def adlb_frame(cohort: Cohort, day1: dict[str, dt.date], *, studyid: str = "DOSEWATCH") -> pl.DataFrame:
    """ADLB-style rows for the labs: value, range, baseline (the last value on or before day 1,
    flagged ABLFL = "Y"), change from baseline, date and study day (no day 0)."""
    labs = [a for a in catalog().analytes.values() if a.kind == "lab"]
    meta = pl.DataFrame({"code": [a.code for a in labs], "PARAMCD": [a.sdtm_testcd for a in labs],
                         "PARAM": [f"{a.name} ({adam_unit(a.unit)})" for a in labs],
                         "AVALU": [adam_unit(a.unit) for a in labs]})
    group = ["patient_id", "code"]
    df = (cohort.observations.join(meta, on="code", how="inner")
          .join(_day1_frame(day1), on="patient_id", how="left")
          .sort(["patient_id", "PARAMCD", "time", "obs_id"])
          .with_columns(pl.int_range(pl.len()).over(group).alias("_i")))
    base_i = pl.when(pl.col("date") <= pl.col("_day1")).then(pl.col("_i")).max().over(group)
    df = df.with_columns(pl.when(pl.col("_i") == base_i).then(pl.lit("Y")).alias("ABLFL"))
    base = pl.when(pl.col("ABLFL") == "Y").then(pl.col("value")).max().over(group)
    return df.with_columns(base.alias("BASE")).select(
        pl.lit(studyid).alias("STUDYID"), pl.col("patient_id").alias("USUBJID"), "PARAMCD", "PARAM",
        pl.col("value").alias("AVAL"), "AVALU", pl.col("ref_low").alias("ANRLO"), pl.col("ref_high").alias("ANRHI"),
        "BASE", "ABLFL", (pl.col("value") - pl.col("BASE")).alias("CHG"), pl.col("date").alias("ADT"),
        study_day_expr("date", "_day1").alias("ADY"), "obs_id",
    )


def ae_frame(events: list[Event], cohort: Cohort, day1: dict[str, dt.date], *,
             studyid: str = "DOSEWATCH") -> pl.DataFrame:
    """SDTM AE rows for detected events, numbered per subject in order of onset; AECRIT (a
    SUPPAE-style QNAM) names the criteria id that found the event."""
    known = set(cohort.patient_ids)
    strangers = sorted({e.patient_id for e in events} - known)
    if strangers:
        raise ValueError(f"events for subjects not in the cohort: {', '.join(strangers)}")
    order = {pid: i for i, pid in enumerate(cohort.patient_ids)}
    rows = sorted(events, key=lambda e: (order[e.patient_id], e.onset, e.term, e.criteria))
    seq: dict[str, int] = {}
    out = []
    for e in rows:
        seq[e.patient_id] = seq.get(e.patient_id, 0) + 1
        d1 = day1.get(e.patient_id)
        out.append({
            "STUDYID": studyid, "DOMAIN": "AE", "USUBJID": e.patient_id, "AESEQ": seq[e.patient_id],
            "AETERM": e.term, "AEDECOD": e.term, "AETOXGR": None if e.grade is None else str(e.grade),
            "AESTDTC": e.onset.isoformat(), "AESTDY": study_day(e.onset, d1) if d1 else None,
            "AECRIT": e.criteria,
        })
    schema = {"STUDYID": pl.String, "DOMAIN": pl.String, "USUBJID": pl.String, "AESEQ": pl.Int64,
              "AETERM": pl.String, "AEDECOD": pl.String, "AETOXGR": pl.String, "AESTDTC": pl.String,
              "AESTDY": pl.Int64, "AECRIT": pl.String}
    return pl.DataFrame(out, schema=schema)
