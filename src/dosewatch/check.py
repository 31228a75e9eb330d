"""`dosewatch check`: read records, grade labs, detect syndromes, report events with their evidence.

The pipeline is the same for one patient or ten thousand: every step works on the cohort's whole
observation table.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from .analytes import catalog
from .errors import Problem
from .events import Event, Evidence
from .io import ReadOptions, read_any
from .keys import factorize
from .record import Cohort, day1_frame


@dataclass
class CheckSettings:
    study_drug: str = "lenalidomide"
    ctcae: str = "ctcae-5.0"  # CTCAE version for lab terms
    cytopenias: str = "ctcae-5.0"  # how ANC, platelets and Hb are graded: iwcll-2018 or a CTCAE version
    tls_criteria: str = "cairo-bishop-2004"  # or howard-2011
    tls_anchors: dict[str, list[dt.date]] | None = None  # per patient; default: day 1 only
    # iwCLL 2018: "lymphocytosis is not a toxicity" in CLL, so these CTCAE terms are not reported.
    skip_terms: tuple[str, ...] = ("Lymphocyte count increased", "Leukocytosis")


@dataclass
class PatientResult:
    patient_id: str
    day1: dt.date | None
    events: list[Event] = field(default_factory=list)
    tls_risk: dict | None = None  # baseline TLS risk category (venetoclax label tiers), with CrCl
    not_graded: list[dict] = field(default_factory=list)  # {"code", "reason", "n"}: lab values not graded, why

    def as_dict(self) -> dict:
        return {
            "patient_id": self.patient_id,
            "day1": self.day1.isoformat() if self.day1 else None,
            "tls_risk": self.tls_risk,
            "events": [e.as_dict(self.day1) for e in self.events],
            "not_graded": self.not_graded,
        }


@dataclass
class CheckResult:
    patients: list[PatientResult]
    problems: list[Problem] = field(default_factory=list)
    settings: CheckSettings = field(default_factory=CheckSettings)

    def to_json(self) -> str:
        return json.dumps([p.as_dict() for p in self.patients], indent=2)


HEMATOLOGY = ("NEUT", "PLAT", "HGB")


def baseline_values(obs: pl.DataFrame, day1: dict[str, dt.date]) -> pl.DataFrame:
    """Per patient and code: the last value on or before day 1 (the pretreatment value), canonical unit."""
    d1 = day1_frame(day1)
    latest = max(day1.values(), default=dt.date.min)  # most rows are later than every day 1: leave them out first
    return (
        obs.filter((pl.col("date") <= latest) & pl.col("value").is_not_null())
        .join(d1, on="patient_id", how="inner")
        .filter(pl.col("date") <= pl.col("day1"))
        .sort("time", maintain_order=True)
        .group_by("patient_id", "code", "site")
        .agg(pl.col("value").last().alias("base"), pl.col("obs_id").last().alias("base_id"))
    )


def graded_labs(obs: pl.DataFrame, day1: dict[str, dt.date], criteria: str = "ctcae-5.0") -> pl.DataFrame:
    """Grade every lab observation in both directions (grade_low/high, term_low/high, reason_low/high).

    Grading happens in the unit the value was reported in (criteria.md decision 2), so values,
    reference ranges and baselines are handed to the grader in the reported unit.
    """
    from .criteria.ctcae import grade_frame

    return grade_frame(reported_unit_frame(obs, day1), criteria=criteria)


def reported_unit_frame(obs: pl.DataFrame, day1: dict[str, dt.date]) -> pl.DataFrame:
    """Lab rows with value, range and pretreatment baseline in the unit the value was reported in."""
    cat = catalog()
    labs = obs.select("patient_id", "obs_id", "date", "time", "code", "value", "orig_value", "orig_unit",
                      "ref_low", "ref_high", "site", "comparator", "ref_source").filter(
        pl.col("code").is_in([c for c, a in cat.analytes.items() if a.kind == "lab"]))
    if labs.is_empty():
        return labs.select("patient_id", "obs_id", "date", "time", "code", value="orig_value", unit="orig_unit",
                           ref_low="ref_low", ref_high="ref_high", base=pl.col("value"), comparator="comparator",
                           bound="orig_value", ref_source="ref_source")
    # The pretreatment value of each (patient, code), gathered by key number rather than joined.
    key, keys = factorize(labs["patient_id"], labs["code"])
    number = {k: i for i, k in enumerate(keys)}
    base = np.full(len(keys), np.nan)
    for pid, code, value in baseline_values(labs, day1).select("patient_id", "code", "base").iter_rows():
        base[number[pid, code]] = np.nan if value is None else value
    # Canonical -> reported unit for the range and the baseline, one factor per (code, unit).
    unit_key, pairs = factorize(labs["code"], labs["orig_unit"])
    k, b = (np.array(c, dtype=np.float64)[unit_key] for c in zip(*[_inverse(cat[c].conversion(u)) for c, u in pairs]))
    return labs.select(
        "patient_id", "obs_id", "date", "time", "code",
        value=graded_value(pl.col("orig_value"), pl.col("comparator")),
        unit=pl.col("orig_unit"),
        ref_low=pl.col("ref_low") * k + b,
        ref_high=pl.col("ref_high") * k + b,
        base=pl.Series(base[key] * k + b).fill_nan(None),
        comparator="comparator", bound="orig_value", ref_source="ref_source",
    )


# A bound is graded just inside itself: "<40" as a value below 40 by one part in a million, more than
# the grader's tolerance (1e-9), so that "<40" meets a "< 40" cut-off and no cut-off it does not
# guarantee; "<=" and ">=" are graded at the bound.
BOUND_STEP = 1e-6


def graded_value(value: pl.Expr, comparator: pl.Expr) -> pl.Expr:
    """The value a result is graded at: the number, or just inside a strict bound ("<40", ">3000")."""
    step = value.abs() * BOUND_STEP
    return (pl.when(comparator == "<").then(value - step).when(comparator == ">").then(value + step)
            .otherwise(value))


def graded_parts(obs: pl.DataFrame, day1: dict[str, dt.date], settings: CheckSettings) -> list[tuple[pl.DataFrame, str]]:
    """Every lab observation graded (both directions, with the reason a grade is null): by the
    protocol's CTCAE version, cytopenias by their own version or by iwCLL when the settings choose it;
    as (graded frame, criteria id) pairs."""
    from .criteria.ctcae import CRITERIA, grade_frame

    if settings.cytopenias not in CRITERIA + ("iwcll-2018",):
        raise ValueError(f"unknown cytopenias criteria {settings.cytopenias!r}: choose iwcll-2018 or one of {', '.join(CRITERIA)}")
    frame = reported_unit_frame(obs, day1)
    heme = pl.col("code").is_in(HEMATOLOGY)
    # (rows, CTCAE version): every lab with the protocol's version, cytopenias with their own when it differs
    batches = [(frame, settings.ctcae)] if settings.cytopenias == settings.ctcae else [(frame.filter(~heme), settings.ctcae)]
    if settings.cytopenias in CRITERIA and settings.cytopenias != settings.ctcae:
        batches.append((frame.filter(heme), settings.cytopenias))
    parts = [(grade_frame(rows, criteria=version), version) for rows, version in batches]
    if settings.cytopenias == "iwcll-2018":
        from .criteria.iwcll import grade_iwcll

        parts.append((grade_iwcll(frame.filter(pl.col("code").is_in(HEMATOLOGY))), "iwcll-2018"))
    return parts


def lab_grades(obs: pl.DataFrame, day1: dict[str, dt.date], settings: CheckSettings,
               positive_only: bool = False, parts: list[tuple[pl.DataFrame, str]] | None = None) -> pl.DataFrame:
    """Long table of (observation, term, grade, criteria): CTCAE for every lab, iwCLL for cytopenias
    when the settings choose it. ``positive_only`` keeps grades >= 1 (what events are made of)."""
    cols = ["patient_id", "obs_id", "date", "code", "value", "unit", "comparator", "bound", "ref_source"]
    keep = (lambda g: pl.col(g) > 0) if positive_only else (lambda g: pl.lit(True))
    out = [
        graded.filter(keep(f"grade_{d}"))
        .select(*cols, pl.col(f"grade_{d}").alias("grade"), pl.col(f"term_{d}").cast(pl.String).alias("term"))
        .with_columns(pl.lit(criteria).alias("criteria"))
        for graded, criteria in parts or graded_parts(obs, day1, settings)
        for d in (("low", "high") if "grade_high" in graded.columns else ("low",))
    ]
    return pl.concat(out, how="vertical_relaxed").filter(pl.col("term").is_not_null() & (pl.col("term") != ""))


# Reasons a value was not graded that say nothing is wrong: the analyte has no term in that direction
# (potassium is graded low and high, ALT only high) or no criterion at all.
NOTHING_TO_GRADE = ("no term", "no iwCLL criterion")


def not_graded(parts: list[tuple[pl.DataFrame, str]]) -> pl.DataFrame:
    """(patient_id, code, reason, n): the lab values that could not be graded, counted per reason
    (no LLN or ULN, a unit the criteria do not grade, a comparator without a number, ...)."""
    found = []
    for graded, _ in parts:
        for d in ("low", "high") if "reason_high" in graded.columns else ("low",):
            reason = pl.col(f"reason_{d}").cast(pl.String)
            found.append(graded.filter(reason.is_not_null() & ~reason.is_in(NOTHING_TO_GRADE)).select(
                "patient_id", "obs_id", "code",
                pl.when((reason == "missing value") & pl.col("comparator").is_not_null())
                .then(pl.lit("comparator without a number")).otherwise(reason).alias("reason")))
    if not found:
        return pl.DataFrame(schema={"patient_id": pl.String, "code": pl.String, "reason": pl.String, "n": pl.UInt32})
    return (pl.concat(found).unique(["patient_id", "obs_id", "reason"])
            .group_by("patient_id", "code", "reason").agg(pl.len().alias("n"))
            .sort("patient_id", "code", "reason"))


def _inverse(conv: tuple[float, float]) -> tuple[float, float]:
    scale, offset = conv
    return 1.0 / scale, -offset / scale


def lab_events(grades: pl.DataFrame, day1: dict[str, dt.date], settings: CheckSettings) -> list[Event]:
    """One event each time a patient's grade for a term first reaches a new maximum after day 1
    (above the pretreatment grade), so that an alert can fire on the first day the data show it."""
    d1 = day1_frame(day1)
    # grade 0 never starts an event nor raises a maximum: leave those rows out first (most rows)
    g = grades.filter((pl.col("grade") > 0) & ~pl.col("term").is_in(list(settings.skip_terms)))
    # one number per (patient, criteria, term): sorting and windows on it are cheaper than on strings
    group, _ = factorize(g["patient_id"], g["criteria"], g["term"])
    g = g.with_columns(group=pl.Series(group)).join(d1, on="patient_id", how="left").sort("group", "date", "obs_id")
    keys = ["group"]
    pre = g.filter(pl.col("day1").is_not_null() & (pl.col("date") <= pl.col("day1")))
    base_grade = pre.group_by(keys).agg(pl.col("grade").max().alias("base_grade"))
    post = (
        g.filter(pl.col("day1").is_null() | (pl.col("date") > pl.col("day1")))
        .join(base_grade, on=keys, how="left")
        .with_columns(pl.col("base_grade").fill_null(0))
        .with_columns(pl.col("grade").cum_max().shift(1).over(keys).alias("prev_max"))
        .filter(
            (pl.col("grade") > pl.col("base_grade"))
            & (pl.col("prev_max").is_null() | (pl.col("grade") > pl.col("prev_max")))
            & (pl.col("grade") > 0)
        )
    )
    events = []
    for row in post.iter_rows(named=True):
        events.append(
            Event(
                patient_id=row["patient_id"],
                term=row["term"],
                criteria=row["criteria"],
                grade=int(row["grade"]),
                onset=row["date"],
                evidence=(_lab_evidence(row),),
                detail={"baseline_grade": int(row["base_grade"])} if row["base_grade"] else {},
            )
        )
    return events


def _lab_evidence(row: dict) -> Evidence:
    """The graded value as evidence: a bound shows as the bound, with what was assumed of it; a limit of
    normal from a site's ranges file says so."""
    notes = []
    value = row["value"]
    if row.get("comparator"):
        value = row["bound"]
        side = {"<": "as a value just below the bound", ">": "as a value just above the bound"}
        notes.append(f"result {row['comparator']}{row['bound']:g}: graded "
                     f"{side.get(row['comparator'], 'at the bound')}")
    if row.get("ref_source"):
        notes.append(f"limits of normal from {row['ref_source']}")
    return Evidence(row["obs_id"], row["code"], value, row["unit"], row["date"], "; ".join(notes) or None)


