"""CDISC SDTM in.

``read_sdtm`` reads a folder of SDTM datasets (CSV or SAS XPORT v5) into the canonical ``Cohort``
(findings: ``sdtm_findings``; writing them back: ``sdtm_write``). The variables read, and every
problem the reader reports, are listed in docs/sdtm.md.

Everything works on whole columns: each dataset is read as text, checked with polars expressions
(one problem frame per check), converted once per (analyte, unit) and filtered. Studies write what
dosewatch does not use (dozens of tests, other domains): those are counted notices, never errors.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ..analytes import Catalog, catalog
from ..drugs import drug_catalog
from ..errors import Problem
from ..record import DOSES_SCHEMA, EVENTS_SCHEMA, OBSERVATIONS_SCHEMA, PATIENTS_SCHEMA, PLACEBO, Cohort, empty
from . import ReadResult, finish
from .datasets import load_dataset
from .sdtm_common import Log, complete_partial, dates, flag_date, flag_subject, ids, number, optional, require, txt
from .sdtm_findings import read_findings

FINDINGS = ("LB", "VS", "TR", "PE")
DOMAINS = ("DM", *FINDINGS, "EX", "EC", "CE", "AE")
MEDDRA = "http://terminology.hl7.org/CodeSystem/mdr"  # MedDRA's FHIR code system (AEPTCD, AELLTCD)
# AESEV as a CTCAE grade: CTCAE v5.0 ("Grades", p. 1) describes grade 1 as mild, 2 as moderate,
# 3 as severe; AESLIFE Y (life-threatening) is grade 4 and AESDTH Y / AEOUT FATAL is grade 5 ("death
# related to AE"), by the same general descriptions.
SEVERITY_GRADE = {"MILD": 1, "MODERATE": 2, "SEVERE": 3}
AGE_YEARS = {"YEARS": 1.0, "MONTHS": 1 / 12, "WEEKS": 7 / 365.25, "DAYS": 1 / 365.25, "HOURS": 1 / 8766}


@dataclass
class _Subjects:
    """What DM tells the other domains: who exists, who died when, who is on placebo, first exposure."""

    ids: set[str]
    deaths: dict[str, dt.date]
    placebo_arm: set[str]
    first_exposure: dict[str, dt.date]


def _read_dm(df: pl.DataFrame, file: str, problems: list[Problem]) -> tuple[pl.DataFrame, pl.DataFrame, _Subjects]:
    """Patients and the DEATH events given by DTHDTC, and what the other domains need to know."""
    if not require(df, ["USUBJID"], file, problems):
        return empty(PATIENTS_SCHEMA), empty(EVENTS_SCHEMA), _Subjects(set(), {}, set(), {})
    log = Log(file)
    df = optional(df, ["STUDYID", "SEX", "BRTHDTC", "DTHDTC", "DTHFL", "AGE", "AGEU", "RFSTDTC", "DMDTC",
                       "RFXSTDTC", "ARM", "ACTARM"])
    for col, out in (("BRTHDTC", "birth"), ("DTHDTC", "death"), ("RFSTDTC", "rfst"), ("DMDTC", "dmdt"),
                     ("RFXSTDTC", "rfx")):
        df = dates(df, col, out)
    sex = pl.col("SEX").str.to_uppercase()
    age_unit = pl.col("AGEU").str.to_uppercase()
    df = df.with_columns(
        pl.when(sex.is_null()).then(pl.lit("U")).when(sex == "UNDIFFERENTIATED").then(pl.lit("U")).otherwise(sex)
        .alias("sex"),
        (number("AGE") * age_unit.fill_null("YEARS").replace_strict(AGE_YEARS, default=None, return_dtype=pl.Float64))
        .alias("age"),
    )
    log.flag(df, pl.col("USUBJID").is_null(), "USUBJID", "missing subject id", kind="subject")
    log.flag(df, (pl.int_range(pl.len()).over("USUBJID") > 0) & pl.col("USUBJID").is_not_null(), "USUBJID",
             "duplicate subject", kind="duplicate",
             detail=pl.format("subject {}, first at row {}", "USUBJID", pl.col("_row").first().over("USUBJID")))
    log.flag(df, ~pl.col("sex").is_in(["M", "F", "U"]), "SEX", "unknown SEX (expected M, F, U or UNDIFFERENTIATED)",
             kind="value", detail=pl.format("'{}'", "SEX"))
    # A partial birth date is common (privacy); it is not imputed: the age then comes from AGE, if given.
    partial_birth = pl.col("BRTHDTC").is_not_null() & pl.col("birth_err").str.starts_with("partial")
    log.flag(df, partial_birth, "BRTHDTC", pl.when(pl.col("age").is_not_null())
             .then(pl.lit("partial birth date not used: the age comes from AGE"))
             .otherwise(pl.lit("partial birth date not used, and no AGE: age unknown")), "warning", drop=False,
             kind="partial-date", detail=pl.format("'{}'", "BRTHDTC"))
    log.flag(df, pl.col("BRTHDTC").is_not_null() & pl.col("birth_err").is_not_null() & ~partial_birth,
             "BRTHDTC", pl.col("birth_err"), kind="date", detail=pl.format("'{}'", "BRTHDTC"))
    log.flag(df, pl.col("AGE").is_not_null() & number("AGE").is_null(), "AGE", "non-numeric AGE: not used",
             "warning", drop=False, kind="value", detail=pl.format("'{}'", "AGE"))
    log.flag(df, pl.col("AGE").is_not_null() & age_unit.is_not_null() & ~age_unit.is_in(list(AGE_YEARS)), "AGEU",
             f"unknown AGEU (expected {', '.join(AGE_YEARS)}): AGE not used", "warning", drop=False, kind="unit",
             detail=pl.format("'{}'", "AGEU"))
    log.flag(df, number("AGE").is_not_null() & age_unit.is_null(), "AGEU", "AGE without AGEU: read in years",
             "warning", drop=False, kind="unit")
    flag_date(df, log, "DTHDTC", "death", required=False)
    for col, out in (("RFSTDTC", "rfst"), ("RFXSTDTC", "rfx"), ("DMDTC", "dmdt")):  # used for ages and AE dates
        log.flag(df, pl.col(col).is_not_null() & pl.col(f"{out}_err").is_not_null()
                 & ~pl.col(f"{out}_err").str.starts_with("partial"), col, pl.col(f"{out}_err"), kind="date",
                 detail=pl.format("'{}'", col))
    flag = pl.col("DTHFL").str.to_uppercase()
    log.flag(df, (flag == "N") & pl.col("DTHDTC").is_not_null(), "DTHFL", "DTHFL is N but DTHDTC gives a death date",
             kind="value")
    log.flag(df, (flag == "Y") & pl.col("DTHDTC").is_null(), "DTHDTC",
             "DTHFL is Y but DTHDTC is empty: death date unknown, no DEATH event", "warning", drop=False, kind="value")
    log.flag(df, flag.is_not_null() & ~flag.is_in(["Y", "N"]), "DTHFL", "DTHFL is not Y or N", kind="value",
             detail=pl.format("'{}'", "DTHFL"))
    subjects = set(df["USUBJID"].drop_nulls().to_list())
    problems.extend(log.problems())
    df = log.drop(df)
    source = pl.format("{} row {}", pl.lit(file), "_row")
    arm = pl.coalesce("ACTARM", "ARM").str.to_lowercase()
    patients = df.select(
        pl.col("USUBJID").alias("patient_id"), "sex",
        pl.when(pl.col("birth_err").is_null()).then(pl.col("birth_date")).alias("birth_date"),
        pl.col("death_date").alias("deceased_date"), source.alias("source"), pl.col("STUDYID").alias("study_id"),
        "age", pl.when(pl.col("age").is_not_null()).then(pl.coalesce("rfst_date", "dmdt_date")).alias("age_date"))
    deaths = df.filter(pl.col("death_date").is_not_null()).select(
        pl.col("USUBJID").alias("patient_id"),
        pl.format("DM-{}-DTH", "USUBJID").alias("event_id"),
        pl.lit("DEATH").alias("code"),
        pl.lit(catalog().events["DEATH"].term).alias("term"),
        pl.col("death_time").alias("time"), pl.col("death_date").alias("date"), pl.col("death_tk").alias("time_known"),
        pl.lit(None, pl.Date).alias("end_date"), pl.lit(None, pl.Int32).alias("grade"),
        pl.col("death_tz").alias("tz_offset_min"), source.alias("source"))
    known = df.filter(pl.col("USUBJID").is_not_null())
    info = _Subjects(
        subjects,
        {k: v for k, v in known.select("USUBJID", "death_date").iter_rows() if v},
        set(known.filter(arm.str.contains("placebo").fill_null(False))["USUBJID"].to_list()),
        {k: v for k, v in known.select("USUBJID", pl.coalesce("rfx_date", "rfst_date")).iter_rows() if v},
    )
    return patients, deaths, info


def _read_exposure(df: pl.DataFrame, dom: str, file: str, subjects: _Subjects, with_completed: bool,
                   problems: list[Problem]) -> pl.DataFrame:
    """EX (doses given) or EC (doses as collected: ECOCCUR N = not given). A record spanning several
    days at a daily frequency becomes one dose per day. Placebo is exposure to the blinded study
    treatment: it fixes study day 1 like the active drug and is never a missed dose."""
    p = dom
    need = ["USUBJID", f"{p}SEQ", f"{p}TRT", f"{p}STDTC"] + ([f"{p}DOSE", f"{p}DOSU"] if dom == "EX" else [])
    if not require(df, need, file, problems):
        return empty(DOSES_SCHEMA)
    log = Log(file)
    df = optional(df, [f"{p}DOSE", f"{p}DOSU", f"{p}ENDTC", f"{p}ROUTE", f"{p}DOSFRQ", f"{p}SPID",
                       "EXADJ", "ECOCCUR", "ECMOOD"])
    trts = df[f"{p}TRT"].drop_nulls().unique().to_list()
    found = {t: drug_catalog().find(text=t) for t in trts}
    drug = pl.col(f"{p}TRT").replace_strict({t: d.name if d else t.lower() for t, d in found.items()},
                                            default=None, return_dtype=pl.String)
    dose = number(f"{p}DOSE")
    # EXDOSE 0 with a reason (EXADJ) is a dose not given (SDTMIG); without one, in a placebo arm, it is
    # the blinded placebo.
    arm_placebo = pl.col("USUBJID").is_in(sorted(subjects.placebo_arm)) & (dose == 0) & pl.col("EXADJ").is_null()
    placebo = ((drug == PLACEBO) | arm_placebo).fill_null(False)
    df = df.with_columns(pl.when(placebo).then(pl.lit(PLACEBO)).otherwise(drug).alias("drug"),
                         pl.col(f"{p}TRT").replace_strict({t: d.rxnorm[0] if d and d.rxnorm else None
                                                           for t, d in found.items()},
                                                          default=None, return_dtype=pl.String).alias("rxnorm"))
    if dom == "EX":
        status = pl.when(placebo).then(pl.lit("completed")).when(dose == 0).then(pl.lit("not-done")) \
            .otherwise(pl.lit("completed"))
        log.flag(df, (dose == 0) & ~placebo & pl.col("EXADJ").is_null(), "EXDOSE",
                 "EXDOSE 0 without EXADJ, outside a placebo arm: read as a dose not given", "warning", drop=False,
                 kind="assumed")
    else:
        occur = pl.col("ECOCCUR").str.to_uppercase()
        status = pl.when(occur == "N").then(pl.lit("not-done")).otherwise(pl.lit("completed"))
        log.flag(df, occur.is_not_null() & ~occur.is_in(["Y", "N"]), "ECOCCUR", "ECOCCUR is not Y or N",
                 kind="value", detail=pl.format("'{}'", "ECOCCUR"))
        # Planned doses are not administrations; given doses are EX's when EX is present.
        planned = (pl.col("ECMOOD").str.to_uppercase() == "SCHEDULED").fill_null(False)
        log.flag(df, planned, "ECMOOD", "a planned dose (ECMOOD SCHEDULED): not read", "notice", drop=False,
                 kind="not-used")
        skip = planned
        if not with_completed:
            given = ~planned & (occur != "N").fill_null(True)
            log.flag(df, given, "ECOCCUR", "a dose given: read from EX, not from EC", "notice", drop=False,
                     kind="not-used")
            skip = skip | given
        df = df.filter(~skip)
    log.flag(df, placebo & (pl.col("drug") == PLACEBO), f"{p}TRT",
             "placebo: read as exposure to the blinded study treatment (it fixes study day 1 and is never a "
             "missed dose)", "warning", drop=False, kind="placebo",
             detail=pl.when(pl.col(f"{p}TRT").str.to_lowercase().str.contains("placebo"))
             .then(pl.format("{} '{}'", pl.lit(f"{p}TRT"), f"{p}TRT"))
             .otherwise(pl.format("{} '{}' with dose 0 in a placebo arm", pl.lit(f"{p}TRT"), f"{p}TRT")))
    df = df.with_columns(status.alias("status"), dose.alias("dose"))
    log.flag(df, pl.col(f"{p}DOSE").is_not_null() & pl.col("dose").is_null(), f"{p}DOSE", "non-numeric dose",
             kind="value", detail=pl.format("'{}'", f"{p}DOSE"))
    log.flag(df, pl.col(f"{p}DOSE").is_null() & (pl.col("status") == "completed") & (pl.col("drug") != PLACEBO),
             f"{p}DOSE", "missing dose for a dose given", kind="value")
    log.flag(df, pl.col("dose") < 0, f"{p}DOSE", "negative dose", kind="value", detail=pl.format("{}", "dose"))
    log.flag(df, pl.col(f"{p}TRT").is_null(), f"{p}TRT", "missing treatment name", kind="value")
    unknown = [t for t, d in found.items() if d is None]
    log.flag(df, pl.col(f"{p}TRT").is_in(unknown), f"{p}TRT",
             pl.format("treatment {} is not in dosewatch's drug catalog: kept as '{}' (give it as --study-drug "
                       "to make it the study drug)", f"{p}TRT", "drug"), "notice", drop=False, kind="not-used")

    df = dates(dates(df, f"{p}STDTC", "st"), f"{p}ENDTC", "en")
    flag_date(df, log, f"{p}STDTC", "st")
    flag_date(df, log, f"{p}ENDTC", "en", required=False)
    days = ((pl.col("en_date") - pl.col("st_date")).dt.total_days() + 1).fill_null(1)
    log.flag(df, days < 1, f"{p}ENDTC", f"{p}ENDTC is before {p}STDTC", kind="date",
             detail=pl.format("{} to {}", f"{p}STDTC", f"{p}ENDTC"))
    freq = pl.col(f"{p}DOSFRQ").str.to_uppercase()
    log.flag(df, (days > 1) & freq.is_not_null() & (freq != "QD"), f"{p}DOSFRQ",
             "cannot expand a record over several days at this frequency (only QD or empty)", kind="value",
             detail=pl.format("'{}'", f"{p}DOSFRQ"))
    flag_subject(df, log, subjects.ids)
    df = ids(df, dom, log)
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
    death = pl.col("USUBJID").replace_strict(subjects.deaths, default=None, return_dtype=pl.Date)
    after = (pl.col("status") == "completed") & (pl.col("date") > death)
    log.flag(df, after, f"{p}STDTC", "dose given after the death date (DM.DTHDTC)", drop=False, kind="date",
             detail=pl.format("{} after {}", "date", death))
    problems.extend(log.problems())
    return df.filter(~after.fill_null(False)).select(
        pl.col("USUBJID").alias("patient_id"), "dose_id", "drug", "rxnorm", "time", "date", "time_known", "dose",
        pl.col(f"{p}DOSU").alias("dose_unit"), pl.col(f"{p}ROUTE").alias("route"), "status", "tz_offset_min",
        pl.format("{} row {}", pl.lit(file), "_row").alias("source"),
    )


def _grade(p: str) -> tuple[pl.Expr, pl.Expr]:
    """The event's grade and where it came from: --TOXGR, else a fatal or life-threatening outcome
    (AESDTH, AEOUT, AESLIFE), else --SEV (MILD 1, MODERATE 2, SEVERE 3)."""
    tox = pl.col(f"{p}TOXGR").cast(pl.Float64, strict=False)
    sev = pl.col(f"{p}SEV").str.to_uppercase()
    fatal = ((pl.col("AESDTH").str.to_uppercase() == "Y") | (pl.col("AEOUT").str.to_uppercase() == "FATAL"))
    life = pl.col("AESLIFE").str.to_uppercase() == "Y"
    from_sev = sev.replace_strict(SEVERITY_GRADE, default=None, return_dtype=pl.Int32)
    grade = (pl.when(tox.is_not_null()).then(tox.cast(pl.Int32, strict=False))
             .when(fatal.fill_null(False)).then(pl.lit(5, pl.Int32))
             .when(life.fill_null(False)).then(pl.lit(4, pl.Int32))
             .otherwise(from_sev))
    source = (pl.when(tox.is_not_null()).then(pl.lit("toxicity grade"))
              .when(fatal.fill_null(False)).then(pl.lit("fatal outcome"))
              .when(life.fill_null(False)).then(pl.lit("life-threatening"))
              .when(from_sev.is_not_null()).then(pl.format("severity {}", sev.str.to_lowercase())))
    return grade, source


def _read_events(df: pl.DataFrame, dom: str, file: str, subjects: _Subjects, problems: list[Problem],
                 cat: Catalog) -> pl.DataFrame:
    """CE and AE: clinical events, matched to the event catalog on --DECOD, else --TERM; an event
    outside the catalog is kept as a reported event with its text and codes."""
    p = dom
    need = ["USUBJID", f"{p}SEQ", f"{p}STDTC"]
    if f"{p}TERM" not in df.columns and f"{p}DECOD" not in df.columns:
        need.append(f"{p}TERM")
    if not require(df, need, file, problems):
        return empty(EVENTS_SCHEMA)
    log = Log(file)
    df = optional(df, [f"{p}TERM", f"{p}DECOD", f"{p}ENDTC", f"{p}TOXGR", f"{p}SEV", f"{p}OCCUR", f"{p}SPID",
                       f"{p}PTCD", f"{p}LLTCD", f"{p}STAT", "AESDTH", "AEOUT", "AESLIFE"])
    # --OCCUR N: a pre-specified event that did not happen. --STAT NOT DONE: not asked (a diary not kept).
    df = df.filter((pl.col(f"{p}OCCUR").str.to_uppercase() != "N").fill_null(True))
    not_done = (pl.col(f"{p}STAT").str.to_uppercase() == "NOT DONE").fill_null(False)
    log.flag(df, not_done, f"{p}STAT", "not done (--STAT NOT DONE): nothing to read", "notice", kind="not-done")
    df = log.drop(df)
    texts = set(df[f"{p}TERM"].drop_nulls().to_list()) | set(df[f"{p}DECOD"].drop_nulls().to_list())
    kinds = {t: k.code for t in texts if (k := cat.event_for_text(t))}
    as_code = lambda c: pl.col(c).replace_strict(kinds, default=None, return_dtype=pl.String)  # noqa: E731
    grade, grade_source = _grade(p)
    meddra = [pl.when(pl.col(c).is_not_null()).then(pl.format("{}|{}", pl.lit(MEDDRA), c)) for c in
              (f"{p}PTCD", f"{p}LLTCD")]
    codes = pl.concat_str(meddra, separator=" ", ignore_nulls=True)
    df = df.with_columns(
        pl.coalesce(as_code(f"{p}DECOD"), as_code(f"{p}TERM")).alias("code"),
        pl.coalesce(f"{p}TERM", f"{p}DECOD").alias("term"),
        grade.alias("grade"), grade_source.alias("grade_source"),
        pl.when(codes != "").then(codes).alias("codes"),
    )
    tox = pl.col(f"{p}TOXGR")
    log.flag(df, pl.col("term").is_null(), f"{p}TERM", f"missing event term ({p}TERM and {p}DECOD are empty)",
             kind="value")
    log.flag(df, tox.is_not_null() & ~tox.cast(pl.Float64, strict=False).is_in([1.0, 2.0, 3.0, 4.0, 5.0])
             .fill_null(False), f"{p}TOXGR", "toxicity grade is not 1, 2, 3, 4 or 5", kind="value",
             detail=pl.format("'{}'", f"{p}TOXGR"))
    sev = pl.col(f"{p}SEV")
    log.flag(df, tox.is_null() & sev.is_not_null() & pl.col("grade_source").str.starts_with("severity"), f"{p}SEV",
             f"no {p}TOXGR: grade mapped from severity (MILD 1, MODERATE 2, SEVERE 3, as CTCAE v5.0 describes "
             "grades 1-3)", "warning", drop=False, kind="grade-from-severity")
    log.flag(df, sev.is_not_null() & ~sev.str.to_uppercase().is_in(list(SEVERITY_GRADE)), f"{p}SEV",
             "severity is not MILD, MODERATE or SEVERE: no grade from it", "warning", drop=False, kind="value",
             detail=pl.format("'{}'", sev))
    log.flag(df, pl.col("term").is_not_null() & pl.col("code").is_null(), f"{p}DECOD",
             "term not in dosewatch's event catalog: kept as a reported event (no criterion acts on it)",
             "notice", drop=False, kind="not-used", detail=pl.col("term"))
    floor = pl.col("USUBJID").replace_strict(subjects.first_exposure, default=None, return_dtype=pl.Date)
    df = complete_partial(dates(df, f"{p}STDTC", "st"), f"{p}STDTC", "st", end=False, floor=floor)
    df = complete_partial(dates(df, f"{p}ENDTC", "en"), f"{p}ENDTC", "en", end=True)
    for col, out in ((f"{p}STDTC", "st"), (f"{p}ENDTC", "en")):
        log.flag(df, pl.col(f"{out}_imputed").is_not_null(), col,
                 "partial date completed (start: first day of its period, or the first exposure when in it; "
                 "end: last day of its period)", "warning", drop=False, kind="partial-date",
                 detail=pl.col(f"{out}_imputed"))
    flag_date(df, log, f"{p}STDTC", "st")
    flag_date(df, log, f"{p}ENDTC", "en", required=False)
    log.flag(df, pl.col("en_date") < pl.col("st_date"), f"{p}ENDTC", f"{p}ENDTC is before {p}STDTC", kind="date",
             detail=pl.format("{} to {}", txt(f"{p}STDTC"), txt(f"{p}ENDTC")))
    flag_subject(df, log, subjects.ids)
    df = ids(df, dom, log)
    problems.extend(log.problems())
    df = log.drop(df)
    return df.select(
        pl.col("USUBJID").alias("patient_id"), pl.col("_id").alias("event_id"), "code", "term",
        pl.col("st_time").alias("time"), pl.col("st_date").alias("date"), pl.col("st_tk").alias("time_known"),
        pl.col("en_date").alias("end_date"), "grade", pl.col("st_tz").alias("tz_offset_min"),
        pl.format("{} row {}", pl.lit(file), "_row").alias("source"), "codes", "grade_source",
        pl.concat_str([pl.col("st_imputed"), pl.col("en_imputed")], separator="; ", ignore_nulls=True)
        .replace("", None).alias("imputed"),
    )


def _datasets(folder: Path, problems: list[Problem]) -> dict[str, Path]:
    """Domain -> file; domains dosewatch does not read are notices, a domain given twice an error."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in (".csv", ".xpt"):
            continue
        dom = path.stem.upper()
        if dom not in DOMAINS:
            problems.append(Problem(path.name, "(file)", f"domain {dom} is not read by dosewatch", "notice",
                                    "not-used", file=path.name))
        elif dom in found:
            problems.append(Problem(path.name, "(file)", f"domain {dom} is also given as {found[dom].name}",
                                    kind="file", file=path.name))
        else:
            found[dom] = path
    return found


