"""The daily monitor: ``evaluate(record, protocol, as_of)`` -> one Assessment per patient.

It reads only what was known on ``as_of`` (data dated after it are ignored), runs the criteria
engine with the protocol's surveillance settings, then applies the protocol: dose-modification
rules turn events into dose actions, the planned schedule is compared with what was given and
measured (adherence), DLTs are judged inside the DLT window, and each patient gets a state.
Every alert and action names the rule that raised it.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from ..check import CheckSettings, check_cohort
from ..criteria.terms import is_hematologic, syndrome_named
from ..events import Event, Evidence
from ..protocols.model import DoseRule, Protocol, Trigger
from ..protocols.schedule import DoseChange, cycle_of, date_of
from ..record import Cohort, study_day
from .adherence import Finding, adherence_findings, dose_findings, follow_given
from .clinical import SEVERITY_ORDER, floor_severity, reported_alert_text, rule_grade, worst
from .history import followup, known_on, with_history
from .plans import Plans, level_for_dose


@dataclass(frozen=True)
class Alert:
    date: dt.date
    study_day: int | None
    severity: str  # critical | urgent | warning | info
    message: str
    rule: str  # "<protocol id>:<rule id>" or "<criteria id>" or "adherence:<kind>"
    evidence: tuple[Evidence, ...] = ()  # dated on or before ``known_on``
    followup: tuple[Evidence, ...] = ()  # later values of the same episode
    # The first day the record supports the alert: ``date``, except for an adherence finding about a
    # day that is known later (a day without a record once it has passed).
    known: dt.date | None = None

    @property
    def known_on(self) -> dt.date:
        return self.known or self.date

    def as_dict(self) -> dict[str, Any]:
        return {"study_day": self.study_day, "date": self.date.isoformat(), "known_on": self.known_on.isoformat(),
                "severity": self.severity, "message": self.message, "rule": self.rule,
                "evidence": [e.as_dict() for e in self.evidence], "followup": [e.as_dict() for e in self.followup]}


@dataclass(frozen=True)
class DoseAction:
    date: dt.date
    study_day: int
    drug: str
    action: str  # hold | hold-next-dose | resume | reduce | escalate | discontinue | continue
    level: int | None
    dose: float | None
    rule: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"study_day": self.study_day, "date": self.date.isoformat(), "drug": self.drug, "action": self.action,
                "level": self.level, "dose": self.dose, "rule": self.rule, "reason": self.reason}


@dataclass
class Assessment:
    patient_id: str
    protocol: str
    protocol_version: int
    as_of: dt.date
    day1: dt.date | None
    state: str  # not started | on drug | off drug week | held | off study | dead
    level: int | None
    events: list[Event] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    dose_actions: list[DoseAction] = field(default_factory=list)
    adherence: list[Finding] = field(default_factory=list)
    dlt: dict[str, Any] = field(default_factory=dict)
    today: dict[str, Any] = field(default_factory=dict)
    stopped_on: dt.date | None = None  # death, or the day the drug was discontinued (off study)

    def as_dict(self) -> dict[str, Any]:
        sd = study_day(self.stopped_on or self.as_of, self.day1) if self.day1 else None
        return {
            "patient_id": self.patient_id,
            "protocol": self.protocol,
            "protocol_version": self.protocol_version,
            "as_of": self.as_of.isoformat(),
            "study_day": sd,
            "day1": self.day1.isoformat() if self.day1 else None,
            "state": self.state,
            "level": self.level,
            "events": [e.as_dict(self.day1) for e in self.events],
            "alerts": [a.as_dict() for a in self.alerts],
            "dose_actions": [a.as_dict() for a in self.dose_actions],
            "adherence": [f.as_dict() for f in self.adherence],
            "dlt": self.dlt,
            "today": self.today,
        }


def settings_for(protocol: Protocol) -> CheckSettings:
    s = protocol.surveillance
    return CheckSettings(study_drug=protocol.study_drug.drug, ctcae=s.ctcae, cytopenias=s.cytopenias, tls_criteria=s.tls)


def matches(trigger: Trigger | Any, event: Event) -> bool:
    if trigger.category == "non-hematologic":
        if is_hematologic(event.term):
            return False
    elif trigger.term.lower() != event.term.lower():
        return False
    if trigger.criteria and trigger.criteria != event.criteria:
        return False
    grade = rule_grade(event)
    if trigger.min_grade is not None and (grade is None or grade < trigger.min_grade):
        return False
    return True


def dose_increase_dates(doses: pl.DataFrame, drug: str) -> dict[str, list[dt.date]]:
    """Per patient: the first dose date and every date the given dose rose above the previous one
    (TLS window re-anchoring at each increase, criteria.md decision 7)."""
    given = (
        doses.lazy().filter((pl.col("drug") == drug) & (pl.col("status") == "completed"))
        .group_by("patient_id", "date").agg(pl.col("dose").max())
        .sort("patient_id", "date")
        .with_columns(pl.col("dose").shift(1).over("patient_id").alias("prev"))
        .filter(pl.col("prev").is_null() | (pl.col("dose") > pl.col("prev")))
        .collect()
    )
    out: dict[str, list[dt.date]] = {}
    for pid, date in given.select("patient_id", "date").iter_rows():
        out.setdefault(pid, []).append(date)
    return out


def evaluate(record: Cohort, protocol: Protocol, as_of: dt.date | None = None) -> list[Assessment]:
    """Assess every patient of ``record`` under ``protocol`` as of the end of ``as_of`` (default: the
    last date in the record).

    The per-day work (the plans, prophylaxis taken, labs measured, doses above the plan) is done on
    whole columns for all patients at once; only patients with an event that a dose rule covers get
    their own plan (with their holds and resumes) and a per-dose check in Python."""
    if as_of is None:
        dates = [t["date"].max() for t in (record.observations, record.doses, record.events) if t.height]
        as_of = max(dates) if dates else dt.date.today()
    cohort = record.known_on(as_of)
    sd = protocol.study_drug
    settings = settings_for(protocol)
    if protocol.surveillance.tls_reanchor_on_increase:
        settings.tls_anchors = dose_increase_dates(cohort.doses, sd.drug)
    # Every grade an event reached, dated the first day the data supported it (monitor/history.py).
    latest = check_cohort(cohort, settings)
    results = with_history(cohort, settings, latest)
    latest_of = {r.patient_id: r.events for r in latest}
    deceased = dict(zip(cohort.patients["patient_id"].to_list(), cohort.patients["deceased_date"].to_list(), strict=True))
    started = {r.patient_id: r.day1 for r in results if r.day1 is not None}
    given = (
        cohort.doses.filter((pl.col("drug") == sd.drug) & (pl.col("status") == "completed"))
        .select("patient_id", "time", "date", "dose", "dose_id")
        .sort("patient_id", "time", maintain_order=True)
    )
    # Dose rules: only patients with an event that a rule covers can have actions; they, and the patients
    # whose doses differ from the unchanged plan, get a plan of their own (holds, resumes, the doses given).
    rules_for = _rule_matcher(protocol)
    ruled = {r.patient_id for r in results if r.day1 is not None and any(rules_for(e) for e in r.events)}
    plans = Plans(protocol, as_of, started)
    own = ruled | plans.differing(given, started)
    given_by: dict[str, list[tuple[dt.date, float, str]]] = {}
    for pid, date, dose, dose_id in given.filter(pl.col("patient_id").is_in(list(own))).select(
            "patient_id", "date", "dose", "dose_id").iter_rows():
        given_by.setdefault(pid, []).append((date, dose, dose_id))
    actions: dict[str, list[DoseAction]] = {}
    own_plan: dict[str, dict[int, tuple[str, float, int]]] = {}
    dose_checks: dict[str, list[Finding]] = {}
    for r in results:
        if r.patient_id not in own:
            continue
        changes: list[DoseChange] = []
        if r.patient_id in ruled:
            actions[r.patient_id], changes = _dose_actions(protocol, r.day1, r.events, given_by.get(r.patient_id, []),
                                                           rules_for)
        changes, differs = follow_given(protocol, plans, r.day1, changes, given_by.get(r.patient_id, []))
        own_plan[r.patient_id] = plan = plans.study_drug(changes)
        dose_checks[r.patient_id] = dose_findings(protocol, r.day1, plan, given_by.get(r.patient_id, [])) + differs
    # Death, or going off study (the day the drug was discontinued), ends what is required and counted.
    stop = {
        pid: deceased.get(pid) or min((a.date for a in actions.get(pid, []) if a.action == "discontinue"), default=None)
        for pid in started
    }
    findings = adherence_findings(protocol, as_of, cohort.doses, cohort.observations, given, started, stop,
                                  own_plan, plans)
    out = []
    for r in results:
        adherence = findings.get(r.patient_id, [])
        if r.patient_id in dose_checks:
            adherence = sorted(adherence + dose_checks[r.patient_id], key=lambda f: (f.date, f.kind))
        out.append(_assess_patient(protocol, as_of, r.patient_id, r.day1, r.events, deceased.get(r.patient_id),
                                   stop.get(r.patient_id), actions.get(r.patient_id, []),
                                   own_plan.get(r.patient_id, plans.base_days), adherence, plans, rules_for,
                                   latest_of.get(r.patient_id, [])))
    return out


def _rule_matcher(protocol: Protocol) -> Callable[[Event], list[DoseRule]]:
    """event -> the dose rules that cover it, remembered per (term, criteria, grade), all a rule reads.
    A rule on a category (grade >= 3 non-hematologic) covers only events no rule names by term: the
    labels' "other toxicities"."""
    memo: dict[tuple, list[DoseRule]] = {}
    named_terms = {t.term.lower() for r in protocol.dose_rules for t in r.when if t.term is not None}

    def rules_for(event: Event) -> list[DoseRule]:
        key = (event.term, event.criteria, rule_grade(event))
        if key not in memo:
            named = [r for r in protocol.dose_rules if any(t.term is not None and matches(t, event) for t in r.when)]
            memo[key] = named or ([] if syndrome_named(event.term, named_terms) else [
                r for r in protocol.dose_rules if any(t.category is not None and matches(t, event) for t in r.when)])
        return memo[key]

    return rules_for


