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

import numpy as np
import polars as pl

from ..analytes import catalog
from ..check import CheckSettings, check_cohort
from ..criteria.terms import is_hematologic, syndrome_named
from ..events import Event, Evidence
from ..protocols.model import DoseRule, Protocol, Trigger
from ..protocols.schedule import (
    DoseChange,
    cycle_of,
    date_of,
    relative_assessment_plan,
    relative_prophylaxis_plan,
    relative_study_drug_plan,
)
from ..record import Cohort, study_day, study_day_expr
from .clinical import SEVERITY_ORDER, floor_severity, reported_alert_text, rule_grade, worst


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
    results = check_cohort(cohort, settings)
    deceased = dict(zip(cohort.patients["patient_id"].to_list(), cohort.patients["deceased_date"].to_list(), strict=True))
    started = {r.patient_id: r.day1 for r in results if r.day1 is not None}
    given = (
        cohort.doses.filter((pl.col("drug") == sd.drug) & (pl.col("status") == "completed"))
        .select("patient_id", "time", "date", "dose", "dose_id")
        .sort("patient_id", "time", maintain_order=True)
    )
    # Dose rules: only patients with an event that a rule covers can have actions (and a plan of their own).
    rules_for = _rule_matcher(protocol)
    ruled = {r.patient_id for r in results if r.day1 is not None and any(rules_for(e) for e in r.events)}
    given_by: dict[str, list[tuple[dt.date, float, str]]] = {}
    for pid, date, dose, dose_id in given.filter(pl.col("patient_id").is_in(list(ruled))).select(
            "patient_id", "date", "dose", "dose_id").iter_rows():
        given_by.setdefault(pid, []).append((date, dose, dose_id))
    actions: dict[str, tuple[list[DoseAction], list[DoseChange]]] = {}
    for r in results:
        if r.patient_id in ruled:
            actions[r.patient_id] = _dose_actions(protocol, r.day1, r.events, given_by.get(r.patient_id, []), rules_for)
    stop = {
        pid: deceased.get(pid) or min((a.date for a in actions.get(pid, ([], []))[0] if a.action == "discontinue"), default=None)
        for pid in started
    }
    plans = _Plans(protocol, as_of, started)
    findings = _adherence(protocol, as_of, cohort.doses, cohort.observations, given, started, stop,
                          {pid for pid, (_, changes) in actions.items() if changes}, plans)
    out = []
    for r in results:
        acts, changes = actions.get(r.patient_id, ([], []))
        plan = plans.study_drug(changes)
        adherence = findings.get(r.patient_id, [])
        if changes:
            extra = _dose_findings(protocol, r.day1, plan, given_by.get(r.patient_id, []))
            adherence = sorted(adherence + extra, key=lambda f: (f.date, f.kind))
        out.append(_assess_patient(protocol, as_of, r.patient_id, r.day1, r.events, deceased.get(r.patient_id),
                                   acts, plan, adherence, plans, rules_for))
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


class _Plans:
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


