"""CDISC SDTM out: ``write_sdtm`` writes a cohort back as SDTM so that read -> write -> read gives
the same tables; ``adlb_frame`` and ``ae_frame`` derive ADaM-style ADLB rows and SDTM AE rows for
export, and ``write_frame`` writes any of these frames as CSV or XPT (docs/sdtm.md)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from ..analytes import catalog
from ..events import Event
from ..record import Cohort, day1_frame, study_day, study_day_expr
from .sdtm import FINDINGS


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


DEFAULT_STUDY = "DOSEWATCH"


def with_study(table: pl.DataFrame, patients: pl.DataFrame, default: str | None) -> pl.DataFrame:
    """``table`` with ``STUDYID``: each patient's study id as read (SDTM STUDYID), else ``default``."""
    studies = patients.select("patient_id", pl.col("study_id").alias("_study")).unique("patient_id")
    return table.join(studies, on="patient_id", how="left", maintain_order="left").with_columns(
        pl.coalesce("_study", pl.lit(default or DEFAULT_STUDY)).alias("STUDYID")).drop("_study")


def _qualifier(name: str) -> pl.Expr:
    """One qualifier back out of ``qualifiers`` ("POS=STANDING; TPTNUM=816" -> STANDING)."""
    return pl.col("qualifiers").str.extract(rf"(?:^|; ){name}=([^;]*)", 1)


def _findings_frame(obs: pl.DataFrame, dom: str) -> pl.DataFrame:
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
        "STUDYID", pl.lit(dom).alias("DOMAIN"), pl.col("patient_id").alias("USUBJID"),
        _seq(p), pl.col("obs_id").alias(f"{p}SPID"), pl.col("_testcd").alias(f"{p}TESTCD"),
        pl.col("_test").alias(f"{p}TEST"),
    ]
    if df["site"].is_not_null().any() or df["qualifiers"].str.contains("LOC=").any():
        cols.append(pl.coalesce("site", _qualifier("LOC")).alias(f"{p}LOC"))
    for q in ("POS", "SPEC", "TPT", "TPTNUM", "REPNUM"):
        if df["qualifiers"].str.contains(f"{q}=").any():
            cols.append(_qualifier(q).alias("LBSPEC" if q == "SPEC" else f"{p}{q}"))
    if df["qualifiers"].str.contains("VISITNUM=").any():
        cols.append(_qualifier("VISITNUM").alias("VISITNUM"))
    # A bound ("<40") is written as it was read: the comparator before the number, no numeric STRESN.
    bound = pl.col("comparator").is_not_null()
    with_comparator = lambda e: pl.when(bound).then(pl.col("comparator") + e).otherwise(e)  # noqa: E731
    cols += [with_comparator(_num_text(pl.col("orig_value"))).alias(f"{p}ORRES"),
             pl.col("orig_unit").alias(f"{p}ORRESU")]
    if dom == "LB" or df["ref_low"].is_not_null().any() or df["ref_high"].is_not_null().any():
        cols += [back("ref_low").alias(f"{p}ORNRLO"), back("ref_high").alias(f"{p}ORNRHI")]
    # Standard results rounded to 12 significant digits: conversions leave float noise (38.49999999999876).
    std = lambda c: pl.col(c).round_sig_figs(12)  # noqa: E731
    cols += [with_comparator(_num_text(std("value"))).alias(f"{p}STRESC"),
             pl.when(~bound).then(std("value")).alias(f"{p}STRESN"), pl.col("_stresu").alias(f"{p}STRESU")]
    if dom == "LB" or df["ref_low"].is_not_null().any() or df["ref_high"].is_not_null().any():
        cols += [std("ref_low").alias(f"{p}STNRLO"), std("ref_high").alias(f"{p}STNRHI")]
    cols.append(_dtc_text().alias(f"{p}DTC"))
    return df.select(cols)


def _exposure_frame(doses: pl.DataFrame, dom: str) -> pl.DataFrame:
    p = dom
    if doses.is_empty():
        return pl.DataFrame()
    dtc = _dtc_text()
    cols = ["STUDYID", pl.lit(dom).alias("DOMAIN"), pl.col("patient_id").alias("USUBJID"),
            _seq(p), pl.col("dose_id").alias(f"{p}SPID"), pl.col("drug").alias(f"{p}TRT"),
            pl.col("dose").alias(f"{p}DOSE"), pl.col("dose_unit").alias(f"{p}DOSU"),
            pl.col("route").alias(f"{p}ROUTE"), dtc.alias(f"{p}STDTC"), dtc.alias(f"{p}ENDTC")]
    if dom == "EC":
        cols += [pl.lit("PERFORMED").alias("ECMOOD"),
                 pl.when(pl.col("status") == "completed").then(pl.lit("Y")).otherwise(pl.lit("N")).alias("ECOCCUR")]
    return doses.select(cols)