def _assess_patient(protocol: Protocol, as_of: dt.date, pid: str, day1: dt.date | None, events: list[Event],
                    deceased: dt.date | None, stop: dt.date | None, actions: list[DoseAction],
                    plan: dict[int, tuple[str, float, int]],
                    adherence: list[Finding], plans: Plans, rules_for: Callable[[Event], list[DoseRule]],
                    latest: list[Event]) -> Assessment:
    sd = protocol.study_drug
    assessment = Assessment(pid, protocol.id, protocol.version, as_of, day1, "not started", None, events=events)
    if day1 is None:
        if deceased:
            assessment.state = "dead"
        return assessment
    # The study day stops counting on the day of death or of going off study.
    assessment.stopped_on = stop if stop is not None and stop <= as_of else None
    n_days = max(study_day(assessment.stopped_on or as_of, day1), 1)
    assessment.dose_actions = actions
    assessment.alerts = _alerts(protocol, day1, events, rules_for, latest)
    assessment.adherence = adherence
    for f in adherence:
        sev = "urgent" if f.kind in ("prophylaxis-not-done", "dose-while-held", "dose-above-plan") else "warning"
        assessment.alerts.append(Alert(f.date, f.study_day, sev, f.message, f"adherence:{f.kind}",
                                       tuple(Evidence(r, f.kind, None, None, f.date) for r in f.refs), known=f.known))
    assessment.alerts.sort(key=lambda a: (a.date, SEVERITY_ORDER[a.severity], a.rule))
    assessment.dlt = _dlt(protocol, day1, as_of, events)
    today = plan.get(n_days)
    assessment.level = today[2] if today else sd.start_level
    assessment.state = _state(today, actions, deceased, as_of)
    assessment.today = _today(protocol, today, plans, n_days)
    if assessment.stopped_on:  # nothing is planned or due once the patient died or went off study
        assessment.today.update(study_drug={**assessment.today["study_drug"], "dose": None, "state": assessment.state},
                                prophylaxis=[], assessments_due=[])
    return assessment


