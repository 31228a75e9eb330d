"""SDTM findings (LB, VS, TR, PE) into observations: one observation per row, its value converted
to the analyte's canonical unit once per (analyte, unit), on whole columns (docs/sdtm.md)."""
from __future__ import annotations

import polars as pl

from ..analytes import Catalog
from ..errors import Problem, UnitError
from ..record import OBSERVATIONS_SCHEMA, empty
from .sdtm_common import Log, dates, flag_date, flag_subject, ids, number, optional, require, txt

# LBSPEC values read as blood (serum or plasma); a urine potassium is not a serum potassium.
BLOOD_SPECIMENS = {"BLOOD", "SERUM", "PLASMA", "SERUM OR PLASMA", "WHOLE BLOOD", "VENOUS BLOOD",
                   "ARTERIAL BLOOD", "CAPILLARY BLOOD"}
# What else tells two findings of the same test at the same time apart (position, specimen, planned
# time point, repetition): written into ``qualifiers`` as "POS=STANDING; TPTNUM=816", in this order.
QUALIFIERS = ("POS", "LOC", "SPEC", "TPT", "TPTNUM", "REPNUM")
# A result written as a bound: "<40", "<= 0.2", ">3000" (a comparator and a number).
_BOUND = r"^\s*(<=|>=|<|>|≤|≥)\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*$"
_COMPARATOR = {"≤": "<=", "≥": ">="}
_BOUND_WITHOUT_NUMBER = r"^\s*(<=|>=|<|>|≤|≥)\s*[A-Za-z]"  # "<LLOQ", "> ULN"


def _qualifiers(p: str, sited: pl.Expr) -> pl.Expr:
    """'POS=SUPINE; TPTNUM=815' from --POS, --LOC (not a lymph-node site), --SPEC, --TPT, --TPTNUM,
    --REPNUM; null when none is given."""
    parts = []
    for q in QUALIFIERS:
        value = pl.col(f"{p}{q}")
        if q == "LOC":
            value = pl.when(~sited).then(value)
        parts.append(pl.when(value.is_not_null()).then(pl.format("{}={}", pl.lit(q), value)))
    joined = pl.concat_str(parts, separator="; ", ignore_nulls=True)
    return pl.when(joined != "").then(joined)


def _result(orres: str, oru: str, stresn: str, stresu: str, stresc: str) -> list[pl.Expr]:
    """The value, unit, comparator and the field it came from: --ORRES when it is a number, else
    --STRESN (the sponsor's standard number), else --ORRES as a bound ("<40") in --ORRESU, else
    --STRESC as a bound in --STRESU."""
    or_num, st_num = number(orres), number(stresn)
    or_bound = pl.col(orres).str.extract_groups(_BOUND)
    st_bound = pl.col(stresc).str.extract_groups(_BOUND)
    or_b = number(or_bound.struct.field("2"))
    st_b = number(st_bound.struct.field("2"))
    source = (pl.when(or_num.is_not_null()).then(pl.lit("or"))
              .when(st_num.is_not_null()).then(pl.lit("st"))
              .when(or_b.is_not_null()).then(pl.lit("or<"))
              .when(st_b.is_not_null()).then(pl.lit("st<")))
    comparator = (pl.when(source == "or<").then(or_bound.struct.field("1"))
                  .when(source == "st<").then(st_bound.struct.field("1")))
    return [
        source.alias("_from"),
        pl.coalesce(or_num, st_num, or_b, st_b).alias("orig_value"),
        pl.when(source.str.starts_with("st")).then(pl.col(stresu)).otherwise(pl.col(oru)).alias("orig_unit"),
        comparator.replace(_COMPARATOR).alias("comparator"),
    ]


def canon_unit(analytes) -> pl.Expr:
    return pl.col("code").replace_strict({a.code: a.unit for a in analytes}, default=None, return_dtype=pl.String)


