"""What the safety review packet says, computed from the records: the monitor's assessment of each
patient (``monitor.evaluate``), the cohort table the designs read (``escalation.cohort_cli``), the
design's recommendation and its dose-transition pathways, and the decisions with their signatures.
Pure: the same records, protocol and date give the same content; the renderer only lays it out.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import polars as pl

GRADES = (1, 2, 3, 4, 5)


@dataclass
class ReviewContent:
    trial: str
    protocol: Any  # protocols.model.Protocol
    as_of: dt.date
    design: str
    design_options: dict[str, Any]
    rows: list  # escalation.cohort_cli.CohortRow, one per patient who started the study drug
    assessments: dict[str, Any]  # patient id -> monitor Assessment
    exposure: list[dict[str, Any]]
    toxicity: list[dict[str, Any]]
    dlts: list[dict[str, Any]]
    serious: list[dict[str, Any]]
    recommendation: Any  # escalation.base.Recommendation
    paths: Any  # escalation.paths.DosePaths
    decisions: list[dict[str, Any]] = field(default_factory=list)
    consort: dict[str, Any] = field(default_factory=dict)
    generated_at: str = ""
    oc: dict[str, Any] | None = None  # review.oc.operating_characteristics, when asked for

    @property
    def levels(self) -> list[int]:
        return [lv.level for lv in self.protocol.study_drug.levels]


def exposure_table(rows, cohort, protocol, as_of: dt.date) -> list[dict[str, Any]]:
    """Per dose level (the level of each patient's first dose): patients, DLT-evaluable, DLTs,
    patients still in the DLT window, days given the study drug and the total dose."""
    drug = protocol.study_drug.drug
    given = cohort.doses.filter((pl.col("drug") == drug) & (pl.col("status") == "completed")
                                & (pl.col("date") <= as_of))
    per_patient = {pid: (days, total) for pid, days, total in given.group_by("patient_id").agg(
        pl.col("date").n_unique(), pl.col("dose").sum()).iter_rows()}
    out = []
    for lv in protocol.study_drug.levels:
        at = [r for r in rows if r.dose == lv.level]
        days = [per_patient.get(r.patient_id, (0, 0.0))[0] for r in at]
        out.append({"level": lv.level, "dose": lv.dose, "unit": protocol.study_drug.unit,
                    "patients": [r.patient_id for r in at], "n": len(at),
                    "evaluable": sum(r.status != "in window" for r in at), "dlts": sum(r.dlt for r in at),
                    "in_window": sum(r.status == "in window" for r in at),
                    "dosing_days": sum(days), "median_days": sorted(days)[len(days) // 2] if days else None,
                    "total_dose": sum(per_patient.get(r.patient_id, (0, 0.0))[1] for r in at)})
    return out


def toxicity_table(rows, assessments) -> list[dict[str, Any]]:
    """The standard phase I table: per term, per dose level, the number of patients whose worst
    grade of that term was 1..5 (each patient counted once per term, at the worst grade)."""
    level_of = {r.patient_id: r.dose for r in rows}
    worst: dict[tuple[str, str], int] = {}
    for pid, a in assessments.items():
        if pid not in level_of:
            continue
        for e in a.events:
            if e.grade is None:
                continue
            key = (e.term, pid)
            worst[key] = max(worst.get(key, 0), int(e.grade))
    terms = sorted({t for t, _ in worst})
    out = []
    for term in terms:
        counts: dict[int, dict[int, int]] = {}
        for (t, pid), g in worst.items():
            if t == term:
                counts.setdefault(level_of[pid], {}).setdefault(g, 0)
                counts[level_of[pid]][g] += 1
        out.append({"term": term, "counts": counts,
                    "any_grade3": sum(n for lv in counts.values() for g, n in lv.items() if g >= 3)})
    out.sort(key=lambda r: (-r["any_grade3"], r["term"]))
    return out


def dlt_list(rows, assessments, protocol) -> list[dict[str, Any]]:
    """Every DLT: patient, level, the rule, the event with its grade and criteria, the date and
    study day, and the evidence the monitor cited."""
    out = []
    for r in rows:
        a = assessments.get(r.patient_id)
        if a is None or a.dlt.get("status") != "DLT":
            continue
        d = a.dlt
        evidence = []
        for e in a.events:
            if e.term == d.get("event") and e.onset.isoformat() == str(d.get("date")):
                evidence = [" ".join(x for x in (ev.code, "" if ev.value is None else f"{ev.value:g}", ev.unit or "",
                                                 f"on {ev.date}", f"({ev.note})" if ev.note else "") if x)
                            for ev in e.evidence]
                break
        out.append({"patient_id": r.patient_id, "level": r.dose, "rule": d.get("rule"), "event": d.get("event"),
                    "grade": d.get("grade"), "criteria": d.get("criteria"), "date": d.get("date"),
                    "study_day": d.get("study_day"), "window_end": d.get("window_end"), "evidence": evidence,
                    "day1": r.day1.isoformat()})
    return out


def serious_list(rows, assessments, cohort) -> list[dict[str, Any]]:
    """Grade 4 and 5 events and deaths. The record has no seriousness criteria (hospitalisation,
    ...), so grade >= 4 stands in for them; the section says so."""
    level_of = {r.patient_id: r.dose for r in rows}
    out = []
    for pid, a in assessments.items():
        for e in a.events:
            if e.grade is not None and e.grade >= 4:
                out.append({"patient_id": pid, "level": level_of.get(pid), "what": e.term, "grade": e.grade,
                            "criteria": e.criteria, "date": e.onset.isoformat()})
    deaths = cohort.patients.filter(pl.col("deceased_date").is_not_null())
    for pid, date in deaths.select("patient_id", "deceased_date").iter_rows():
        out.append({"patient_id": pid, "level": level_of.get(pid), "what": "Death", "grade": 5, "criteria": "record",
                    "date": date.isoformat()})
    out.sort(key=lambda r: (r["date"], r["patient_id"]))
    return out


def review_content(cohort, protocol, *, as_of: dt.date, design: str, design_options: dict[str, Any],
                   cohort_sizes=(3, 3), trial: str = "", decisions: list[dict[str, Any]] | None = None,
                   generated_at: str | None = None, oc: dict[str, Any] | None = None) -> ReviewContent:
    """Everything the packet shows, from the records as known at the end of ``as_of``."""
    from ..escalation.cohort_cli import cohort_rows, fit_rows, paths_from_rows
    from ..monitor import evaluate
    from .consort import consort_items

    known = cohort.known_on(as_of)
    assessments = {a.patient_id: a for a in evaluate(known, protocol, as_of)}
    rows = cohort_rows(known, protocol, as_of)
    rec, _, _ = fit_rows(rows, protocol, design, **design_options)
    paths = paths_from_rows(rows, protocol, design, list(cohort_sizes), **design_options)
    content = ReviewContent(
        trial=trial or protocol.id, protocol=protocol, as_of=as_of, design=design, design_options=design_options,
        rows=rows, assessments=assessments, exposure=exposure_table(rows, known, protocol, as_of),
        toxicity=toxicity_table(rows, assessments), dlts=dlt_list(rows, assessments, protocol),
        serious=serious_list(rows, assessments, known), recommendation=rec, paths=paths,
        decisions=decisions or [], oc=oc,
        generated_at=generated_at or dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat())
    content.consort = consort_items(content, oc)
    return content
