"""What every SDTM domain reader shares: the problem log kept as frames, dates (ISO 8601, and
partial dates completed by a stated rule), record ids and subject checks, all on whole columns."""
from __future__ import annotations

import polars as pl

from ..errors import Problem

# ISO 8601 date or date-time as SDTM --DTC writes it; groups: Y M D h m s fraction offset.
_DTC = (r"^(\d{4})-(\d{2})-(\d{2})"
        r"(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?(Z|[+-]\d{2}(?::?\d{2})?)?)?$")
# Partial dates (SDTMIG 4.4.4: missing parts are left out or written as "-"): "2024", "2024-03", "2024---15".
_PARTIAL = r"^\d{4}(?:-(?:\d{2}|-)?)?(?:-(?:\d{2})?)?(?:T.*)?$"
# Ids dosewatch writes into --SPID (see ids): "<2-letter domain>-<USUBJID>-...".
_OWN_ID = r"^[A-Z]{2}-"


class Log:
    """Problems of one dataset, gathered as frames (one per check) and turned into Problems at the end."""

    def __init__(self, file: str):
        self.file = file
        self.parts: list[pl.DataFrame] = []

    def flag(self, df: pl.DataFrame, mask: pl.Expr, field: str, message: pl.Expr | str,
             severity: str = "error", drop: bool = True, kind: str = "", detail: pl.Expr | str | None = None) -> None:
        """Report every row where ``mask`` holds; ``drop`` rows are left out of the cohort.
        ``message`` is what the rows of a group share, ``detail`` each row's own particulars."""
        if not df.select(mask.fill_null(False).any()).item():
            return  # the usual case: nothing to report, and no message to build on every row
        msg = message if isinstance(message, pl.Expr) else pl.lit(message)
        det = detail if isinstance(detail, pl.Expr) else pl.lit(detail, pl.String)
        # Built on the whole frame, so that windows in them ("first at row n") see every row.
        hit = df.with_columns(mask.fill_null(False).alias("_hit"), msg.cast(pl.String).alias("_msg"),
                              det.cast(pl.String).alias("_det")).filter("_hit")
        hit = hit.select(
            pl.col("_row"),
            pl.lit(field).alias("field"),
            pl.col("_msg").alias("message"),
            pl.lit(severity).alias("severity"),
            pl.lit(kind).alias("kind"),
            pl.col("_det").fill_null("").alias("detail"),
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
        file = self.file
        return [Problem(f"{file} row {r}", f, m, s, k, d, file)
                for r, f, m, s, k, d in found.select("_row", "field", "message", "severity", "kind",
                                                      "detail").iter_rows()]


def txt(col: str) -> pl.Expr:
    """A column as text for a message ('' when empty)."""
    return pl.col(col).cast(pl.String).fill_null("")


def number(col: str | pl.Expr) -> pl.Expr:
    """Text to a finite float; null when empty or not a number."""
    x = (pl.col(col) if isinstance(col, str) else col).cast(pl.Float64, strict=False)
    return pl.when(x.is_finite()).then(x)


def require(df: pl.DataFrame, cols: list[str], file: str, problems: list[Problem]) -> bool:
    missing = [c for c in cols if c not in df.columns]
    problems.extend(Problem(file, c, "missing required column", kind="column", file=file) for c in missing)
    return not missing


def optional(df: pl.DataFrame, cols: list[str]) -> pl.DataFrame:
    return df.with_columns(pl.lit(None, pl.String).alias(c) for c in dict.fromkeys(cols) if c not in df.columns)


def dates(df: pl.DataFrame, col: str, out: str) -> pl.DataFrame:
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
        .when(y.is_null() & s.str.contains(_PARTIAL)).then(pl.lit("partial date: a complete date (YYYY-MM-DD) is needed"))
        .when(y.is_null()).then(pl.lit("not an ISO 8601 date (YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss])"))
        .when(date.is_null() | bad_time).then(pl.lit("not a valid date or time"))
        # year 0 and years before the Gregorian calendar are typos, not dates to compute with
        .when(date.dt.year() < 1583).then(pl.lit("a year before 1583 is not a date dosewatch can use"))
    )
    # Left empty before 1583 (reported by ``err``): polars holds year 0, Python's dates do not.
    date = pl.when(date.dt.year() >= 1583).then(date)
    return df.with_columns(
        date.alias(f"{out}_date"),
        (date.cast(pl.Datetime("us")) + pl.duration(
            hours=hour.fill_null(0), minutes=minute.fill_null(0), seconds=second.fill_null(0),
            microseconds=micro.fill_null(0))).alias(f"{out}_time"),
        h.is_not_null().alias(f"{out}_tk"),
        pl.when(tz == "Z").then(0).otherwise(offset).cast(pl.Int32).alias(f"{out}_tz"),
        err.alias(f"{out}_err"),
    ).drop("_g")