def _dose_actions(protocol: Protocol, day1: dt.date, events: list[Event], given: list[tuple[dt.date, float, str]],
                  rules_for: Callable[[Event], list[DoseRule]]) -> tuple[list[DoseAction], list[DoseChange]]:
    """Apply the dose rules to events in onset order. A hold lasts until the record shows the drug
    given again (the resume is then checked against the rule's level); the first matching rule with
    the strongest action wins for each event."""
    sd = protocol.study_drug
    strength = {"discontinue": 0, "hold": 1, "hold-next-dose": 2, "reduce": 3, "continue": 4}
    actions: list[DoseAction] = []
    changes: list[DoseChange] = []
    given_days = [(study_day(d, day1), dose) for d, dose, _ in given]
    level = sd.start_level
    # The hold in force: (its day, the day the record shows the drug resumed or None while it is not).
    # A resume is looked up in the record, so an event between the hold and the resume is still held.
    hold: tuple[int, int | None] | None = None
    stopped = False
    fired = []
    for event in events:
        rules = rules_for(event)
        if rules:
            rule = min(rules, key=lambda r: strength[r.action])
            fired.append((known_on(event), event, rule))
    # On one day: rules naming the event's term before "other toxicity" rules, the strongest action, then
    # the most severe event first, so that a hold cites the rule whose event caused it.
    for when, event, rule in sorted(fired, key=lambda f: (
            f[0], all(t.term is None for t in f[2].when), strength[f[2].action],
            SEVERITY_ORDER[_severity(f[2], f[1])], f[1].term)):
        if stopped:
            break
        day = study_day(when, day1)
        if day < 1:
            continue
        # A hold already in force is not repeated for the same rule.
        in_force = hold is not None and (hold[1] is None or day < hold[1])
        if in_force and rule.action in ("hold", "hold-next-dose", "continue"):
            continue
        # The resume after a previous hold: the first dose given after it.
        level = _level_at(sd, given_days, day, level)
        graded = _grade_read(event)
        reason = f"{event.term}{f' grade {graded}' if graded else ''} ({event.criteria}) on day {day}"
        rule_id = f"{protocol.id}:{rule.id}"
        actions.append(DoseAction(when, day, sd.drug, rule.action, level, sd.dose_at(level), rule_id, reason))
        if rule.action in ("hold", "hold-next-dose"):
            # The alert fires on the onset day; the hold applies from the next dose (labs come back after
            # the morning dose). Doses given on without a break are given while held, not a resume.
            changes.append(DoseChange(day + 1, "hold", rule=rule_id))
            hold = (day, None)
            resumed = _resumption(given_days, day)
            if resumed:
                rday, rdose = resumed
                target = _shift_level(sd, level, rule.resume_level_change)
                new_level = level_for_dose(sd, rdose)
                changes.append(DoseChange(rday, "resume", level=new_level, rule=rule_id))
                actions.append(DoseAction(date_of(day1, rday), rday, sd.drug, "resume", new_level, rdose, rule_id,
                                          f"resumed at {rdose:g} {sd.unit}; rule allows level {target} "
                                          f"({sd.dose_at(target):g} {sd.unit}) once resolved to grade <= "
                                          f"{rule.resume_when_grade_at_most}"))
                level, hold = new_level, (day, rday)
        elif rule.action == "discontinue":
            changes.append(DoseChange(day + 1, "discontinue", rule=rule_id))
            stopped = True
    return actions, changes