def _assess_patient(protocol: Protocol, as_of: dt.date, pid: str, day1: dt.date | None, events: list[Event],
                    deceased: dt.date | None, actions: list[DoseAction], plan: dict[int, tuple[str, float, int]],
                    adherence: list[Finding], plans: _Plans, rules_for: Callable[[Event], list[DoseRule]]) -> Assessment:
    sd = protocol.study_drug
    assessment = Assessment(pid, protocol.id, protocol.version, as_of, day1, "not started", None, events=events)
    if day1 is None:
        if deceased:
            assessment.state = "dead"
        return assessment
    n_days = max(study_day(as_of, day1), 1)
    assessment.dose_actions = actions
    assessment.alerts = _alerts(protocol, day1, events, rules_for)
    assessment.adherence = adherence
    for f in adherence:
        sev = "urgent" if f.kind in ("prophylaxis-not-done", "dose-while-held", "dose-above-plan") else "warning"
        assessment.alerts.append(Alert(f.date, f.study_day, sev, f.message, f"adherence:{f.kind}",
                                       tuple(Evidence(r, f.kind, None, None, f.date) for r in f.refs)))
    assessment.alerts.sort(key=lambda a: (a.date, SEVERITY_ORDER[a.severity], a.rule))
    assessment.dlt = _dlt(protocol, day1, as_of, events)
    today = plan.get(n_days)
    assessment.level = today[2] if today else sd.start_level
    assessment.state = _state(today, actions, deceased, as_of)
    assessment.today = _today(protocol, today, plans, n_days)
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
    held_since: tuple[int, DoseRule] | None = None
    stopped = False
    fired = []
    for event in events:
        rules = rules_for(event)
        if rules:
            rule = min(rules, key=lambda r: strength[r.action])
            fired.append((supported_on(event, rule), event, rule))
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
        if held_since and rule.action in ("hold", "hold-next-dose", "continue"):
            continue
        # The resume after a previous hold: the first dose given after it.
        level = _level_at(sd, given_days, day, level)
        reason = f"{event.term} grade {_grade_read(event)} ({event.criteria}) on day {day}"
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


def _severity(rule: DoseRule, event: Event) -> str:
    """A rule's severity, raised to that of a clinical event the event is or rests on by the day the
    rule fires."""
    return worst(rule.severity, floor_severity(event, supported_on(event, rule)))


def _grade_read(event: Event) -> str:
    grade = rule_grade(event)
    if grade is None:
        return "-"
    return f"{grade} (none reported)" if event.grade is None else str(grade)


def _alerts(protocol: Protocol, day1: dt.date, events: list[Event], rules_for: Callable[[Event], list[DoseRule]]) -> list[Alert]:
    """An alert for every event that a dose rule covers (with the rule's severity, raised to that of a
    clinical event it rests on, and the rule's message); for every reported clinical event that acts
    on its own (at its catalog severity); and for every other event of grade >= 3 or without a grade
    that is not a reported record."""
    alerts = []
    for event in events:
        day = study_day(event.onset, day1)
        rules = rules_for(event)
        notes = [e.note for e in event.evidence if e.note and "pseudohyperkalemia" in e.note.lower()]
        suffix = f" Note: {notes[0]}." if notes else ""
        floor = floor_severity(event, event.onset)
        if rules:
            rule = min(rules, key=lambda r: (SEVERITY_ORDER[_severity(r, event)], SEVERITY_ORDER[r.severity]))
            when = supported_on(event, rule)
            lead = f"{reported_alert_text(event)} " if event.criteria == "reported" else ""
            # an "other toxicity" rule names the criteria too: the grade's source is shown beside the rule's
            graded = f"{_grade(event)}, {event.criteria}" if all(t.term is None for t in rule.when) else _grade(event)
            alerts.append(Alert(when, study_day(when, day1), _severity(rule, event),
                                f"{lead}{event.term} ({graded}): {rule.message}{suffix}",
                                f"{protocol.id}:{rule.id}", event.evidence))
        elif event.criteria == "reported" and floor:
            alerts.append(Alert(event.onset, day, floor, reported_alert_text(event), "record", event.evidence))
        elif event.criteria != "reported" and (event.grade is None or event.grade >= 3):
            alerts.append(Alert(event.onset, day, worst("urgent", floor), f"{event.term} ({_grade(event)}, {event.criteria}).{suffix}",
                                event.criteria, event.evidence))
        elif event.criteria == "reported":
            alerts.append(Alert(event.onset, day, "info", f"Reported: {event.term}.", "record", event.evidence))
    return alerts


def _grade(event: Event) -> str:
    if event.grade is None and rule_grade(event) is not None:
        return f"grade {rule_grade(event)}, none reported"
    return f"grade {event.grade}" if event.grade is not None else "present"