def complete_partial(df: pl.DataFrame, col: str, out: str, end: bool, floor: pl.Expr | None = None) -> pl.DataFrame:
    """Complete partial dates of ``col`` (parsed by ``dates`` into ``out``), as ADaM does for adverse
    event dates (ADaMIG v1.1 section 3.3; pharmaverse admiral ``derive_vars_dt``): a start date
    (``end`` False) to the first day of its month, or of its year when the month is missing, but not
    before ``floor`` (the first exposure) when that falls in the same period, so that an event that may
    have begun on treatment counts as on treatment; an end date to the last day of its period. The
    rule applied is written to ``{out}_imputed``; the date is date-only (time unknown)."""
    s = pl.col(col)
    partial = pl.col(f"{out}_err").str.starts_with("partial").fill_null(False)
    year = s.str.slice(0, 4).cast(pl.Int32, strict=False)
    month = s.str.extract(r"^\d{4}-(\d{2})", 1).cast(pl.Int8, strict=False)
    has_month = month.is_not_null()
    bad_month = has_month & ((month < 1) | (month > 12))
    first = pl.date(year, month.fill_null(1).clip(1, 12), 1)
    last = pl.when(has_month).then(first.dt.month_end()).otherwise(pl.date(year, 12, 31))
    precision = pl.when(has_month).then(pl.lit("month")).otherwise(pl.lit("year"))
    if end:
        date = last
        rule = pl.format("{} '{}' ({} precision) completed to {}, the last day of its {}",
                         pl.lit(col), s, precision, last.cast(pl.String), precision)
    else:
        date = first
        rule = pl.format("{} '{}' ({} precision) completed to {}, the first day of its {}",
                         pl.lit(col), s, precision, first.cast(pl.String), precision)
        if floor is not None:
            later = floor.is_not_null() & (floor > first) & (floor <= last)
            date = pl.when(later).then(floor).otherwise(first)
            rule = pl.when(later).then(pl.format(
                "{} '{}' ({} precision) completed to {}, the first exposure (DM.RFXSTDTC), which falls in that {}",
                pl.lit(col), s, precision, floor.cast(pl.String), precision)).otherwise(rule)
    use = partial & ~bad_month & (year >= 1583)
    return df.with_columns(
        pl.when(use).then(date).otherwise(pl.col(f"{out}_date")).alias(f"{out}_date"),
        pl.when(use).then(date.cast(pl.Datetime("us"))).otherwise(pl.col(f"{out}_time")).alias(f"{out}_time"),
        pl.when(use).then(False).otherwise(pl.col(f"{out}_tk")).alias(f"{out}_tk"),
        pl.when(use).then(None).otherwise(pl.col(f"{out}_err")).alias(f"{out}_err"),
        pl.when(use).then(rule).alias(f"{out}_imputed"),
    )


def flag_date(df: pl.DataFrame, log: Log, col: str, out: str, required: bool = True) -> None:
    """Report dates that cannot be used; an empty optional date is fine."""
    bad = pl.col(f"{out}_err").is_not_null()
    log.flag(df, bad if required else bad & pl.col(col).is_not_null(), col, pl.col(f"{out}_err"),
             kind="date", detail=pl.when(pl.col(col).is_not_null()).then(pl.format("'{}'", pl.col(col))))


def ids(df: pl.DataFrame, dom: str, log: Log) -> pl.DataFrame:
    """Record id "<DOM>-<USUBJID>-<--SEQ>", or --SPID itself when it already has that shape (as
    dosewatch writes it) so that ids survive a write and a read. Duplicates are reported."""
    seq, spid = f"{dom}SEQ", f"{dom}SPID"
    own = (pl.col(spid).str.contains(_OWN_ID)
           & pl.col(spid).str.slice(3).str.starts_with(pl.col("USUBJID") + "-")).fill_null(False)
    df = df.with_columns(
        pl.when(own).then(pl.col(spid)).otherwise(pl.format("{}-{}-{}", pl.lit(dom), "USUBJID", seq)).alias("_id"),
        pl.when(own).then(pl.lit(spid)).otherwise(pl.lit(seq)).alias("_idcol"),
    )
    log.flag(df, pl.col(seq).is_null() & ~own, seq, "missing sequence number", kind="id")
    keyed = df.filter(pl.col("_id").is_not_null())
    later = ~pl.col("_id").is_first_distinct()  # as int_range(len).over("_id") > 0, without the window
    first_row = pl.col("_row").first().over("_id")
    log.flag(keyed, later & (pl.col("_idcol") == seq), seq, f"duplicate {seq} for the subject", kind="duplicate",
             detail=pl.format("{} {} for subject {}, first at row {}", pl.lit(seq), txt(seq), txt("USUBJID"), first_row))
    log.flag(keyed, later & (pl.col("_idcol") == spid), spid, f"duplicate {spid}", kind="duplicate",
             detail=pl.format("{} {}, first at row {}", pl.lit(spid), txt(spid), first_row))
    return df


def flag_subject(df: pl.DataFrame, log: Log, subjects: set[str]) -> None:
    log.flag(df, pl.col("USUBJID").is_null(), "USUBJID", "missing subject id", kind="subject")
    log.flag(df, pl.col("USUBJID").is_not_null() & ~pl.col("USUBJID").is_in(sorted(subjects)), "USUBJID",
             "subject is not in DM", kind="subject", detail=pl.format("subject {}", pl.col("USUBJID")))
