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
from ..record import study_day, study_day_expr


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

    def differing(self, given: pl.DataFrame, started: dict[str, dt.date]) -> set[str]:
        """The patients with a day whose study-drug doses (summed) are not the unchanged plan's dose:
        they follow a plan of their own."""
        if not started or not given.height:
            return set()
        day1 = pl.DataFrame({"patient_id": list(started), "day1": list(started.values())},
                            schema={"patient_id": pl.String, "day1": pl.Date})
        per_day = (
            given.group_by("patient_id", "date").agg(pl.col("dose").sum())
            .join(day1, on="patient_id", how="inner")
            .with_columns(study_day_expr("date", "day1").alias("study_day"))
            .join(self.base.select("study_day", pl.col("dose").alias("planned")), on="study_day", how="left")
            .filter(pl.col("planned").is_null() | ((pl.col("dose") - pl.col("planned")).abs() > 1e-9))
        )
        return set(per_day["patient_id"].to_list())

    def study_drug(self, changes: list[DoseChange]) -> dict[int, tuple[str, float, int]]:
        """Study day -> (state, dose, level) for days 1..n_max + 1, with these holds and resumes."""
        if not changes:
            return self.base_days
        return _by_day(relative_study_drug_plan(self.protocol, self.n_max + 1, tuple(changes), self.escalate))


def _by_day(plan: pl.DataFrame) -> dict[int, tuple[str, float, int]]:
    return {d: (s, x, lv) for d, s, x, lv in plan.select("study_day", "state", "dose", "level").iter_rows()}


def level_for_dose(sd, dose: float) -> int:
    """The level whose dose is the given one (or the highest level not above it)."""
    fitting = [lv for lv in sd.levels if lv.dose <= dose + 1e-9]
    return max(fitting, key=lambda lv: lv.dose).level if fitting else min(sd.level_ids)