def _resumption(given_days: list[tuple[int, float]], hold_day: int) -> tuple[int, float] | None:
    """The first dose after a real interruption: a dose after ``hold_day`` with at least one day
    without a dose since the hold took effect."""
    previous = hold_day
    for d, dose in given_days:
        if d <= hold_day:
            continue
        if d > previous + 1:
            return d, dose
        previous = d
    return None


def _level_at(sd, given_days: list[tuple[int, float]], day: int, default: int) -> int:
    before = [dose for d, dose in given_days if d <= day]
    return level_for_dose(sd, before[-1]) if before else default


def _shift_level(sd, level: int, change: int) -> int:
    ids = sd.level_ids
    i = max(ids.index(level) + change, 0)
    floor = ids.index(sd.min_level) if sd.min_level is not None else 0
    return ids[max(i, floor)]


def _alerts(protocol: Protocol, day1: dt.date, events: list[Event], rules_for: Callable[[Event], list[DoseRule]],
            latest: list[Event]) -> list[Alert]:
    """An alert for every event that a dose rule covers (with the rule's severity, raised to that of a
    clinical event it rests on, and the rule's message); for every reported clinical event that acts
    on its own (at its catalog severity); and for every other event of grade >= 3 or without a grade
    that is not a reported record. Each is dated the day its event was known."""
    alerts = []
    for event in events:
        when = known_on(event)
        day = study_day(when, day1)
        later = followup(event, latest)
        rules = rules_for(event)
        notes = [e.note for e in event.evidence if e.note and "pseudohyperkalemia" in e.note.lower()]
        suffix = f" Note: {notes[0]}." if notes else ""
        floor = floor_severity(event, when)
        if rules:
            rule = min(rules, key=lambda r: (SEVERITY_ORDER[_severity(r, event)], SEVERITY_ORDER[r.severity]))
            lead = f"{reported_alert_text(event)} " if event.criteria == "reported" else ""
            # an "other toxicity" rule names the criteria too: the grade's source is shown beside the rule's
            graded = f"{_grade(event)}, {event.criteria}" if all(t.term is None for t in rule.when) else _grade(event)
            alerts.append(Alert(when, day, _severity(rule, event), f"{lead}{event.term} ({graded}): {rule.message}{suffix}",
                                f"{protocol.id}:{rule.id}", event.evidence, later))
        elif event.criteria == "reported" and floor:
            alerts.append(Alert(when, day, floor, reported_alert_text(event), "record", event.evidence, later))
        elif event.criteria != "reported" and (event.grade is None or event.grade >= 3):
            alerts.append(Alert(when, day, worst("urgent", floor), f"{event.term} ({_grade(event)}, {event.criteria}).{suffix}",
                                event.criteria, event.evidence, later))
        elif event.criteria == "reported":
            alerts.append(Alert(when, day, "info", f"Reported: {event.term}.", "record", event.evidence, later))
    return alerts


