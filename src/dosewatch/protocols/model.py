"""Protocols as data: a YAML file validated by these pydantic models.

A protocol names its study drug and dose levels, the cycle (length, dosing days, ramp-up),
intra-patient escalation, prophylaxis, the monitoring schedule, dose-modification rules and the
DLT definition; every rule carries ``source``, a key into the protocol's ``sources``.
Unknown fields are errors (``extra="forbid"``) so a misspelt key is reported, not ignored.
"""
from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_days(spec: str | int | list[int | str]) -> tuple[int, ...]:
    """'1-21' -> 1..21; '1-7, 14, 21' -> ...; [1, 2, '5-6'] -> 1, 2, 5, 6. Days are 1-based."""
    items = spec if isinstance(spec, list) else [spec]
    days: list[int] = []
    for item in items:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            m = re.fullmatch(r"(-?\d+)\s*(?:-|to)\s*(-?\d+)", part)
            if m:
                lo, hi = int(m[1]), int(m[2])
                if hi < lo:
                    raise ValueError(f"day range {part!r} runs backwards")
                days.extend(range(lo, hi + 1))
            elif re.fullmatch(r"-?\d+", part):
                days.append(int(part))
            else:
                raise ValueError(f"cannot read days {part!r}: use '1-21', '1-7, 14' or a list")
    return tuple(sorted(set(days)))


class Days(Strict):
    """Days within a cycle (1-based), and the cycles they apply to (None = every cycle)."""

    days: tuple[int, ...]
    cycles: tuple[int, ...] | None = None

    @field_validator("days", mode="before")
    @classmethod
    def _days(cls, v):
        return parse_days(v)

    @field_validator("cycles", mode="before")
    @classmethod
    def _cycles(cls, v):
        return None if v in (None, "all") else parse_days(v)

    def applies(self, cycle: int, cycle_day: int) -> bool:
        return (self.cycles is None or cycle in self.cycles) and cycle_day in self.days


class DoseLevel(Strict):
    level: int
    dose: float = Field(gt=0)
    every_days: int = Field(1, ge=1, description="1 = daily; 2 = every other day")


class RampStep(Strict):
    """A ramp-up step: a dose given for a number of days (venetoclax: 20 mg for 7 days, ...)."""

    dose: float = Field(gt=0)
    days: int = Field(ge=1)


class Escalation(Strict):
    """Intra-patient escalation: one level up every ``every_days`` while tolerated."""

    every_days: int = Field(ge=1)
    steps: int = Field(1, ge=1, description="levels per escalation")
    max_level: int
    unless_grade_at_least: int = Field(3, ge=1, le=5, description="no escalation after a toxicity of this grade in the previous period")
    source: str


class StudyDrug(Strict):
    drug: str
    unit: str = "mg"
    levels: tuple[DoseLevel, ...]
    start_level: int
    cycle_days: int = Field(ge=1)
    dosing: Days
    ramp_up: tuple[RampStep, ...] = ()
    ramp_up_start_day: int = Field(1, ge=1, description="cycle-1 day on which the ramp-up begins")
    escalation: Escalation | None = None
    min_level: int | None = None
    source: str

    @field_validator("drug")
    @classmethod
    def _lower(cls, v: str) -> str:
        return v.lower()

    @model_validator(mode="after")
    def _levels(self):
        ids = [lv.level for lv in self.levels]
        if len(set(ids)) != len(ids):
            raise ValueError("levels: each level number must appear once")
        if self.start_level not in ids:
            raise ValueError(f"start_level: {self.start_level} is not one of the levels {ids}")
        if self.escalation and self.escalation.max_level not in ids:
            raise ValueError(f"escalation.max_level: {self.escalation.max_level} is not one of the levels {ids}")
        if self.min_level is not None and self.min_level not in ids:
            raise ValueError(f"min_level: {self.min_level} is not one of the levels {ids}")
        return self

    def dose_at(self, level: int) -> float:
        for lv in self.levels:
            if lv.level == level:
                return lv.dose
        raise KeyError(level)

    def every_days_at(self, level: int) -> int:
        return next(lv.every_days for lv in self.levels if lv.level == level)

    @property
    def level_ids(self) -> list[int]:
        return sorted(lv.level for lv in self.levels)


