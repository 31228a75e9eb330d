"""Schedule expansion: from a protocol and day 1, the plan for every calendar day.

The plan is what the protocol asks for: the study drug's dose (ramp-up, cycles, days off,
intra-patient escalation), each prophylaxis drug's dose, and the required assessments. Dose
changes decided along the way (hold, resume at a level, reduce, escalate, discontinue) are
applied in study-day order and change the plan from the day they take effect.

A plan depends on day 1 only through its dates, so each plan is built once per protocol, length,
changes and escalation, relative to day 1 (``offset``: days after day 1), and cached; the dated
plans add day 1 to the offsets as one column operation.
"""
from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from ..record import study_day
from .model import Protocol


@dataclass(frozen=True)
class DoseChange:
    """A change to the study drug's plan, effective from ``study_day`` (inclusive).

    kind: hold (no dose until a resume), resume (at ``level``), set-level (reduce or escalate to
    ``level``), discontinue (no dose from then on).
    """

    study_day: int
    kind: str
    level: int | None = None
    rule: str | None = None


PLAN_SCHEMA = {
    "item": pl.String,  # "study_drug" or the prophylaxis id
    "date": pl.Date, "study_day": pl.Int32, "cycle": pl.Int32, "cycle_day": pl.Int32, "drug": pl.String,
    "role": pl.String, "dose": pl.Float64, "unit": pl.String, "level": pl.Int32, "state": pl.String,
    "ramp_step": pl.Int32, "source": pl.String,
}
ASSESS_SCHEMA = {
    "date": pl.Date, "study_day": pl.Int32, "cycle": pl.Int32, "cycle_day": pl.Int32, "assessment": pl.String,
    "code": pl.String, "times": pl.String, "source": pl.String,
}


def cycle_of(day: int, cycle_days: int) -> tuple[int, int]:
    """(cycle, day within cycle) for a study day >= 1; days before day 1 are cycle 0 with negative days."""
    if day < 1:
        return 0, day
    return (day - 1) // cycle_days + 1, (day - 1) % cycle_days + 1


def date_of(day1: dt.date, day: int) -> dt.date:
    return day1 + dt.timedelta(days=day - 1 if day >= 1 else day)


_EPOCH = dt.date(1970, 1, 1)
_CACHE: OrderedDict[tuple, tuple[Protocol, pl.DataFrame]] = OrderedDict()
_CACHE_SIZE = 512


def _cached(build: Callable[..., pl.DataFrame], protocol: Protocol, *args) -> pl.DataFrame:
    """``build(protocol, *args)``, memoised by protocol id, version and arguments. The protocol is
    compared as well, so an edited protocol that kept its id and version is not served a stale plan."""
    key = (build.__name__, protocol.id, protocol.version, *args)
    hit = _CACHE.get(key)
    if hit is not None and (hit[0] is protocol or hit[0] == protocol):
        _CACHE.move_to_end(key)
        return hit[1]
    frame = build(protocol, *args)
    _CACHE[key] = (protocol, frame)
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return frame


def _offset(day: int) -> int:
    """Calendar days from day 1 to a study day (there is no day 0)."""
    return day - 1 if day >= 1 else day


def _dated(relative: pl.DataFrame, day1: dt.date, schema: dict) -> pl.DataFrame:
    date = (pl.col("offset") + (day1 - _EPOCH).days).cast(pl.Date).alias("date")
    return relative.with_columns(date).select(list(schema))


def relative_study_drug_plan(protocol: Protocol, n_days: int, changes: tuple[DoseChange, ...] | list[DoseChange] = (),
                             escalate: bool = True) -> pl.DataFrame:
    """``study_drug_plan`` without dates (``offset`` from day 1 instead), cached. A plan for fewer days
    is a prefix of a longer one with the same changes."""
    return _cached(_study_drug_rows, protocol, n_days, tuple(changes), escalate)


def relative_prophylaxis_plan(protocol: Protocol, n_days: int) -> pl.DataFrame:
    """``prophylaxis_plan`` without dates, cached; for fewer days, the rows with ``study_day <= n_days``."""
    return _cached(_prophylaxis_rows, protocol, n_days)


def relative_assessment_plan(protocol: Protocol, n_days: int) -> pl.DataFrame:
    """``assessment_plan`` without dates, cached; for fewer days, the rows with ``study_day <= n_days``."""
    return _cached(_assessment_rows, protocol, n_days)


def study_drug_plan(protocol: Protocol, day1: dt.date, n_days: int, changes: list[DoseChange] = (),
                    escalate: bool = True) -> pl.DataFrame:
    """The study drug's planned dose per study day 1..n_days (state: on, off-day, held, ramp-up,
    discontinued). ``escalate=False`` plans no intra-patient escalation (the monitor passes the
    escalations it actually allows as changes)."""
    return _dated(relative_study_drug_plan(protocol, n_days, changes, escalate), day1, PLAN_SCHEMA)