def read_sdtm(folder: str | Path, *, skip_invalid: bool = False, collect: bool = False,
              cat: Catalog | None = None) -> ReadResult:
    """Read a folder of SDTM datasets (dm.csv / DM.xpt ...) into a Cohort.

    Every problem in every dataset is gathered in one pass. Any error fails the read
    (``InputError``) unless ``skip_invalid`` (invalid rows are left out, each one reported) or
    ``collect`` (return the problems with the valid rows). ``cat`` is the analyte catalog to map
    codes with (the shipped one, or one extended with a site's local codes)."""
    folder = Path(folder)
    cat = cat or catalog()
    problems: list[Problem] = []
    if not folder.is_dir():
        return finish(ReadResult(Cohort(), [Problem(str(folder), "(folder)", "not a folder", kind="file")]),
                      skip_invalid=skip_invalid, collect=collect)
    files = dict(sorted(_datasets(folder, problems).items(), key=lambda kv: DOMAINS.index(kv[0])))
    if not files:
        problems.append(Problem(folder.name, "(folder)", "no SDTM datasets (.csv or .xpt) found", kind="file"))
    frames: dict[str, pl.DataFrame] = {}
    for dom, path in files.items():
        df, found = load_dataset(path)
        problems.extend(found)
        if df is not None:
            frames[dom] = df
    if "DM" not in files:
        problems.append(Problem(folder.name, "DM", "no DM dataset (dm.csv or dm.xpt): subjects unknown", kind="file"))
    if "DM" not in frames:
        # Without subjects nothing can be read: every other dataset's rows are named as left out.
        problems.extend(Problem(files[dom].name, "(file)", f"{df.height} rows not read: no readable DM dataset",
                                kind="file", file=files[dom].name) for dom, df in frames.items())
        return finish(ReadResult(Cohort(), problems), skip_invalid=skip_invalid, collect=collect)

    patients, deaths, subjects = _read_dm(frames["DM"], files["DM"].name, problems)
    obs, doses, events = [], [], [deaths]
    for dom, df in frames.items():
        file = files[dom].name
        if dom in FINDINGS:
            obs.append(read_findings(df, dom, file, subjects.ids, problems, cat))
        elif dom in ("EX", "EC"):
            doses.append(_read_exposure(df, dom, file, subjects, with_completed=(dom == "EX" or "EX" not in frames),
                                        problems=problems))
        elif dom in ("CE", "AE"):
            events.append(_read_events(df, dom, file, subjects, problems, cat))

    tables = {
        "observations": (obs, OBSERVATIONS_SCHEMA, ["patient_id", "time", "code", "obs_id"]),
        "doses": (doses, DOSES_SCHEMA, ["patient_id", "time", "drug", "dose_id"]),
        "events": (events, EVENTS_SCHEMA, ["patient_id", "time", "event_id"]),
    }
    kept = pl.Series(patients["patient_id"]).implode()
    out = {}
    for name, (parts, schema, order) in tables.items():
        table = pl.concat([Cohort.conform(p, schema) for p in parts]) if parts else empty(schema)
        # Records of a subject whose DM row was invalid cannot stand alone.
        orphan = table.filter(~pl.col("patient_id").is_in(kept))
        problems.extend(Problem(src, "USUBJID", "record left out: its subject's DM record is invalid", kind="subject",
                                detail=f"subject {pid}") for pid, src in orphan.select("patient_id", "source").iter_rows())
        out[name] = table.filter(pl.col("patient_id").is_in(kept)).sort(order, maintain_order=True)
    cohort = Cohort(patients, out["observations"], out["doses"], out["events"])
    return finish(ReadResult(cohort, problems), skip_invalid=skip_invalid, collect=collect)