def _adherence(protocol: Protocol, as_of: dt.date, doses: pl.DataFrame, obs: pl.DataFrame, given: pl.DataFrame,
               started: dict[str, dt.date], stop: dict[str, dt.date | None], changed: set[str], plans: _Plans
               ) -> dict[str, list[Finding]]:
    """Prophylaxis, study-drug and assessment adherence up to ``as_of`` for every started patient, on
    whole columns. ``stop`` (death, or the day the drug was discontinued) ends what is required.
    Patients in ``changed`` have their study-drug doses checked against their own plan elsewhere."""
    if not started:
        return {}
    patients = pl.DataFrame(
        {"patient_id": list(started), "day1": list(started.values()), "stop": [stop[p] for p in started]},
        schema={"patient_id": pl.String, "day1": pl.Date, "stop": pl.Date},
    ).join(given.group_by("patient_id").agg(pl.col("date").max().alias("last")), on="patient_id", how="left")
    parts = [
        _prophylaxis_findings(protocol, as_of, doses, patients, plans),
        _dose_above_plan(protocol, given.filter(~pl.col("patient_id").is_in(list(changed))), patients, plans),
        _labs_missing(protocol, as_of, obs, patients, plans),
    ]
    rows = pl.concat([p for p in parts if p.height], how="vertical") if any(p.height for p in parts) else None
    out: dict[str, list[Finding]] = {}
    if rows is None:
        return out
    # The order the findings were listed in before sorting by (date, kind): prophylaxis by protocol
    # order, doses by time; one lab finding per day.
    for pid, date, day, kind, message, refs in rows.sort("patient_id", "date", "kind", "tie").select(
            "patient_id", "date", "study_day", "kind", "message", "refs").iter_rows():
        out.setdefault(pid, []).append(Finding(date, day, kind, message, tuple(refs)))
    return out


FINDINGS_SCHEMA = {"patient_id": pl.String, "date": pl.Date, "study_day": pl.Int32, "kind": pl.String,
                   "message": pl.String, "refs": pl.List(pl.String), "tie": pl.Int64}


def _prophylaxis_findings(protocol: Protocol, as_of: dt.date, doses: pl.DataFrame, patients: pl.DataFrame,
                          plans: _Plans) -> pl.DataFrame:
    """Prophylaxis is required on its planned days while the patient is on the study drug (day 1 up to
    the last dose given so far, before ``stop``); an alternative drug (prednisone for dexamethasone)
    satisfies it. A dose recorded as not taken is reported on any such day; a day without a record
    only once it has passed."""
    frames = []
    doses = doses.with_row_index("_row")
    for tie, p in enumerate(protocol.prophylaxis):
        if not p.required:
            continue
        drugs = [p.drug, *p.alternatives]
        mine = doses.filter(pl.col("drug").is_in(drugs))
        done = mine.filter(pl.col("status") == "completed").select("patient_id", "date").unique()
        # Per day the last "not-done" record, named by the drug of the first record with its id.
        not_done = (
            mine.filter(pl.col("status") == "not-done")
            .group_by("patient_id", "date").agg(pl.col("dose_id").sort_by("_row").last())
            .join(mine.sort("_row").unique(subset=["patient_id", "dose_id"], keep="first", maintain_order=True)
                  .select("patient_id", "dose_id", "drug"), on=["patient_id", "dose_id"], how="left")
        )
        planned = plans.prophylaxis.filter((pl.col("item") == p.id) & (pl.col("study_day") >= 1)).select("study_day", "offset")
        due = (
            patients.join(planned, how="cross")
            .with_columns((pl.col("day1") + pl.duration(days=pl.col("offset"))).alias("date"))
            .filter((pl.col("date") <= as_of) & (pl.col("date") <= pl.col("last"))
                    & (pl.col("stop").is_null() | (pl.col("date") < pl.col("stop"))))
            .join(done, on=["patient_id", "date"], how="anti")
            .join(not_done, on=["patient_id", "date"], how="left")
            .filter(pl.col("dose_id").is_not_null() | (pl.col("date") < as_of))
        )
        frames.append(due.select(
            "patient_id", "date", "study_day",
            pl.when(pl.col("dose_id").is_not_null()).then(pl.lit("prophylaxis-not-done"))
            .otherwise(pl.lit("prophylaxis-missing")).alias("kind"),
            pl.when(pl.col("dose_id").is_not_null())
            .then(pl.format(f"{{}} ({p.id} prophylaxis) recorded as not taken on day {{}}", "drug", "study_day"))
            .otherwise(pl.format(f"no {' or '.join(drugs)} ({p.id} prophylaxis) recorded on day {{}}", "study_day"))
            .alias("message"),
            pl.when(pl.col("dose_id").is_not_null()).then(pl.concat_list("dose_id")).otherwise(pl.lit([], pl.List(pl.String)))
            .alias("refs"),
            pl.lit(tie, pl.Int64).alias("tie"),
        ).cast(FINDINGS_SCHEMA))
    return pl.concat(frames) if frames else pl.DataFrame(schema=FINDINGS_SCHEMA)