def prophylaxis_plan(protocol: Protocol, day1: dt.date, n_days: int) -> pl.DataFrame:
    """Planned prophylaxis doses (only the days a dose is due), from its start offset to n_days."""
    return _dated(relative_prophylaxis_plan(protocol, n_days), day1, PLAN_SCHEMA)


def assessment_plan(protocol: Protocol, day1: dt.date, n_days: int) -> pl.DataFrame:
    """Required assessments per day: one row per (day, assessment, code)."""
    return _dated(relative_assessment_plan(protocol, n_days), day1, ASSESS_SCHEMA)


def _relative_frame(rows: list[tuple], schema: dict) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"offset": pl.Int32, **{k: v for k, v in schema.items() if k != "date"}}, orient="row")


def _study_drug_rows(protocol: Protocol, n_days: int, changes: tuple[DoseChange, ...], escalate: bool) -> pl.DataFrame:
    sd = protocol.study_drug
    ramp_days = [(i + 1, step.dose) for i, step in enumerate(sd.ramp_up) for _ in range(step.days)]
    ramp_start = sd.ramp_up_start_day
    level = sd.start_level
    held = stopped = False
    pending = sorted(changes, key=lambda c: c.study_day)
    rows = []
    for day in range(1, n_days + 1):
        while pending and pending[0].study_day <= day:
            change = pending.pop(0)
            if change.kind == "hold":
                held = True
            elif change.kind == "resume":
                held = False
                level = change.level if change.level is not None else level
            elif change.kind == "set-level":
                level = change.level
            elif change.kind == "discontinue":
                stopped = True
        cycle, cday = cycle_of(day, sd.cycle_days)
        if escalate and sd.escalation and day > 1 and (day - 1) % sd.escalation.every_days == 0 and not (held or stopped):
            ids = sd.level_ids
            level = min(ids[min(ids.index(level) + sd.escalation.steps, len(ids) - 1)], sd.escalation.max_level)
        ramp_index = day - ramp_start
        ramp_step, dose = None, sd.dose_at(level)
        if 0 <= ramp_index < len(ramp_days):
            ramp_step, dose = ramp_days[ramp_index]
        if stopped:
            state, dose = "discontinued", 0.0
        elif held:
            state, dose = "held", 0.0
        elif ramp_index < 0 and ramp_days:
            state, dose = "before ramp-up", 0.0
        elif not sd.dosing.applies(cycle, cday):
            state, dose = "off-day", 0.0
        else:
            state = "ramp-up" if ramp_step else "on"
        if state == "on" and (day - 1) % sd.every_days_at(level):  # every-other-day levels
            state, dose = "off-day", 0.0
        rows.append((_offset(day), "study_drug", day, cycle, cday, sd.drug, "study", dose, sd.unit, level, state,
                     ramp_step, sd.source))
    return _relative_frame(rows, PLAN_SCHEMA)


def _prophylaxis_rows(protocol: Protocol, n_days: int) -> pl.DataFrame:
    sd = protocol.study_drug
    rows = []
    for p in protocol.prophylaxis:
        for day in range(p.start_offset_days or 1, n_days + 1):
            if day == 0:
                continue
            cycle, cday = cycle_of(day, sd.cycle_days)
            # Days before day 1 continue the first cycle's first step (allopurinol from day -3).
            look_cycle, look_day = (1, 1) if day < 1 else (cycle, cday)
            for step in p.steps:
                if step.applies(look_cycle, look_day):
                    rows.append((_offset(day), p.id, day, cycle, cday, p.drug, p.role, step.dose, p.unit, None,
                                 "planned", None, p.source))
                    break
    return _relative_frame(rows, PLAN_SCHEMA)


def _assessment_rows(protocol: Protocol, n_days: int) -> pl.DataFrame:
    sd = protocol.study_drug
    rows = []
    for day in range(1, n_days + 1):
        cycle, cday = cycle_of(day, sd.cycle_days)
        for a in protocol.monitoring:
            if any(s.applies(cycle, cday) for s in a.schedule):
                for code in a.codes:
                    rows.append((_offset(day), day, cycle, cday, a.id, code, ", ".join(a.times), a.source))
    return _relative_frame(rows, ASSESS_SCHEMA)


def expand(protocol: Protocol, day1: dt.date, n_days: int | None = None, changes: list[DoseChange] = (),
           escalate: bool = True) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(doses, assessments) planned for study days 1..n_days (default: two cycles)."""
    n_days = n_days or 2 * protocol.study_drug.cycle_days
    doses = pl.concat([study_drug_plan(protocol, day1, n_days, list(changes), escalate), prophylaxis_plan(protocol, day1, n_days)])
    return doses.sort("study_day", "role", "drug"), assessment_plan(protocol, day1, n_days)


__all__ = ["DoseChange", "expand", "study_drug_plan", "prophylaxis_plan", "assessment_plan", "relative_study_drug_plan",
           "relative_prophylaxis_plan", "relative_assessment_plan", "cycle_of", "date_of", "study_day"]