def _severity(rule: DoseRule, event: Event) -> str:
    """A rule's severity, raised to that of a clinical event the event is or rests on by the day it was
    known."""
    return worst(rule.severity, floor_severity(event, known_on(event)))


def _grade_read(event: Event) -> str:
    grade = rule_grade(event)
    if grade is None:
        return ""  # a syndrome without grades (laboratory TLS): the reason names it alone
    return f"{grade} (none reported)" if event.grade is None else str(grade)


def _grade(event: Event) -> str:
    if event.grade is None and rule_grade(event) is not None:
        return f"grade {rule_grade(event)}, none reported"
    return f"grade {event.grade}" if event.grade is not None else "present"


def _dlt(protocol: Protocol, day1: dt.date, as_of: dt.date, events: list[Event]) -> dict[str, Any]:
    window_end = day1 + dt.timedelta(days=protocol.dlt.window_days - 1)
    hits = [
        e for e in events
        if day1 <= e.onset <= window_end and any(matches(c, e) for c in protocol.dlt.criteria)
    ]
    base = {"window_days": protocol.dlt.window_days, "window_end": window_end.isoformat(), "rule": f"{protocol.id}:dlt"}
    if hits:
        # The earliest DLT; on the same day, the one the protocol lists first.
        rank = {id(e): min(i for i, c in enumerate(protocol.dlt.criteria) if matches(c, e)) for e in hits}
        first = min(hits, key=lambda e: (e.onset, rank[id(e)], known_on(e)))
        return {**base, "status": "DLT", "study_day": study_day(first.onset, day1), "date": first.onset.isoformat(),
                "event": first.term, "grade": first.grade, "criteria": first.criteria,
                "followup_days": min(study_day(as_of, day1), protocol.dlt.window_days)}
    if as_of < window_end:
        return {**base, "status": "in window", "days_left": (window_end - as_of).days,
                "followup_days": study_day(as_of, day1)}
    return {**base, "status": "no DLT", "followup_days": protocol.dlt.window_days}


def _state(today: tuple[str, float, int] | None, actions: list[DoseAction], deceased: dt.date | None, as_of: dt.date) -> str:
    if deceased and deceased <= as_of:
        return "dead"
    if any(a.action == "discontinue" for a in actions):
        return "off study"
    if today is None:
        return "on drug"
    return {"held": "held", "off-day": "off drug week", "discontinued": "off study"}.get(today[0], "on drug")


def _today(protocol: Protocol, today: tuple[str, float, int] | None, plans: Plans, n_days: int) -> dict[str, Any]:
    cycle, cday = cycle_of(n_days, protocol.study_drug.cycle_days)
    return {
        "cycle": cycle,
        "cycle_day": cday,
        "study_drug": {"drug": protocol.study_drug.drug, "dose": today[1] if today else None,
                       "unit": protocol.study_drug.unit, "state": today[0] if today else None},
        "prophylaxis": [dict(d) for d in plans.proph_on.get(n_days, [])],
        "assessments_due": sorted(set(plans.codes_on.get(n_days, []))),
    }
