"""The daily monitor: ``evaluate(record, protocol, as_of)`` -> one Assessment per patient.

It reads only what was known on ``as_of`` (data dated after it are ignored), runs the criteria
engine with the protocol's surveillance settings, then applies the protocol: dose-modification
rules turn events into dose actions, the planned schedule is compared with what was given and
measured (adherence), DLTs are judged inside the DLT window, and each patient gets a state.
Every alert and action names the rule that raised it.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from ..check import CheckSettings, check_cohort
from ..events import Event, Evidence
from ..protocols.model import DoseRule, Protocol, Trigger
from ..protocols.schedule import DoseChange, assessment_plan, cycle_of, date_of, prophylaxis_plan, study_drug_plan
from ..record import Cohort, study_day

SEVERITY_ORDER = {"critical": 0, "urgent": 1, "warning": 2, "info": 3}


@dataclass(frozen=True)
class Alert:
    date: dt.date
    study_day: int | None
    severity: str  # critical | urgent | warning | info
    message: str
    rule: str  # "<protocol id>:<rule id>" or "<criteria id>" or "adherence:<kind>"
    evidence: tuple[Evidence, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"study_day": self.study_day, "date": self.date.isoformat(), "severity": self.severity,
                "message": self.message, "rule": self.rule, "evidence": [e.as_dict() for e in self.evidence]}


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


@dataclass(frozen=True)
class Finding:
    """An adherence finding: a missed prophylaxis dose, a dose given while held, a missing lab."""

    date: dt.date
    study_day: int | None
    kind: str  # prophylaxis-not-done | prophylaxis-missing | dose-while-held | dose-above-plan | lab-missing
    message: str
    refs: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"study_day": self.study_day, "date": self.date.isoformat(), "kind": self.kind, "message": self.message,
                "refs": list(self.refs)}


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

    def as_dict(self) -> dict[str, Any]:
        sd = study_day(self.as_of, self.day1) if self.day1 else None
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
    if trigger.term.lower() != event.term.lower():
        return False
    if trigger.criteria and trigger.criteria != event.criteria:
        return False
    if trigger.min_grade is not None and (event.grade is None or event.grade < trigger.min_grade):
        return False
    return True


def supported_on(event: Event, rule: DoseRule | None = None) -> dt.date:
    """The first day the data supported this rule firing on this event: the onset, or, when the rule
    needs a grade, the day of the latest evidence behind that grade (a flare that became grade 4 when the
    airway closed on a later day fires its grade-4 rule that day)."""
    if rule is None or all(t.min_grade is None for t in rule.when) or not event.evidence:
        return event.onset
    return max(event.onset, max(e.date for e in event.evidence))


def dose_increase_dates(doses: pl.DataFrame, drug: str) -> dict[str, list[dt.date]]:
    """Per patient: the first dose date and every date the given dose rose above the previous one
    (TLS window re-anchoring at each increase, criteria.md decision 7)."""
    given = (
        doses.filter((pl.col("drug") == drug) & (pl.col("status") == "completed"))
        .group_by("patient_id", "date").agg(pl.col("dose").max())
        .sort("patient_id", "date")
        .with_columns(pl.col("dose").shift(1).over("patient_id").alias("prev"))
        .filter(pl.col("prev").is_null() | (pl.col("dose") > pl.col("prev")))
    )
    out: dict[str, list[dt.date]] = {}
    for pid, date in given.select("patient_id", "date").iter_rows():
        out.setdefault(pid, []).append(date)
    return out


def evaluate(record: Cohort, protocol: Protocol, as_of: dt.date | None = None) -> list[Assessment]:
    """Assess every patient of ``record`` under ``protocol`` as of the end of ``as_of`` (default: the
    last date in the record)."""
    if as_of is None:
        dates = [t["date"].max() for t in (record.observations, record.doses, record.events) if t.height]
        as_of = max(dates) if dates else dt.date.today()
    cohort = record.known_on(as_of)
    settings = settings_for(protocol)
    if protocol.surveillance.tls_reanchor_on_increase:
        settings.tls_anchors = dose_increase_dates(cohort.doses, protocol.study_drug.drug)
    results = check_cohort(cohort, settings)
    deceased = dict(zip(cohort.patients["patient_id"].to_list(), cohort.patients["deceased_date"].to_list(), strict=True))
    lab_days = _lab_days(cohort.observations)
    return [
        _assess_patient(cohort, protocol, as_of, r.patient_id, r.day1, r.events, deceased.get(r.patient_id), lab_days)
        for r in results
    ]


def _lab_days(obs: pl.DataFrame) -> set[tuple[str, str, dt.date]]:
    return set(obs.select("patient_id", "code", "date").unique().iter_rows())


def _assess_patient(cohort: Cohort, protocol: Protocol, as_of: dt.date, pid: str, day1: dt.date | None,
                    events: list[Event], deceased: dt.date | None, lab_days: set) -> Assessment:
    sd = protocol.study_drug
    assessment = Assessment(pid, protocol.id, protocol.version, as_of, day1, "not started", None, events=events)
    if day1 is None:
        if deceased:
            assessment.state = "dead"
        return assessment
    doses = cohort.doses.filter(pl.col("patient_id") == pid)
    given = doses.filter((pl.col("drug") == sd.drug) & (pl.col("status") == "completed")).sort("time")
    n_days = max(study_day(as_of, day1), 1)

    actions, changes = _dose_actions(protocol, day1, events, given)
    assessment.dose_actions = actions
    plan = study_drug_plan(protocol, day1, n_days + 1, changes, escalate=sd.escalation is not None)
    assessment.alerts = _alerts(protocol, day1, events, actions)
    stopped = min((a.date for a in actions if a.action == "discontinue"), default=None)
    assessment.adherence = _adherence(protocol, day1, as_of, pid, doses, given, plan, lab_days, deceased or stopped)
    for f in assessment.adherence:
        sev = "urgent" if f.kind in ("prophylaxis-not-done", "dose-while-held", "dose-above-plan") else "warning"
        assessment.alerts.append(Alert(f.date, f.study_day, sev, f.message, f"adherence:{f.kind}",
                                       tuple(Evidence(r, f.kind, None, None, f.date) for r in f.refs)))
    assessment.alerts.sort(key=lambda a: (a.date, SEVERITY_ORDER[a.severity], a.rule))
    assessment.dlt = _dlt(protocol, day1, as_of, events)
    today = plan.filter(pl.col("study_day") == n_days)
    level = today["level"][0] if today.height else sd.start_level
    assessment.level = level
    assessment.state = _state(today, actions, deceased, as_of)
    assessment.today = _today(protocol, day1, as_of, plan, n_days)
    return assessment


def _dose_actions(protocol: Protocol, day1: dt.date, events: list[Event], given: pl.DataFrame
                  ) -> tuple[list[DoseAction], list[DoseChange]]:
    """Apply the dose rules to events in onset order. A hold lasts until the record shows the drug
    given again (the resume is then checked against the rule's level); the first matching rule with
    the strongest action wins for each event."""
    sd = protocol.study_drug
    strength = {"discontinue": 0, "hold": 1, "hold-next-dose": 2, "reduce": 3, "continue": 4}
    actions: list[DoseAction] = []
    changes: list[DoseChange] = []
    given_days = [(study_day(d, day1), dose) for d, dose in given.select("date", "dose").iter_rows()]
    level = sd.start_level
    held_since: tuple[int, DoseRule] | None = None
    stopped = False
    fired = []
    for event in events:
        rules = [r for r in protocol.dose_rules if any(matches(t, event) for t in r.when)]
        if rules:
            rule = min(rules, key=lambda r: strength[r.action])
            fired.append((supported_on(event, rule), event, rule))
    for when, event, rule in sorted(fired, key=lambda f: (f[0], f[1].term)):
        if stopped:
            break
        day = study_day(when, day1)
        if day < 1:
            continue
        # A hold already in force is not repeated for the same rule.
        if held_since and rule.action in ("hold", "hold-next-dose", "continue"):
            continue
        # The resume after a previous hold: the first dose given after it.
        level = _level_at(sd, given_days, day, level)
        reason = f"{event.term} grade {event.grade if event.grade is not None else '-'} ({event.criteria}) on day {day}"
        rule_id = f"{protocol.id}:{rule.id}"
        actions.append(DoseAction(when, day, sd.drug, rule.action, level, sd.dose_at(level), rule_id, reason))
        if rule.action in ("hold", "hold-next-dose"):
            # The alert fires on the onset day; the hold applies from the next dose (labs come back after
            # the morning dose). Doses given on without a break are given while held, not a resume.
            changes.append(DoseChange(day + 1, "hold", rule=rule_id))
            held_since = (day, rule)
            resumed = _resumption(given_days, day)
            if resumed:
                rday, rdose = resumed
                target = _shift_level(sd, level, rule.resume_level_change)
                new_level = _level_for_dose(sd, rdose)
                changes.append(DoseChange(rday, "resume", level=new_level, rule=rule_id))
                actions.append(DoseAction(date_of(day1, rday), rday, sd.drug, "resume", new_level, rdose, rule_id,
                                          f"resumed at {rdose:g} {sd.unit}; rule allows level {target} "
                                          f"({sd.dose_at(target):g} {sd.unit}) once resolved to grade <= "
                                          f"{rule.resume_when_grade_at_most}"))
                level, held_since = new_level, None
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
    return _level_for_dose(sd, before[-1]) if before else default


def _level_for_dose(sd, dose: float) -> int:
    """The level whose dose is the given one (or the highest level not above it)."""
    fitting = [lv for lv in sd.levels if lv.dose <= dose + 1e-9]
    return max(fitting, key=lambda lv: lv.dose).level if fitting else min(sd.level_ids)


def _shift_level(sd, level: int, change: int) -> int:
    ids = sd.level_ids
    i = max(ids.index(level) + change, 0)
    floor = ids.index(sd.min_level) if sd.min_level is not None else 0
    return ids[max(i, floor)]


def _alerts(protocol: Protocol, day1: dt.date, events: list[Event], actions: list[DoseAction]) -> list[Alert]:
    """An alert for every event that a dose rule covers (with the rule's severity and message), and for
    every other event of grade >= 3 or without a grade that is not a reported record."""
    alerts = []
    for event in events:
        day = study_day(event.onset, day1)
        rules = [r for r in protocol.dose_rules if any(matches(t, event) for t in r.when)]
        notes = [e.note for e in event.evidence if e.note and "pseudohyperkalemia" in e.note.lower()]
        suffix = f" Note: {notes[0]}." if notes else ""
        if rules:
            rule = min(rules, key=lambda r: SEVERITY_ORDER[r.severity])
            when = supported_on(event, rule)
            alerts.append(Alert(when, study_day(when, day1), rule.severity, f"{event.term} ({_grade(event)}): {rule.message}{suffix}",
                                f"{protocol.id}:{rule.id}", event.evidence))
        elif event.criteria != "reported" and (event.grade is None or event.grade >= 3):
            alerts.append(Alert(event.onset, day, "urgent", f"{event.term} ({_grade(event)}, {event.criteria}).{suffix}",
                                event.criteria, event.evidence))
        elif event.criteria == "reported":
            alerts.append(Alert(event.onset, day, "info", f"Reported: {event.term}.", "record", event.evidence))
    return alerts


def _grade(event: Event) -> str:
    return f"grade {event.grade}" if event.grade is not None else "present"


def _adherence(protocol: Protocol, day1: dt.date, as_of: dt.date, pid: str, doses: pl.DataFrame, given: pl.DataFrame,
               plan: pl.DataFrame, lab_days: set, deceased: dt.date | None) -> list[Finding]:
    """Prophylaxis, study-drug and assessment adherence up to ``as_of``; ``deceased`` (death, or the
    day the drug was discontinued) ends what is required."""
    sd = protocol.study_drug
    findings: list[Finding] = []
    last_study_dose = given["date"].max() if given.height else None
    # Prophylaxis: required on planned days while the patient is on the study drug (day 1 up to
    # the last dose given so far); an alternative drug (prednisone for dexamethasone) satisfies it.
    n_days = study_day(as_of, day1)
    planned = prophylaxis_plan(protocol, day1, n_days)
    for p in protocol.prophylaxis:
        if not p.required:
            continue
        drugs = [p.drug, *p.alternatives]
        mine = doses.filter(pl.col("drug").is_in(drugs))
        done = set(mine.filter(pl.col("status") == "completed")["date"].to_list())
        not_done = {d: i for d, i in mine.filter(pl.col("status") == "not-done").select("date", "dose_id").iter_rows()}
        for date in planned.filter(pl.col("item") == p.id)["date"].to_list():
            if date in done or date > as_of or (last_study_dose and date > last_study_dose) or date < day1:
                continue
            if deceased and date >= deceased:
                continue
            day = study_day(date, day1)
            if date in not_done:
                drug = mine.filter(pl.col("dose_id") == not_done[date])["drug"][0]
                findings.append(Finding(date, day, "prophylaxis-not-done",
                                        f"{drug} ({p.id} prophylaxis) recorded as not taken on day {day}", (not_done[date],)))
            elif date < as_of and last_study_dose and date <= last_study_dose:
                findings.append(Finding(date, day, "prophylaxis-missing",
                                        f"no {' or '.join(drugs)} ({p.id} prophylaxis) recorded on day {day}"))
    # Study drug given on a day the plan holds it, or above the planned dose.
    states = dict(zip(plan["study_day"].to_list(), zip(plan["state"].to_list(), plan["dose"].to_list(), strict=True), strict=True))
    for date, dose, dose_id in given.select("date", "dose", "dose_id").iter_rows():
        day = study_day(date, day1)
        state, planned_dose = states.get(day, ("on", None))
        if state in ("held", "discontinued"):
            findings.append(Finding(date, day, "dose-while-held",
                                    f"{sd.drug} {dose:g} {sd.unit} given on day {day} while the protocol holds it", (dose_id,)))
        elif planned_dose and dose > planned_dose + 1e-9 and state != "off-day":
            findings.append(Finding(date, day, "dose-above-plan",
                                    f"{sd.drug} {dose:g} {sd.unit} given on day {day}; plan is {planned_dose:g} {sd.unit}", (dose_id,)))
    # Required labs not measured on a past day (today's are still due, not missing).
    assessments = assessment_plan(protocol, day1, n_days)
    stop = deceased or (as_of + dt.timedelta(days=1))
    missing: dict[tuple[dt.date, int], list[str]] = {}
    for date, day, code in assessments.select("date", "study_day", "code").iter_rows():
        if date >= as_of or date >= stop or (last_study_dose and date > last_study_dose + dt.timedelta(days=sd.cycle_days)):
            continue
        if (pid, code, date) not in lab_days:
            missing.setdefault((date, day), []).append(code)
    for (date, day), codes in sorted(missing.items()):
        findings.append(Finding(date, day, "lab-missing", f"required on day {day} but not recorded: {', '.join(codes)}"))
    return sorted(findings, key=lambda f: (f.date, f.kind))


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
        first = min(hits, key=lambda e: (e.onset, rank[id(e)]))
        return {**base, "status": "DLT", "study_day": study_day(first.onset, day1), "date": first.onset.isoformat(),
                "event": first.term, "grade": first.grade, "criteria": first.criteria,
                "followup_days": min(study_day(as_of, day1), protocol.dlt.window_days)}
    if as_of < window_end:
        return {**base, "status": "in window", "days_left": (window_end - as_of).days,
                "followup_days": study_day(as_of, day1)}
    return {**base, "status": "no DLT", "followup_days": protocol.dlt.window_days}


def _state(today: pl.DataFrame, actions: list[DoseAction], deceased: dt.date | None, as_of: dt.date) -> str:
    if deceased and deceased <= as_of:
        return "dead"
    if any(a.action == "discontinue" for a in actions):
        return "off study"
    if not today.height:
        return "on drug"
    state = today["state"][0]
    return {"held": "held", "off-day": "off drug week", "discontinued": "off study"}.get(state, "on drug")


def _today(protocol: Protocol, day1: dt.date, as_of: dt.date, plan: pl.DataFrame, n_days: int) -> dict[str, Any]:
    cycle, cday = cycle_of(n_days, protocol.study_drug.cycle_days)
    row = plan.filter(pl.col("study_day") == n_days)
    proph = prophylaxis_plan(protocol, day1, n_days).filter(pl.col("study_day") == n_days)
    due = assessment_plan(protocol, day1, n_days).filter(pl.col("study_day") == n_days)
    return {
        "cycle": cycle,
        "cycle_day": cday,
        "study_drug": {"drug": protocol.study_drug.drug, "dose": row["dose"][0] if row.height else None,
                       "unit": protocol.study_drug.unit, "state": row["state"][0] if row.height else None},
        "prophylaxis": [{"drug": d, "dose": x, "unit": u} for d, x, u in proph.select("drug", "dose", "unit").iter_rows()],
        "assessments_due": sorted(set(due["code"].to_list())),
    }