def _dose_above_plan(protocol: Protocol, given: pl.DataFrame, patients: pl.DataFrame, plans: _Plans) -> pl.DataFrame:
    """Study-drug doses above the unchanged plan (a plan without holds never holds a dose)."""
    hits = (
        given.with_columns(pl.int_range(pl.len()).over("patient_id").alias("tie"))
        .join(patients.select("patient_id", "day1"), on="patient_id", how="inner")
        .with_columns(study_day_expr("date", "day1").alias("study_day"))
        .join(plans.base.select("study_day", "state", pl.col("dose").alias("planned")), on="study_day", how="inner")
        .filter(pl.col("state").is_in(["held", "discontinued"])
                | ((pl.col("planned") != 0) & (pl.col("dose") > pl.col("planned") + 1e-9) & (pl.col("state") != "off-day")))
    )
    if not hits.height:
        return pl.DataFrame(schema=FINDINGS_SCHEMA)
    rows = []
    for pid, date, dose, dose_id, day1, tie in hits.select("patient_id", "date", "dose", "dose_id", "day1", "tie").iter_rows():
        for f in _dose_findings(protocol, day1, plans.base_days, [(date, dose, dose_id)]):
            rows.append((pid, f.date, f.study_day, f.kind, f.message, list(f.refs), tie))
    return pl.DataFrame(rows, schema=FINDINGS_SCHEMA, orient="row")


def _dose_findings(protocol: Protocol, day1: dt.date, plan: dict[int, tuple[str, float, int]],
                   given: list[tuple[dt.date, float, str]]) -> list[Finding]:
    """Study drug given on a day the plan holds it, or above the planned dose."""
    sd = protocol.study_drug
    findings = []
    for date, dose, dose_id in given:
        day = study_day(date, day1)
        state, planned_dose, _ = plan.get(day, ("on", None, None))
        if state in ("held", "discontinued"):
            findings.append(Finding(date, day, "dose-while-held",
                                    f"{sd.drug} {dose:g} {sd.unit} given on day {day} while the protocol holds it", (dose_id,)))
        elif planned_dose and dose > planned_dose + 1e-9 and state != "off-day":
            findings.append(Finding(date, day, "dose-above-plan",
                                    f"{sd.drug} {dose:g} {sd.unit} given on day {day}; plan is {planned_dose:g} {sd.unit}", (dose_id,)))
    return findings