def reported_events(cohort: Cohort) -> list[Event]:
    """Clinical events as the record reports them (sepsis, dialysis, death, ...). An event of the
    catalog that acts on its own carries the grade dose rules read it at (``detail.rule_grade``): the
    reported grade, not below the event's lowest (sepsis starts at grade 4), else the catalog's."""
    cat = catalog()
    out = []
    for row in cohort.events.iter_rows(named=True):
        kind = cat.events.get(row["code"])
        detail = {}
        if kind is not None and kind.grade is not None:
            reported = row["grade"]
            rule_grade = kind.grade if reported is None else max(reported, kind.min_grade)
            if rule_grade != reported:
                detail = {"rule_grade": rule_grade,
                          "rule_grade_basis": (f"no grade reported: read as grade {rule_grade} ({kind.grade_source})"
                                               if reported is None else
                                               f"reported grade {reported} read as {rule_grade} ({kind.grade_source})")}
        out.append(
            Event(
                patient_id=row["patient_id"],
                term=kind.term if kind else (row["term"] or row["code"]),
                criteria="reported",
                grade=row["grade"],
                onset=row["date"],
                evidence=(Evidence(row["event_id"], row["code"], None, None, row["date"], row["term"]),),
                detail=detail,
            )
        )
    return out


# Patients are checked in parts of this many: every criterion is per patient, and parts keep the
# working tables small (sorts, joins and memory grow faster than linearly with a 30M-row table).
BATCH_PATIENTS = 1000