def read_findings(df: pl.DataFrame, dom: str, file: str, subjects: set[str], problems: list[Problem],
                  cat: Catalog) -> pl.DataFrame:
    """LB, VS, TR, PE: one observation per row, value converted to the analyte's canonical unit."""
    p = dom
    tc, orres, oru, stresn, stresu = f"{p}TESTCD", f"{p}ORRES", f"{p}ORRESU", f"{p}STRESN", f"{p}STRESU"
    need = ["USUBJID", f"{p}SEQ", tc, f"{p}DTC"]
    if orres not in df.columns and stresn not in df.columns:
        need.append(orres)
    if not require(df, need, file, problems):
        return empty(OBSERVATIONS_SCHEMA)
    log = Log(file)
    df = optional(df, [orres, oru, stresn, stresu, f"{p}STRESC", f"{p}ORNRLO", f"{p}ORNRHI", f"{p}STNRLO",
                       f"{p}STNRHI", f"{p}STAT", f"{p}SPID", f"{p}TEST", f"{p}LOINC", "LBSPEC", "VISITNUM"]
                  + [f"{p}{q}" for q in QUALIFIERS])
    codes = cat.sdtm_codes(dom)
    # --LOINC read where --TESTCD is not one dosewatch knows (a 0-10 pain score, LOINC 72514-3)
    loinc = {c: a.code for c, a in cat.by_loinc.items()}
    analytes = [cat[c] for c in sorted(set(codes.values()) | set(loinc.values()))]
    df = df.with_columns(pl.coalesce(
        pl.col(tc).str.to_uppercase().replace_strict(codes, default=None, return_dtype=pl.String),
        pl.col(f"{p}LOINC").str.strip_chars().replace_strict(loinc, default=None, return_dtype=pl.String),
    ).alias("code"))

    # Rows that are not read at all: not done, not blood, not a test dosewatch uses (out of scope:
    # counted notices, never errors).
    not_done = (pl.col(f"{p}STAT").str.to_uppercase() == "NOT DONE").fill_null(False)
    log.flag(df, not_done, f"{p}STAT", "test not done (--STAT NOT DONE): no result to read", "notice",
             kind="not-done")
    spec = pl.col("LBSPEC").str.to_uppercase()
    other_spec = ~not_done & spec.is_not_null() & ~spec.is_in(sorted(BLOOD_SPECIMENS))
    log.flag(df, other_spec & pl.col("code").is_not_null(), "LBSPEC",
             pl.format("specimen {} is not blood, serum or plasma: not used", "LBSPEC"), "notice", kind="not-used")
    unknown = ~not_done & ~other_spec & pl.col(tc).is_not_null() & pl.col("code").is_null()
    name = pl.when(pl.col(f"{p}TEST").is_not_null()).then(pl.format(" ({})", f"{p}TEST")).otherwise(pl.lit(""))
    log.flag(df, unknown, tc, pl.format("test code {}{} is not used by dosewatch", pl.col(tc).str.to_uppercase(), name),
             "notice", kind="not-used")
    log.flag(df, ~not_done & ~other_spec & pl.col(tc).is_null(), tc, "missing test code", kind="value")
    df = log.drop(df)

    df = df.with_columns(_result(orres, oru, stresn, stresu, f"{p}STRESC"))
    from_or = pl.col("_from").str.starts_with("or").fill_null(True)
    df = df.with_columns(
        pl.when(from_or).then(pl.lit(oru)).otherwise(pl.lit(stresu)).alias("_ufield"),
        pl.when(from_or).then(pl.lit(orres)).otherwise(pl.lit(stresn)).alias("_vfield"),
        pl.when(from_or).then(pl.col(f"{p}ORNRLO")).otherwise(pl.col(f"{p}STNRLO")).alias("_lo"),
        pl.when(from_or).then(pl.col(f"{p}ORNRHI")).otherwise(pl.col(f"{p}STNRHI")).alias("_hi"),
    )
    # "<LLOQ": a bound without a number, kept (the test was done and the value is beyond it) but not graded
    unquantified = pl.col("orig_value").is_null() & pl.col(orres).str.contains(_BOUND_WITHOUT_NUMBER).fill_null(False)
    df = df.with_columns(pl.when(unquantified).then(pl.col(orres).str.extract(_BOUND_WITHOUT_NUMBER, 1))
                         .otherwise(pl.col("comparator")).replace(_COMPARATOR).alias("comparator"))
    log.flag(df, unquantified, orres, "result is a bound without a number: kept, not graded", "warning", drop=False,
             kind="comparator", detail=pl.format("'{}'", orres))
    no_value = pl.col("orig_value").is_null() & ~unquantified
    log.flag(df, no_value & pl.col(orres).is_not_null(), orres, "non-numeric result", kind="value",
             detail=pl.format("'{}'{}", orres, pl.when(pl.col(stresn).is_not_null())
                              .then(pl.format(", {} '{}'", pl.lit(stresn), stresn)).otherwise(pl.lit(""))))
    log.flag(df, no_value & pl.col(orres).is_null() & pl.col(stresn).is_not_null(), stresn, "non-numeric result",
             kind="value", detail=pl.format("'{}'", stresn))
    # An empty row (no result, and no --STAT NOT DONE that SDTMIG asks for then) holds nothing to read or
    # misread: a warning; the monitor sees the test as not done.
    log.flag(df, no_value & pl.col(orres).is_null() & pl.col(stresn).is_null(), orres,
             f"no result ({orres} and {stresn} are empty, and {p}STAT is not NOT DONE): nothing to read",
             "warning", kind="no-result")
    bound_field = pl.when(from_or).then(pl.lit(orres)).otherwise(pl.lit(f"{p}STRESC"))
    for field in (orres, f"{p}STRESC"):
        log.flag(df, pl.col("comparator").is_not_null() & ~unquantified & (bound_field == field), field,
                 "result given as a bound: read as the bound with its comparator, graded as the grade the bound "
                 "guarantees", "warning", drop=False, kind="comparator", detail=pl.format("'{}'", field))

    # One conversion per (analyte, unit), applied to the whole column.
    pairs = df.filter(~no_value).select("code", "orig_unit").unique()
    conv = []
    for code, unit in pairs.iter_rows():
        a = cat[code]
        if unit is None and a.unit != "1" and not a.assume_unit:
            conv.append((code, unit, None, None, f"no unit given ({code} is in {a.unit} or a unit convertible to it)"))
            continue
        if unit is None and a.assume_unit:
            conv.append((code, unit, 1.0, 0.0, None))
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
        log.flag(df, pl.col("_uerr").is_not_null() & (pl.col("_ufield") == field), field, pl.col("_uerr"), kind="unit")
    assumed = pl.col("orig_unit").is_null() & pl.col("code").is_in([a.code for a in analytes if a.assume_unit])
    log.flag(df, assumed & pl.col("orig_value").is_not_null(), oru,
             pl.format("no unit: read as {}, the unit {} is measured in", canon_unit(analytes), "code"), "warning",
             drop=False, kind="assumed")
    df = df.with_columns(pl.when(assumed).then(canon_unit(analytes)).otherwise(pl.col("orig_unit")).alias("orig_unit"))
    lo_plaus = pl.col("code").replace_strict({a.code: a.plausible[0] for a in analytes}, return_dtype=pl.Float64)
    hi_plaus = pl.col("code").replace_strict({a.code: a.plausible[1] for a in analytes}, return_dtype=pl.Float64)
    canon = canon_unit(analytes)
    df = df.with_columns(
        (pl.col("orig_value") * pl.col("_scale") + pl.col("_offset")).alias("value"),
        canon.alias("unit"), lo_plaus.alias("_plo"), hi_plaus.alias("_phi"),
        (number("_lo") * pl.col("_scale") + pl.col("_offset")).alias("ref_low"),
        (number("_hi") * pl.col("_scale") + pl.col("_offset")).alias("ref_high"),
    )
    implausible = (pl.col("value") < pl.col("_plo")) | (pl.col("value") > pl.col("_phi"))
    for field in (orres, stresn):
        log.flag(df, implausible & (pl.col("_vfield") == field), field,
                 pl.format("implausible {} value (plausible {} to {} {})", "code", "_plo", "_phi", "unit"),
                 kind="implausible", detail=pl.format("{} {} = {} {}", "orig_value", txt("orig_unit"),
                                                      pl.col("value").round_sig_figs(6), "unit"))
    for name, used in ((f"{p}ORNRLO", from_or), (f"{p}ORNRHI", from_or), (f"{p}STNRLO", ~from_or),
                       (f"{p}STNRHI", ~from_or)):
        log.flag(df, used & pl.col(name).is_not_null() & number(name).is_null(), name,
                 "non-numeric reference limit: not used", "warning", drop=False, kind="reference",
                 detail=pl.format("'{}'", name))

    df = dates(df, f"{p}DTC", "obs")
    flag_date(df, log, f"{p}DTC", "obs")
    sited = pl.col("code").is_in([a.code for a in analytes if a.sited])
    # A lymph-node region is its --LOC text (SDTM has no body-site code), matched up to case and spacing:
    # every row of a subject gets the spelling its first row gave, with a warning where it differs.
    loc = pl.col(f"{p}LOC").str.strip_chars().str.replace_all(r"\s+", " ")
    df = df.with_columns(pl.when(sited).then(loc.str.to_lowercase()).alias("_region"))
    df = df.with_columns(pl.when(sited & pl.col("_region").is_not_null())
                         .then(loc.first().over("USUBJID", "_region")).alias("site"),
                         _qualifiers(p, sited).alias("qualifiers"))
    log.flag(df, pl.col("site").is_not_null() & (pl.col(f"{p}LOC") != pl.col("site")), f"{p}LOC",
             pl.format("lymph-node region matched by its text up to case and spacing: read as '{}', as an earlier "
                       "row wrote it", "site"), "warning", drop=False, kind="site",
             detail=pl.format("'{}'", f"{p}LOC"))
    flag_subject(df, log, subjects)
    df = ids(df, dom, log)
    # Same subject, test, time, site, qualifiers and value twice: the same record entered twice. Two
    # visits on one date are two records (SDTMIG's natural key has VISITNUM): where only the visit tells
    # two rows apart, it joins their qualifiers.
    key = ["USUBJID", "code", "obs_time", "site", "qualifiers", "value"]
    visit = pl.col("VISITNUM")
    df = df.with_columns(pl.when(visit.is_not_null() & ~pl.struct(key).is_unique()).then(pl.concat_str(
        [pl.col("qualifiers"), pl.format("VISITNUM={}", visit)], separator="; ", ignore_nulls=True))
        .otherwise(pl.col("qualifiers")).alias("qualifiers"))
    keyed = df.filter(pl.col("value").is_not_null() & pl.col("obs_time").is_not_null())
    # The same result recorded twice (under two sequence numbers) is read once: nothing is lost, so a
    # warning; two rows that differ in value are both read.
    log.flag(keyed, ~pl.struct(key).is_first_distinct(), tc,
             "the same result recorded twice (subject, test, date/time, site, qualifiers and value): read once",
             "warning", kind="repeated", detail=pl.format("as row {}", pl.col("_row").first().over(key)))
    problems.extend(log.problems())
    df = log.drop(df)
    return df.select(
        pl.col("USUBJID").alias("patient_id"), pl.col("_id").alias("obs_id"), "code",
        pl.col("obs_time").alias("time"), pl.col("obs_date").alias("date"), pl.col("obs_tk").alias("time_known"),
        "value", "unit", "orig_value", "orig_unit", "ref_low", "ref_high", "site",
        pl.col("obs_tz").alias("tz_offset_min"), pl.format("{} row {}", pl.lit(file), "_row").alias("source"),
        "comparator", "qualifiers", pl.lit(None, pl.String).alias("ref_source"),
    )
