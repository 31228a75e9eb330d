"""Detected events: what a criterion found, when it began, and the evidence it used."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Evidence:
    """One value an event rests on: the observation (or dose, or clinical event) and what it showed."""

    ref: str  # obs_id / dose_id / event_id
    code: str  # analyte or event code
    value: float | None
    unit: str | None
    date: dt.date
    note: str | None = None  # e.g. "25% rise from baseline 4.1", "possible pseudohyperkalemia (WBC > 100)"

    def as_dict(self) -> dict[str, Any]:
        out = {"id": self.ref, "code": self.code, "value": self.value, "unit": self.unit, "date": self.date.isoformat()}
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class Event:
    """A graded finding for one patient.

    ``term`` is the CTCAE v5.0 term where one exists, else the criterion's name (DESIGN.md);
    ``criteria`` the criteria id (ctcae-5.0, iwcll-2018, cairo-bishop-2004, howard-2011, kdigo-2012, ...).
    """

    patient_id: str
    term: str
    criteria: str
    grade: int | None
    onset: dt.date
    evidence: tuple[Evidence, ...] = ()
    rule: str | None = None  # the rule id inside the criteria (e.g. "LTLS", "stage-2")
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self, day1: dt.date | None = None) -> dict[str, Any]:
        from .record import study_day

        out: dict[str, Any] = {
            "term": self.term,
            "criteria": self.criteria,
            "grade": self.grade,
            "onset": self.onset.isoformat(),
            "study_day": study_day(self.onset, day1) if day1 else None,
            "evidence": [e.as_dict() for e in self.evidence],
        }
        if self.rule:
            out["rule"] = self.rule
        if self.detail:
            out["detail"] = self.detail
        return out