def check_cohort(cohort: Cohort, settings: CheckSettings | None = None,
                 batch_patients: int = BATCH_PATIENTS) -> list[PatientResult]:
    """Every event dosewatch detects in these records, per patient, in onset order."""
    return [r for part in cohort.batches(batch_patients) for r in _check_part(part, settings)]


def _check_part(cohort: Cohort, settings: CheckSettings | None) -> list[PatientResult]:
    from .criteria.calcium import with_corrected_calcium
    from .criteria.flare import detect_tumor_flare
    from .criteria.neutropenia import detect_febrile_neutropenia
    from .criteria.renal import detect_aki
    from .criteria.risk import tls_risk
    from .criteria.tls import detect_tls

    settings = settings or CheckSettings()
    day1 = cohort.first_dose_dates(settings.study_drug)
    # No criterion reads where an observation was read from: drop it before the tables are copied.
    obs = with_corrected_calcium(cohort.observations.with_columns(source=pl.lit(None, pl.String)))
    parts = graded_parts(obs, day1, settings)
    unread = not_graded(parts)
    # A result without a number ("<LLOQ") is kept in the record and listed as not graded; no criterion reads it.
    obs = obs.filter(pl.col("value").is_not_null())
    enriched = Cohort(cohort.patients, obs, cohort.doses, cohort.events)
    events: list[Event] = []
    events += lab_events(lab_grades(obs, day1, settings, positive_only=True, parts=parts), day1, settings)
    events += detect_tls(enriched, day1, criteria=settings.tls_criteria, anchors=settings.tls_anchors,
                         calcium_corrected=True)
    events += detect_aki(enriched, day1)
    events += detect_febrile_neutropenia(enriched, day1)
    events += detect_tumor_flare(enriched, day1, drug=settings.study_drug)
    events += reported_events(enriched)
    by_patient: dict[str, list[Event]] = {pid: [] for pid in cohort.patient_ids}
    for e in events:
        by_patient.setdefault(e.patient_id, []).append(e)
    risk = tls_risk(enriched, day1)
    unread_of: dict[str, list[dict]] = {}
    for pid, code, reason, n in unread.iter_rows():
        unread_of.setdefault(pid, []).append({"code": code, "reason": reason, "n": n})
    return [
        PatientResult(pid, day1.get(pid), sorted(evs, key=lambda e: (e.onset, e.criteria, e.term, e.grade or 0)),
                      _risk_dict(risk.get(pid)), unread_of.get(pid, []))
        for pid, evs in by_patient.items()
    ]


