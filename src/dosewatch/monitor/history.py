"""Event history: every grade an event reached, with the evidence known on the day it reached it.

The criteria engine reports a syndrome (TLS, kidney injury, flare, febrile neutropenia) once per
episode, at its worst grade and with all its evidence, some of it dated after the onset. A monitor
that read only that would date a flare that was grade 2 on day 4 and grade 4 on day 8 at its final
grade, and cite on day 4 a potassium measured on day 5. So, for each patient whose events carry
evidence dated after their onset, the engine is run again on the record as it stood at the end of
each day with a record (from the earliest such onset), all patients and days in one batch; each
(term, criteria, grade, onset) is kept as first seen. An event is then dated by ``known_on``: the
first day the data supported it (its onset, or its latest evidence if later), the day a day-by-day
replay first shows it.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace

import polars as pl

from ..check import CheckSettings, PatientResult, check_cohort
from ..events import Event, Evidence
from ..record import Cohort

SEP = "\x1f"  # patient id | cut date, in the ids of the replayed copies
# What a copy adds to an id: "<cut>\x1f" before a record id, "\x1f<cut>" after a patient id
# (derived ids keep both: "<cut>\x1f<CA id>+<cut>\x1f<ALB id>", "Patient/<id>\x1f<cut>").
_COPY_MARK = re.compile(r"\d{4}-\d{2}-\d{2}\x1f|\x1f\d{4}-\d{2}-\d{2}")


def known_on(event: Event) -> dt.date:
    """The first day the data supported this event at this grade: its onset, or its latest evidence."""
    return max([event.onset, *(e.date for e in event.evidence)])


def needs_history(event: Event) -> bool:
    return any(e.date > event.onset for e in event.evidence)


def with_history(cohort: Cohort, settings: CheckSettings, results: list[PatientResult]) -> list[PatientResult]:
    """``results`` (the engine on ``cohort``) with each event's earlier grades added, as the engine saw
    them on the day they were first supported (see the module's docstring)."""
    spans: dict[str, tuple[dt.date, dt.date]] = {}
    for r in results:
        late = [e for e in r.events if needs_history(e)]
        if late:
            spans[r.patient_id] = (min(e.onset for e in late), max(known_on(e) for e in late))
    if not spans:
        return results
    cuts = _cut_dates(cohort, spans)
    if cuts.is_empty():
        return results
    copies = _replayed_copies(cohort, cuts)
    anchors = None
    if settings.tls_anchors is not None:
        anchors = {}
        for pid, cut, key in cuts.select("patient_id", "cut", "key").iter_rows():
            anchors[key] = [d for d in settings.tls_anchors.get(pid, []) if d <= cut]
    replayed = check_cohort(copies, replace(settings, tls_anchors=anchors))
    earlier: dict[str, list[tuple[dt.date, list[Event]]]] = {}
    for r in replayed:
        pid, cut = r.patient_id.split(SEP)
        earlier.setdefault(pid, []).append((dt.date.fromisoformat(cut), r.events))
    out = []
    for r in results:
        if r.patient_id not in earlier:
            out.append(r)
            continue
        seen: dict[tuple, Event] = {}
        for _, events in [*sorted(earlier[r.patient_id], key=lambda c: c[0]), (None, r.events)]:
            for e in events:
                key = (e.term, e.criteria, e.grade, e.onset)
                if key not in seen:
                    seen[key] = _original(e, r.patient_id)
        events = sorted(seen.values(), key=lambda e: (e.onset, e.criteria, e.term, e.grade or 0, known_on(e)))
        out.append(replace(r, events=events))
    return out


def followup(event: Event, latest: list[Event]) -> tuple[Evidence, ...]:
    """Evidence of the same episode (term, criteria, onset) dated after ``event`` was known: the later
    values that confirmed or worsened it, as the engine reports the episode on the whole record
    (``latest``)."""
    when = known_on(event)
    same = [e for e in latest if (e.term, e.criteria, e.onset) == (event.term, event.criteria, event.onset)]
    refs = {x.ref for x in event.evidence}
    return tuple(dict.fromkeys(x for e in same for x in e.evidence if x.date > when and x.ref not in refs))


def _cut_dates(cohort: Cohort, spans: dict[str, tuple[dt.date, dt.date]]) -> pl.DataFrame:
    """(patient_id, cut, key): the days with a record of a patient from the earliest onset of an event
    with later evidence up to (not including) the latest day such an event was supported on; the
    engine's run on the whole record stands for that last day and every day after."""
    span = pl.DataFrame({"patient_id": list(spans), "lo": [s[0] for s in spans.values()],
                         "hi": [s[1] for s in spans.values()]},
                        schema={"patient_id": pl.String, "lo": pl.Date, "hi": pl.Date})
    dates = pl.concat([
        *(t.select("patient_id", pl.col("date").alias("cut")) for t in (cohort.observations, cohort.doses, cohort.events)),
        cohort.patients.select("patient_id", pl.col("deceased_date").alias("cut")).drop_nulls(),
    ])
    return (
        dates.join(span, on="patient_id", how="inner")
        .filter((pl.col("cut") >= pl.col("lo")) & (pl.col("cut") < pl.col("hi")))
        .select("patient_id", "cut").unique().sort("patient_id", "cut")
        .with_columns(pl.format("{}" + SEP + "{}", "patient_id", pl.col("cut").cast(pl.String)).alias("key"))
    )


def _replayed_copies(cohort: Cohort, cuts: pl.DataFrame) -> Cohort:
    """One copy of a patient's record per cut date, as it stood at the end of that day, its patient id
    the cut's key."""
    def cut(table: pl.DataFrame, id_column: str) -> pl.DataFrame:
        # Record ids stay unique across copies (a criterion may rely on it); ``_original`` takes the prefix off.
        return (table.join(cuts, on="patient_id", how="inner").filter(pl.col("date") <= pl.col("cut"))
                .with_columns(pl.col("key").alias("patient_id"),
                              pl.format("{}" + SEP + "{}", pl.col("cut").cast(pl.String), id_column).alias(id_column))
                .select(table.columns))

    patients = (
        cohort.patients.join(cuts, on="patient_id", how="inner")
        .with_columns(pl.col("key").alias("patient_id"),
                      pl.when(pl.col("deceased_date") <= pl.col("cut")).then(pl.col("deceased_date"))
                      .otherwise(None).alias("deceased_date"))
        .select(cohort.patients.columns)
    )
    return Cohort(patients, cut(cohort.observations, "obs_id"), cut(cohort.doses, "dose_id"), cut(cohort.events, "event_id"))


def _original(event: Event, patient_id: str) -> Event:
    """An event of a replayed copy with the patient's own id and record ids."""
    evidence = tuple(replace(e, ref=_clean(e.ref), note=_clean(e.note)) for e in event.evidence)
    return replace(event, patient_id=patient_id, evidence=evidence, detail=_clean(event.detail))


def _clean(value):
    """``value`` with the copy's marks taken out of every string in it (ids are quoted in notes and details)."""
    if isinstance(value, str):
        return _COPY_MARK.sub("", value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_clean(v) for v in value)
    return value