class ProphylaxisStep(Days):
    dose: float = Field(gt=0)


class Prophylaxis(Strict):
    """A drug given to prevent flare or TLS (steroids, allopurinol, hydration), with its own schedule.
    ``alternatives`` are drugs that satisfy the same requirement (prednisone for dexamethasone)."""

    id: str
    drug: str
    unit: str = "mg"
    role: Literal["steroid", "uricosuric", "hydration", "other"]
    steps: tuple[ProphylaxisStep, ...]
    alternatives: tuple[str, ...] = ()
    start_offset_days: int = Field(0, le=0, description="days before study day 1 that it starts (allopurinol: -3)")
    required: bool = True
    source: str


class Assessment(Strict):
    """What must be measured, and when: codes from the analyte catalog."""

    id: str
    codes: tuple[str, ...]
    schedule: tuple[Days, ...]
    times: tuple[str, ...] = ("any",)  # e.g. pre-dose, 6-8 h, 24 h (venetoclax)
    source: str


class Trigger(Strict):
    """An event that fires a rule: a term (as dosewatch reports it) at or above a grade; or, with
    ``category: non-hematologic``, any non-hematologic event that no rule names by its term (the labels'
    "other grade 3/4 toxicities"), reported clinical events included."""

    term: str | None = None
    category: Literal["non-hematologic"] | None = None
    criteria: str | None = None  # None: any criteria reporting this term
    min_grade: int | None = Field(None, ge=0, le=5)

    @model_validator(mode="after")
    def _term_or_category(self):
        if (self.term is None) == (self.category is None):
            raise ValueError("give either term or category")
        if self.category is not None and self.min_grade is None:
            raise ValueError("a category needs min_grade")
        return self


class DoseRule(Strict):
    id: str
    when: tuple[Trigger, ...]
    action: Literal["hold", "reduce", "discontinue", "continue", "hold-next-dose"]
    resume_when_grade_at_most: int | None = Field(None, ge=0, le=4)
    resume_level_change: int = Field(0, le=0)  # 0 = same level, -1 = next lower level
    severity: Literal["info", "warning", "urgent", "critical"] = "urgent"
    message: str
    source: str


class DltCriterion(Trigger):
    note: str | None = None


class Dlt(Strict):
    window_days: int = Field(ge=1)
    criteria: tuple[DltCriterion, ...]
    source: str


class Surveillance(Strict):
    ctcae: Literal["ctcae-5.0", "ctcae-4.03", "ctcae-6.0"] = "ctcae-5.0"
    # ANC, platelets and Hb: iwCLL 2018, or a CTCAE version (the same as ``ctcae`` unless it says otherwise)
    cytopenias: Literal["ctcae-5.0", "ctcae-4.03", "ctcae-6.0", "iwcll-2018"] = "iwcll-2018"
    tls: Literal["cairo-bishop-2004", "howard-2011"] = "cairo-bishop-2004"
    tls_reanchor_on_increase: bool = False
    source: str


class Protocol(Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]*$")
    version: int = Field(1, ge=1)
    title: str
    disease: str
    sources: dict[str, str]
    study_drug: StudyDrug
    surveillance: Surveillance
    prophylaxis: tuple[Prophylaxis, ...] = ()
    monitoring: tuple[Assessment, ...] = ()
    dose_rules: tuple[DoseRule, ...] = ()
    dlt: Dlt
    notes: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _sources_exist(self):
        """Every rule must name a source that the protocol lists."""
        missing = []

        def need(where: str, key: str) -> None:
            if key not in self.sources:
                missing.append(f"{where}.source: {key!r} is not in sources")

        need("study_drug", self.study_drug.source)
        if self.study_drug.escalation:
            need("study_drug.escalation", self.study_drug.escalation.source)
        need("surveillance", self.surveillance.source)
        for i, p in enumerate(self.prophylaxis):
            need(f"prophylaxis[{i}]", p.source)
        for i, a in enumerate(self.monitoring):
            need(f"monitoring[{i}]", a.source)
        for i, r in enumerate(self.dose_rules):
            need(f"dose_rules[{i}]", r.source)
        need("dlt", self.dlt.source)
        if missing:
            raise ValueError("; ".join(missing))
        return self
