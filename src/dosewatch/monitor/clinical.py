"""Reported clinical events acting on their own (issue 14): the grade a dose rule reads an event at,
and the least severity of its alert. Both come from the event catalog (``data/analytes.yaml``)."""
from __future__ import annotations

import datetime as dt

from ..analytes import catalog
from ..events import Event

SEVERITY_ORDER = {"critical": 0, "urgent": 1, "warning": 2, "info": 3}


def rule_grade(event: Event) -> int | None:
    """The grade dose rules read: the reported grade, or the catalog's when none was reported
    (``check.reported_events``)."""
    return event.detail.get("rule_grade", event.grade) if event.detail else event.grade


def floor_severity(event: Event, until: dt.date | None = None) -> str | None:
    """The least severity of an alert on this event: that of a reported clinical event it is, or that
    rests in its evidence dated on or before ``until`` (febrile neutropenia with sepsis is critical, as
    sepsis is; a ventilation days after an alert does not raise that alert)."""
    kinds = catalog().events
    found = [kinds[e.code].severity for e in event.evidence
             if e.code in kinds and kinds[e.code].severity and (until is None or e.date <= until)]
    return min(found, key=SEVERITY_ORDER.__getitem__) if found else None


def worst(*severities: str | None) -> str:
    return min((s for s in severities if s), key=SEVERITY_ORDER.__getitem__, default="info")


def reported_alert_text(event: Event) -> str:
    """'Airway obstruction reported (no grade: read as grade 3): emergency: secure the airway ...'."""
    kind = next((catalog().events[e.code] for e in event.evidence if e.code in catalog().events), None)
    grade = f"grade {event.grade}" if event.grade is not None else "no grade"
    if event.detail.get("rule_grade") is not None:
        grade += f"; dose rules read grade {event.detail['rule_grade']}"
    ask = f": {kind.ask}" if kind is not None and kind.ask else ""
    return f"{event.term} reported ({grade}){ask}."
