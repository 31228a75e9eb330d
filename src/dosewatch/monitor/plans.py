"""The protocol's plans relative to day 1, built once per evaluation and read by study day."""
from __future__ import annotations

import datetime as dt

import polars as pl

from ..protocols.model import Protocol
from ..protocols.schedule import (
    DoseChange,
    relative_assessment_plan,
    relative_prophylaxis_plan,
    relative_study_drug_plan,
)
from ..record import study_day


class Plans:
    """The protocol's plans relative to day 1, built once for the longest follow-up and read by study
    day: the study drug (per patient only when their holds and resumes change it), prophylaxis and
    assessments."""

    def __init__(self, protocol: Protocol, as_of: dt.date, started: dict[str, dt.date]):
        self.protocol, self.as_of = protocol, as_of
        self.escalate = protocol.study_drug.escalation is not None
        self.n_max = max((max(study_day(as_of, d1), 1) for d1 in started.values()), default=1)
        self.base = relative_study_drug_plan(protocol, self.n_max + 1, (), self.escalate)
        self.base_days = _by_day(self.base)
        self.prophylaxis = relative_prophylaxis_plan(protocol, self.n_max)
        self.assessments = relative_assessment_plan(protocol, self.n_max)
        self.proph_on: dict[int, list[dict]] = {}
        for day, drug, dose, unit in self.prophylaxis.select("study_day", "drug", "dose", "unit").iter_rows():
            self.proph_on.setdefault(day, []).append({"drug": drug, "dose": dose, "unit": unit})
        self.codes_on: dict[int, list[str]] = {}
        for day, code in self.assessments.select("study_day", "code").iter_rows():
            self.codes_on.setdefault(day, []).append(code)

    def study_drug(self, changes: list[DoseChange]) -> dict[int, tuple[str, float, int]]:
        """Study day -> (state, dose, level) for days 1..n_max + 1, with these holds and resumes."""
        if not changes:
            return self.base_days
        return _by_day(relative_study_drug_plan(self.protocol, self.n_max + 1, tuple(changes), self.escalate))


def _by_day(plan: pl.DataFrame) -> dict[int, tuple[str, float, int]]:
    return {d: (s, x, lv) for d, s, x, lv in plan.select("study_day", "state", "dose", "level").iter_rows()}