def sdtm_frames(cohort: Cohort, *, studyid: str | None = None) -> dict[str, pl.DataFrame]:
    """The cohort as SDTM datasets (domain -> frame); only domains with rows, DM always. STUDYID is
    each patient's study id as read, else ``studyid`` (default DOSEWATCH)."""
    pats = with_study(cohort.patients, cohort.patients, studyid)
    study = lambda t: with_study(t, cohort.patients, studyid)  # noqa: E731
    # The death DM carries (DTHDTC): a DEATH event on the patient's death date, whatever reader made it.
    deaths = cohort.events.join(pats.select("patient_id", "deceased_date"), on="patient_id", how="left")
    is_dm_death = (pl.col("code") == "DEATH") & (pl.col("date") == pl.col("deceased_date"))
    dm_death = deaths.filter(is_dm_death).unique("patient_id", keep="first", maintain_order=True)
    dm = pats.join(dm_death.select("patient_id", "time", "time_known", "tz_offset_min"), on="patient_id", how="left",
                   maintain_order="left")
    out = {"DM": dm.select(
        "STUDYID", pl.lit("DM").alias("DOMAIN"), pl.col("patient_id").alias("USUBJID"),
        pl.col("sex").alias("SEX"), pl.col("birth_date").dt.strftime("%Y-%m-%d").alias("BRTHDTC"),
        pl.col("age").alias("AGE"), pl.when(pl.col("age").is_not_null()).then(pl.lit("YEARS")).alias("AGEU"),
        pl.col("age_date").dt.strftime("%Y-%m-%d").alias("DMDTC"),
        pl.when(pl.col("time").is_not_null()).then(_dtc_text())
        .otherwise(pl.col("deceased_date").dt.strftime("%Y-%m-%d")).alias("DTHDTC"),
        pl.when(pl.col("deceased_date").is_not_null()).then(pl.lit("Y")).alias("DTHFL"),
    )}
    for dom in FINDINGS:
        out[dom] = _findings_frame(study(cohort.observations), dom)
    doses = study(cohort.doses)
    out["EX"] = _exposure_frame(doses.filter(pl.col("status") == "completed"), "EX")
    # EC holds every dose as collected: given (ECOCCUR Y) and not given (N).
    out["EC"] = _exposure_frame(doses.filter(pl.col("status").is_in(["completed", "not-done"])), "EC")
    ce = study(deaths.filter(~is_dm_death.fill_null(False)).drop("deceased_date"))
    severity = pl.col("grade_source").str.extract(r"^severity (mild|moderate|severe)$", 1).str.to_uppercase()
    terms = {k.code: k.term for k in catalog().events.values()}
    out["CE"] = pl.DataFrame() if ce.is_empty() else ce.select(
        "STUDYID", pl.lit("CE").alias("DOMAIN"), pl.col("patient_id").alias("USUBJID"),
        _seq("CE"), pl.col("event_id").alias("CESPID"), pl.col("term").alias("CETERM"),
        pl.coalesce(pl.col("code").replace_strict(terms, default=None, return_dtype=pl.String), "term")
        .alias("CEDECOD"),
        # a grade mapped from a severity goes back as that severity, so that it reads back the same way
        pl.when(severity.is_null()).then(pl.col("grade").cast(pl.String)).alias("CETOXGR"), severity.alias("CESEV"),
        _dtc_text().alias("CESTDTC"), pl.col("end_date").dt.strftime("%Y-%m-%d").alias("CEENDTC"),
    )
    return {dom: df for dom, df in out.items() if dom == "DM" or not df.is_empty()}