def _risk_dict(result) -> dict | None:
    if result is None:
        return None
    d = result.as_dict()
    d.pop("patient_id", None)
    return d


def check_path(path: str | Path, *, study_drug: str = "lenalidomide", tls_criteria: str = "cairo-bishop-2004",
               ctcae: str = "ctcae-5.0", cytopenias: str = "ctcae-5.0", skip_invalid: bool = False,
               as_of: dt.date | None = None, options: ReadOptions | None = None) -> CheckResult:
    read = read_any(path, skip_invalid=skip_invalid, options=options)
    cohort = read.cohort if as_of is None else read.cohort.known_on(as_of)
    settings = CheckSettings(study_drug=study_drug.lower(), ctcae=ctcae, tls_criteria=tls_criteria, cytopenias=cytopenias)
    return CheckResult(check_cohort(cohort, settings), read.problems, settings)


def print_table(result: CheckResult) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for p in result.patients:
        risk = f"; baseline TLS risk {p.tls_risk['category']}" if p.tls_risk and p.tls_risk.get("category") else ""
        table = Table(title=f"{p.patient_id}  (day 1 = {p.day1 or 'no dose of the study drug'}{risk})", title_justify="left")
        for col in ("day", "onset", "term", "grade", "criteria", "evidence"):
            table.add_column(col, overflow="fold")
        for e in p.events:
            d = e.as_dict(p.day1)
            ev = "; ".join(
                f"{x['code']} {x['value']:g} {x['unit']}" if x.get("value") is not None else f"{x['code']}"
                for x in d["evidence"][:4]
            )
            table.add_row(str(d["study_day"] if d["study_day"] is not None else ""), d["onset"], e.term,
                          "" if e.grade is None else str(e.grade), e.criteria, ev)
        console.print(table)