def _labs_missing(protocol: Protocol, as_of: dt.date, obs: pl.DataFrame, patients: pl.DataFrame, plans: _Plans
                  ) -> pl.DataFrame:
    """Required assessments not recorded on a past day (today's are still due, not missing), up to one
    cycle after the last dose and before ``stop``; one finding per day naming the codes in plan order.

    What was recorded is a boolean array (patient, days after day 1, code) filled from the whole
    observation table at once (n_patients x n_days x n_codes bytes), compared with the plan's array."""
    codes = list(dict.fromkeys(plans.assessments["code"].to_list()))
    if not codes:
        return pl.DataFrame(schema=FINDINGS_SCHEMA)
    pids = patients["patient_id"].to_list()
    n_off = plans.n_max + 1
    day1 = patients["day1"].to_physical().to_numpy()
    # an analyte that stands in for a required one counts as it (a 0-10 pain score for PAIN)
    stand_in = {a.code: a.counts_as for a in catalog().analytes.values() if a.counts_as in codes}
    rec = (
        obs.with_columns(pl.col("code").replace(stand_in)).filter(pl.col("code").is_in(codes))
        .select(pl.col("patient_id").replace_strict(dict(zip(pids, range(len(pids)))), default=None, return_dtype=pl.Int32).alias("p"),
                pl.col("code").cast(pl.Enum(codes)).to_physical().alias("c"), pl.col("date").to_physical().alias("d"))
        .drop_nulls("p")
    )
    p, c = rec["p"].to_numpy(), rec["c"].to_numpy()
    offset = rec["d"].to_numpy() - day1[p]
    keep = (offset >= 0) & (offset < n_off)
    present = np.zeros((len(pids), n_off, len(codes)), dtype=bool)
    present[p[keep], offset[keep], c[keep]] = True
    required = np.zeros((n_off, len(codes)), dtype=bool)
    index = {code: i for i, code in enumerate(codes)}
    for day, day_codes in plans.codes_on.items():
        required[day - 1, [index[code] for code in day_codes]] = True
    # Last offset still required: before as_of, before stop, within a cycle after the last dose.
    limit = patients.select(pl.min_horizontal(
        (pl.lit(as_of) - pl.col("day1")).dt.total_days() - 1,
        (pl.col("stop") - pl.col("day1")).dt.total_days() - 1,
        (pl.col("last") - pl.col("day1")).dt.total_days() + protocol.study_drug.cycle_days,
    ))[:, 0].to_numpy()
    due = np.arange(n_off)[None, :] <= limit[:, None]
    rows = []
    for i, off in zip(*np.nonzero((required[None] & ~present).any(axis=2) & due), strict=True):
        day = int(off) + 1
        missing = [code for code in plans.codes_on[day] if not present[i, off, index[code]]]
        rows.append((pids[i], patients["day1"][int(i)] + dt.timedelta(days=int(off)), day, "lab-missing",
                     f"required on day {day} but not recorded: {', '.join(missing)}", [], 0))
    return pl.DataFrame(rows, schema=FINDINGS_SCHEMA, orient="row")


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


def _state(today: tuple[str, float, int] | None, actions: list[DoseAction], deceased: dt.date | None, as_of: dt.date) -> str:
    if deceased and deceased <= as_of:
        return "dead"
    if any(a.action == "discontinue" for a in actions):
        return "off study"
    if today is None:
        return "on drug"
    return {"held": "held", "off-day": "off drug week", "discontinued": "off study"}.get(today[0], "on drug")


def _today(protocol: Protocol, today: tuple[str, float, int] | None, plans: _Plans, n_days: int) -> dict[str, Any]:
    cycle, cday = cycle_of(n_days, protocol.study_drug.cycle_days)
    return {
        "cycle": cycle,
        "cycle_day": cday,
        "study_drug": {"drug": protocol.study_drug.drug, "dose": today[1] if today else None,
                       "unit": protocol.study_drug.unit, "state": today[0] if today else None},
        "prophylaxis": [dict(d) for d in plans.proph_on.get(n_days, [])],
        "assessments_due": sorted(set(plans.codes_on.get(n_days, []))),
    }