def write_frame(df: pl.DataFrame, path: str | Path, *, labels: list[str] | None = None,
                table_label: str | None = None) -> Path:
    """Write a frame as CSV (.csv) or SAS XPORT v5 (.xpt, dataset name = file name, upper case;
    with variable ``labels`` and a ``table_label`` when given)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        df.write_csv(path)
    elif suffix == ".xpt":
        import pyreadstat

        pyreadstat.write_xport(df, path, table_name=path.stem.upper()[:8], file_format_version=5,
                               column_labels=labels, file_label=table_label)
    else:
        raise ValueError(f"{path}: write .csv or .xpt")
    return path


def write_sdtm(cohort: Cohort, folder: str | Path, fmt: str = "csv", *, studyid: str | None = None) -> list[Path]:
    """Write the cohort as SDTM datasets (dm, lb, vs, tr, pe, ex, ec, ce) in ``fmt`` (csv or xpt)."""
    if fmt not in ("csv", "xpt"):
        raise ValueError(f"format {fmt!r}: use csv or xpt")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frames = sdtm_frames(cohort, studyid=studyid)
    return [write_frame(df, folder / f"{dom.lower()}.{fmt}") for dom, df in frames.items()]


# ---------------------------------------------------------------------------------------------
# ADaM-style exports


def adlb_frame(cohort: Cohort, day1: dict[str, dt.date], *, studyid: str | None = None) -> pl.DataFrame:
    """ADLB-style rows for the labs: value, range, baseline (the last value on or before day 1,
    flagged ABLFL = "Y"), change from baseline, date and study day (no day 0)."""
    labs = [a for a in catalog().analytes.values() if a.kind == "lab"]
    meta = pl.DataFrame({"code": [a.code for a in labs], "PARAMCD": [a.sdtm_testcd for a in labs],
                         "PARAM": [f"{a.name} ({adam_unit(a.unit)})" for a in labs],
                         "AVALU": [adam_unit(a.unit) for a in labs]})
    group = ["patient_id", "code"]
    df = (cohort.observations.join(meta, on="code", how="inner")
          .join(day1_frame(day1, "_day1"), on="patient_id", how="left")
          .sort(["patient_id", "PARAMCD", "time", "obs_id"])
          .with_columns(pl.int_range(pl.len()).over(group).alias("_i")))
    base_i = pl.when(pl.col("date") <= pl.col("_day1")).then(pl.col("_i")).max().over(group)
    df = df.with_columns(pl.when(pl.col("_i") == base_i).then(pl.lit("Y")).alias("ABLFL"))
    base = pl.when(pl.col("ABLFL") == "Y").then(pl.col("value")).max().over(group)
    return with_study(df.with_columns(base.alias("BASE")), cohort.patients, studyid).select(
        "STUDYID", pl.col("patient_id").alias("USUBJID"), "PARAMCD", "PARAM",
        pl.col("value").alias("AVAL"), "AVALU", pl.col("ref_low").alias("ANRLO"), pl.col("ref_high").alias("ANRHI"),
        "BASE", "ABLFL", (pl.col("value") - pl.col("BASE")).alias("CHG"), pl.col("date").alias("ADT"),
        study_day_expr("date", "_day1").alias("ADY"), "obs_id",
    )


def ae_frame(events: list[Event], cohort: Cohort, day1: dict[str, dt.date], *,
             studyid: str | None = None) -> pl.DataFrame:
    """SDTM AE rows for detected events, numbered per subject in order of onset; AECRIT (a
    SUPPAE-style QNAM) names the criteria id that found the event."""
    known = set(cohort.patient_ids)
    strangers = sorted({e.patient_id for e in events} - known)
    if strangers:
        raise ValueError(f"events for subjects not in the cohort: {', '.join(strangers)}")
    order = {pid: i for i, pid in enumerate(cohort.patient_ids)}
    studies = dict(with_study(cohort.patients, cohort.patients, studyid).select("patient_id", "STUDYID").iter_rows())
    rows = sorted(events, key=lambda e: (order[e.patient_id], e.onset, e.term, e.criteria))
    seq: dict[str, int] = {}
    out = []
    for e in rows:
        seq[e.patient_id] = seq.get(e.patient_id, 0) + 1
        d1 = day1.get(e.patient_id)
        out.append({
            "STUDYID": studies[e.patient_id], "DOMAIN": "AE", "USUBJID": e.patient_id, "AESEQ": seq[e.patient_id],
            "AETERM": e.term, "AEDECOD": e.term, "AETOXGR": None if e.grade is None else str(e.grade),
            "AESTDTC": e.onset.isoformat(), "AESTDY": study_day(e.onset, d1) if d1 else None,
            "AECRIT": e.criteria,
        })
    schema = {"STUDYID": pl.String, "DOMAIN": pl.String, "USUBJID": pl.String, "AESEQ": pl.Int64,
              "AETERM": pl.String, "AEDECOD": pl.String, "AETOXGR": pl.String, "AESTDTC": pl.String,
              "AESTDY": pl.Int64, "AECRIT": pl.String}
    return pl.DataFrame(out, schema=schema)
