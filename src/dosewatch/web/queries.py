"""What the dashboard's pages show, as functions of a session and a viewer.

Every query here passes through ``store.scope.scoped`` (the one site filter) or calls a
``store.service`` function that does; a patient of another site is ``NotFound``, as in the API.
"""
from __future__ import annotations

import datetime as dt
import math
import re
from collections import Counter, defaultdict
from typing import Any

import polars as pl
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from ..analytes import catalog
from ..monitor import SEVERITY_ORDER
from ..protocols.model import Protocol
from ..store import service
from ..store.assess import trial_protocol
from ..store.audit import verify
from ..store.models import Alert, Assessment, DoseAction, Patient, Site, Trial
from ..store.records import load_cohort
from ..store.scope import CAPABILITIES, NotFound, Viewer, scoped

SEVERITIES = [s for s in sorted(SEVERITY_ORDER, key=SEVERITY_ORDER.get) if s != "info"]  # info alerts are not stored
# The labs drawn on the patient's timeline, with the direction graded there: the TLS laboratory
# criteria and the creatinine of clinical TLS, then the cytopenias that stop lenalidomide.
KEY_LABS = [("K", "H"), ("PHOS", "H"), ("URATE", "H"), ("CA", "L"), ("CREAT", "H"), ("NEUT", "L"), ("PLAT", "L")]
DESIGNS = ("3+3", "boin", "tite-boin", "crm", "tite-crm")  # the designs the board offers
CRM_DESIGNS = ("crm", "tite-crm")  # need a skeleton (the prior DLT probability of each level)
SKELETON_HALFWIDTH = 0.05
AUDIT_LIMIT = 200  # newest audit entries on a page (the API gives more)  # of the default skeleton's indifference intervals (dfcrm getprior)


def severity_rank(severity: str) -> int:
    return SEVERITY_ORDER.get(severity, len(SEVERITY_ORDER))


def trial_codes(session: Session) -> list[str]:
    return list(session.scalars(select(Trial.code).order_by(Trial.code)))


def visible_sites(session: Session, viewer: Viewer) -> list[str]:
    stmt = select(Site.code).order_by(Site.code)
    if viewer.site_ids is not None:
        stmt = stmt.where(Site.id.in_(sorted(viewer.site_ids)))
    return list(session.scalars(stmt))


def rule_info(protocol: Protocol, rule: str, message: str = "") -> dict[str, str | None]:
    """The protocol rule behind an alert (``protocol-id:rule-id``), its action and its source text;
    monitor-wide rules (``adherence:...``) are described by the monitor itself, and a grade alert
    (rule = the criteria's id, message "Term (grade N, criteria)") by the row of the criteria's
    data file that gave the grade."""
    prefix, _, rule_id = rule.partition(":")
    if not rule_id:
        return {"action": None, "message": None, "source": _grade_source(rule, message)}
    if prefix == protocol.id:
        for r in protocol.dose_rules:
            if r.id == rule_id:
                source = protocol.sources.get(r.source, r.source)
                if all(t.term is None for t in r.when):  # an "other toxicity" rule: and the event's grade
                    m = re.search(r" \(grade \d+(?:, none reported)?, ([\w.-]+)\)", message)
                    grade = _grade_source(m[1], message) if m else None
                    source = f"{source}; grade: {grade}" if grade else source
                return {"action": r.action, "message": r.message, "source": source}
        if rule_id == "dlt":
            return {"action": None, "message": "dose-limiting toxicity (protocol DLT definition)",
                    "source": protocol.sources.get(protocol.dlt.source, protocol.dlt.source)}
    if prefix == "adherence":
        return {"action": None, "message": "the protocol's dosing and prophylaxis schedule",
                "source": "dosewatch monitor: doses compared with the protocol schedule"}
    return {"action": None, "message": None, "source": None}


def _grade_source(criteria: str, message: str) -> str | None:
    from ..criteria.ctcae import CRITERIA, load_terms
    from ..criteria.iwcll import load_rules

    term, _, rest = message.partition(" (grade ")
    grade = rest.split(",", 1)[0]
    if criteria in CRITERIA and term in load_terms(criteria):
        return next((r.source for r in load_terms(criteria)[term].rules if str(r.grade) == grade), None)
    if criteria == "iwcll-2018":
        return next((r["source"] for rows in load_rules().values() for r in rows
                     if r["term"] == term and r["grade"] == grade), None)
    return None


# ------------------------------------------------------------------------------------------ today

TODAY_PER_PAGE = 100
ALERTS_PER_PAGE = 50


def pages(total: int, page: int, per_page: int | None) -> dict[str, int]:
    """The page actually shown (1 .. last, whatever was asked) and the number of pages."""
    last = max(1, math.ceil(total / per_page)) if per_page else 1
    return {"page": min(max(page, 1), last), "pages": last, "total": total, "per_page": per_page or total}


def today_page(session: Session, trial: Trial, viewer: Viewer, page: int = 1,
               per_page: int | None = TODAY_PER_PAGE) -> dict[str, Any]:
    """The viewer's patients, those with the most severe open alerts first, one page of them with
    today's plan (read from the stored assessment) and open alerts by severity.

    Three queries whatever the number of patients: the patients with their open-alert counts,
    then only for the patients on the page the parts of the stored assessment the page shows
    (extracted by the database, not the whole JSON) and the codes already recorded today."""
    patients = session.execute(scoped(
        select(Patient.id, Patient.patient_id, Site.code).join(Site, Site.id == Patient.site_id)
        .where(Patient.trial_id == trial.id, Patient.deleted.is_(False)), Patient, viewer)).all()
    counts = _open_counts(session, trial, viewer)
    worst = {pk: min((severity_rank(s) for s in counts[pk]), default=len(SEVERITY_ORDER)) for pk, _, _ in patients}
    states = {pk: d.get("state") for pk, d in _assessment_parts(session, viewer, [p[0] for p in patients], "state").items()}
    # the patients to act on, most urgent first; the dead and those off study at the end
    patients.sort(key=lambda p: (states.get(p[0]) in ENDED, worst[p[0]], p[1]))
    paging = pages(len(patients), page, per_page)
    if per_page:
        start = (paging["page"] - 1) * per_page
        patients = patients[start:start + per_page]
    data = _assessment_parts(session, viewer, [pk for pk, _, _ in patients], "state", "study_day", "as_of", "today")
    done = _codes_recorded(session, viewer, {pk: (data.get(pk) or {}).get("as_of") for pk, _, _ in patients})
    todo = _open_alert_todo(session, trial, viewer, [pk for pk, _, _ in patients])
    rows = []
    for pk, pid, site in patients:
        d = data.get(pk) or {}
        today = d.get("today") or {}
        rows.append({"patient_id": pid, "site": site, "state": d.get("state"), "study_day": d.get("study_day"),
                     "as_of": d.get("as_of"), "cycle": today.get("cycle"), "cycle_day": today.get("cycle_day"),
                     "study_drug": today.get("study_drug"), "prophylaxis": today.get("prophylaxis") or [],
                     "due": [c for c in today.get("assessments_due") or [] if c not in done.get(pk, set())],
                     "overdue": todo[pk]["overdue"], "act": todo[pk]["act"], "ended": d.get("state") in ENDED,
                     "open": [(s, counts[pk][s]) for s in SEVERITIES if counts[pk][s]], "worst": worst[pk]})
    return {"rows": rows, **paging}


ENDED = ("dead", "off study")


def _open_alert_todo(session: Session, trial: Trial, viewer: Viewer, pks: list[int]) -> dict[int, dict[str, list]]:
    """Per patient on the page: what the open alerts ask for, most severe first (at most three, the
    inbox has the rest), and the assessments overdue from earlier days (open missing-lab alerts)."""
    from .display import alert_parts

    out: dict[int, dict[str, list]] = defaultdict(lambda: {"act": [], "overdue": []})
    if not pks:
        return out
    protocol = trial_protocol(session, trial)
    stmt = (select(Alert).where(Alert.trial_id == trial.id, Alert.status == "open", Alert.patient_pk.in_(pks))
            .order_by(_severity_order(), Alert.date, Alert.id))
    for a in session.scalars(scoped(stmt, Alert, viewer)):
        row = out[a.patient_pk]
        if a.rule == "adherence:lab-missing":
            row["overdue"].append((a.message.split(": ", 1)[-1], a.data.get("study_day")))
            continue
        if len(row["act"]) < 3:
            parts = alert_parts({"message": a.message, "rule": a.rule, "info": rule_info(protocol, a.rule, a.message)})
            row["act"].append({"severity": a.severity, "what": parts["what"], "todo": parts["todo"], "id": a.id})
    for row in out.values():  # one line per set of missing codes, with the days it was missing
        days: dict[str, list[int]] = defaultdict(list)
        for codes, day in row["overdue"]:
            days[codes].append(day)
        row["overdue"] = [f"{_day_ranges(sorted(d for d in ds if d is not None))}: {codes}" for codes, ds in days.items()]
    return out


def _day_ranges(days: list[int]) -> str:
    """[1, 2, 3, 5] -> 'days 1-3, 5'."""
    if not days:
        return "earlier days"
    parts, start, prev = [], days[0], days[0]
    for d in days[1:] + [None]:
        if d is not None and d == prev + 1:
            prev = d
            continue
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
        if d is not None:
            start = prev = d
    return ("day " if len(days) == 1 else "days ") + ", ".join(parts)


def today_rows(session: Session, trial: Trial, viewer: Viewer) -> list[dict[str, Any]]:
    """All of the viewer's patients as ``today_page`` lists them (no paging)."""
    return today_page(session, trial, viewer, per_page=None)["rows"]


def _open_counts(session: Session, trial: Trial, viewer: Viewer) -> dict[int, Counter]:
    counts: dict[int, Counter] = defaultdict(Counter)
    stmt = (select(Alert.patient_pk, Alert.severity, func.count()).where(Alert.trial_id == trial.id,
            Alert.status == "open").group_by(Alert.patient_pk, Alert.severity))
    for pk, severity, n in session.execute(scoped(stmt, Alert, viewer)):
        counts[pk][severity] = n
    return counts


def _assessment_parts(session: Session, viewer: Viewer, pks: list[int], *keys: str) -> dict[int, dict[str, Any]]:
    """Per patient, the top-level ``keys`` of the stored assessment, extracted in the database (an
    assessment is tens of kilobytes of JSON; a page needs a few of its fields)."""
    if not pks:
        return {}
    stmt = select(Assessment.patient_pk, *(Assessment.data[k] for k in keys)).where(Assessment.patient_pk.in_(pks))
    return {pk: dict(zip(keys, values, strict=True)) for pk, *values in session.execute(scoped(stmt, Assessment, viewer))}


def _codes_recorded(session: Session, viewer: Viewer, as_of: dict[int, str | None]) -> dict[int, set[str]]:
    """Per patient, the codes observed on the day of their assessment (what is due and already done)."""
    from ..store.models import Observation

    days = {dt.date.fromisoformat(d) for d in as_of.values() if d}
    if not days:
        return {}
    stmt = (select(Observation.patient_pk, Observation.date, Observation.code)
            .where(Observation.patient_pk.in_(sorted(as_of)), Observation.date.in_(sorted(days)),
                   Observation.deleted.is_(False)))
    out: dict[int, set[str]] = defaultdict(set)
    for pk, date, code in session.execute(scoped(stmt, Observation, viewer)):
        if as_of.get(pk) == date.isoformat():
            out[pk].add(code)
    return out


# ------------------------------------------------------------------------------------------ alerts

def _severity_order():
    """Most severe first, as ``severity_rank`` (in the database, so that a page can be cut there)."""
    return case(SEVERITY_ORDER, value=Alert.severity, else_=len(SEVERITY_ORDER))


def _alert_select(columns, trial: Trial, *, status: str | None, site: str | None, patient_id: str | None,
                  severity: str | None, patient_pk: int | None):
    stmt = (select(*columns).join(Patient, Patient.id == Alert.patient_pk).join(Site, Site.id == Alert.site_id)
            .where(Alert.trial_id == trial.id))
    if status:
        stmt = stmt.where(Alert.status == status)
    if site:
        stmt = stmt.where(Site.code == site)
    if patient_id:
        stmt = stmt.where(Patient.patient_id == patient_id)
    if patient_pk is not None:
        stmt = stmt.where(Alert.patient_pk == patient_pk)
    if severity:
        stmt = stmt.where(Alert.severity == severity)
    return stmt


def alert_page(session: Session, trial: Trial, viewer: Viewer, *, site: str | None = None,
               patient_id: str | None = None, severity: str | None = None, page: int = 1,
               per_page: int = ALERTS_PER_PAGE) -> dict[str, Any]:
    """One page of open alerts, most severe first, then oldest, with the count per severity of all
    of them. The database sorts and cuts the page; only the page's alerts are read whole."""
    filters = {"status": "open", "site": site, "patient_id": patient_id, "severity": severity, "patient_pk": None}
    by_severity = dict(session.execute(scoped(
        _alert_select([Alert.severity, func.count()], trial, **filters).group_by(Alert.severity), Alert, viewer)).all())
    paging = pages(sum(by_severity.values()), page, per_page)
    ids = session.scalars(scoped(_alert_select([Alert.id], trial, **filters), Alert, viewer)
                          .order_by(_severity_order(), Alert.date, Alert.id)
                          .limit(per_page).offset((paging["page"] - 1) * per_page)).all()
    rows = _alert_rows(session, trial, viewer, _alert_select([Alert, Patient.patient_id, Site.code], trial,
                       status=None, site=None, patient_id=None, severity=None, patient_pk=None)
                       .where(Alert.id.in_(ids))) if ids else []
    return {"rows": rows, "by_severity": [(s, by_severity[s]) for s in SEVERITIES if by_severity.get(s)], **paging}


def alert_rows(session: Session, trial: Trial, viewer: Viewer, *, status: str | None = "open",
               site: str | None = None, patient_id: str | None = None, severity: str | None = None,
               patient_pk: int | None = None, protocol: Protocol | None = None) -> list[dict[str, Any]]:
    """Alerts with their patient, site, rule source and the protocol's dose action of that day;
    most severe first, then oldest. Unpaged: for one patient's history (``alert_page`` for the inbox)."""
    stmt = _alert_select([Alert, Patient.patient_id, Site.code], trial, status=status, site=site,
                         patient_id=patient_id, severity=severity, patient_pk=patient_pk)
    return _alert_rows(session, trial, viewer, stmt, protocol)


def _alert_rows(session: Session, trial: Trial, viewer: Viewer, stmt, protocol: Protocol | None = None) -> list[dict]:
    found = session.execute(scoped(stmt, Alert, viewer)).all()
    actions = _actions_by_day(session, viewer, {a.patient_pk for a, _, _ in found})
    protocol = protocol or trial_protocol(session, trial)
    rows = []
    for a, pid, site_code in found:
        rows.append({"id": a.id, "patient_id": pid, "site": site_code, "status": a.status, "severity": a.severity,
                     "rule": a.rule, "date": a.date, "study_day": a.data.get("study_day"), "message": a.message,
                     "evidence": a.data.get("evidence", []), "protocol_version": a.protocol_version,
                     "ack_by": a.ack_by, "ack_at": a.ack_at, "ack_note": a.ack_note,
                     "info": rule_info(protocol, a.rule, a.message), "actions": actions.get((a.patient_pk, a.date, a.rule), [])})
    rows.sort(key=lambda r: (severity_rank(r["severity"]), r["date"], r["id"]))
    return rows


def alert_row(session: Session, trial: Trial, viewer: Viewer, alert_id: int) -> dict[str, Any]:
    """One alert as the inbox shows it (any status); another site's alert is ``NotFound``."""
    stmt = _alert_select([Alert, Patient.patient_id, Site.code], trial, status=None, site=None, patient_id=None,
                         severity=None, patient_pk=None).where(Alert.id == alert_id)
    rows = _alert_rows(session, trial, viewer, stmt)
    if not rows:
        raise NotFound(f"no alert {alert_id}")
    return rows[0]


def _actions_by_day(session: Session, viewer: Viewer, pks: set[int]) -> dict[tuple, list[dict]]:
    if not pks:
        return {}
    stmt = select(DoseAction).where(DoseAction.patient_pk.in_(sorted(pks)))
    out: dict[tuple, list[dict]] = defaultdict(list)
    for d in session.scalars(scoped(stmt, DoseAction, viewer)):
        out[(d.patient_pk, d.date, d.data.get("rule"))].append({"id": d.id, "action": d.action, "status": d.status,
                                                                 "drug": d.data.get("drug")})
    return out


# ------------------------------------------------------------------------------------------ patient

def patient_view(session: Session, trial: Trial, viewer: Viewer, patient_id: str,
                 units: str = "reported") -> dict[str, Any]:
    """Everything the patient page shows: the assessment, the record for the timeline, the graded
    labs, the alerts of every status and the dose actions."""
    from ..check import CheckSettings, lab_grades

    patient = service.patient_by_id(session, trial, viewer, patient_id)
    site = session.get(Site, patient.site_id)
    assessment = service.patient_assessment(session, trial, viewer, patient_id, None)
    protocol = trial_protocol(session, trial)
    cohort = load_cohort(session, trial.id, viewer, [patient.id])
    day1 = dt.date.fromisoformat(assessment["day1"]) if assessment.get("day1") else None
    grades = pl.DataFrame()
    if day1 is not None and cohort.observations.height:
        settings = CheckSettings(study_drug=protocol.study_drug.drug, ctcae=protocol.surveillance.ctcae,
                                 cytopenias=protocol.surveillance.cytopenias)
        grades = lab_grades(cohort.observations, {patient_id: day1}, settings)
    from ..store.signatures import signatures_of

    actions = session.scalars(scoped(select(DoseAction).where(DoseAction.patient_pk == patient.id)
                                     .order_by(DoseAction.date, DoseAction.id), DoseAction, viewer)).all()
    signed = signatures_of(session, "dose_action", [d.id for d in actions if d.status in ("accepted", "overridden")])
    return {"patient": patient, "site": site.code if site else None, "assessment": assessment, "day1": day1,
            "protocol": protocol, "cohort": cohort, "lab_table": lab_table(cohort.observations, grades, day1, units),
            "units": units,
            "alerts": sorted(alert_rows(session, trial, viewer, status=None, patient_pk=patient.id, protocol=protocol),
                             key=lambda r: (r["date"], severity_rank(r["severity"]), r["id"])),
            "dose_actions": [{"id": d.id, "status": d.status, **d.data, "decided_by": d.decided_by,
                              "decided_at": d.decided_at, "decision_reason": d.reason,
                              "signatures": signed.get(d.id, [])} for d in actions],
            "signatures_required": bool(trial.signatures_required)}


def lab_table(obs: pl.DataFrame, grades: pl.DataFrame, day1: dt.date | None, units: str = "reported") -> dict[str, Any]:
    """Labs as a day-by-analyte table in the units they were reported in (or, by the user's choice,
    in SI or US conventional units); each cell carries its worst grade and the term and criteria
    that gave it."""
    from ..record import study_day
    from .display import from_canonical, shown_unit

    labs = [c for c, a in catalog().analytes.items() if a.kind == "lab"]
    obs = obs.filter(pl.col("code").is_in(labs) & pl.col("orig_value").is_not_null()).sort("time", "obs_id")
    worst: dict[str, tuple[int, str]] = {}
    if grades.height:
        from ..check import CheckSettings

        shown = grades.filter((pl.col("grade") > 0) & ~pl.col("term").is_in(list(CheckSettings().skip_terms)))
        for r in shown.iter_rows(named=True):
            if r["obs_id"] not in worst or r["grade"] > worst[r["obs_id"]][0]:
                worst[r["obs_id"]] = (r["grade"], f"{r['term']} grade {r['grade']} ({r['criteria']})")
    codes = [c for c in labs if c in set(obs["code"].to_list())]
    days: dict[dt.date, dict[str, dict]] = defaultdict(dict)
    choice, units = units, {}
    cat = catalog().analytes
    shown = {c: shown_unit(cat[c], choice) for c in codes}
    convert = {c: from_canonical(cat[c], u) for c, u in shown.items() if u}
    for r in obs.iter_rows(named=True):
        grade, why = worst.get(r["obs_id"], (0, ""))
        code = r["code"]
        if code in convert and r["value"] is not None:
            value, unit = float(f"{convert[code](r['value']):.4g}"), shown[code]  # 4 significant digits
        else:
            value, unit = r["orig_value"], r["orig_unit"]
        units.setdefault(code, unit)
        days[r["date"]][code] = {"value": value, "unit": unit, "grade": grade, "why": why}
    # Each row's cells in the order of ``codes`` (None where nothing was measured), the value
    # already formatted: the template only writes them out (a trial's labs are thousands of cells).
    rows = [{"date": d, "study_day": study_day(d, day1) if day1 else None,
             "cells": [_cell(cells.get(c)) for c in codes]} for d, cells in sorted(days.items())]
    return {"codes": codes, "units": units, "rows": rows, "worst": {k: g for k, (g, _) in worst.items()}}


def _cell(cell: dict | None) -> dict | None:
    if cell is not None:
        cell["text"] = f"{cell['value']:g}"
    return cell


def lab_thresholds(cohort, protocol: Protocol, day1: dt.date | None) -> dict[str, list[dict[str, Any]]]:
    """Per key lab, the grade cut-offs in the canonical unit as lines for the timeline: CTCAE (or
    iwCLL for cytopenias when the protocol says so) and the TLS criteria's laboratory cut-offs,
    each read from the criteria's data files. Cut-offs relative to the normal range or the
    baseline use this patient's range and pretreatment value."""
    from ..criteria import tls
    from ..criteria.ctcae import default_terms, load_terms
    from ..criteria.iwcll import load_rules

    cat = catalog()
    obs = cohort.observations
    out: dict[str, list[dict[str, Any]]] = {}
    tls_rules = tls.load_rules(protocol.surveillance.tls)
    for code, direction in KEY_LABS:
        mine = obs.filter(pl.col("code") == code)
        if not mine.height:
            continue
        analyte = cat[code]
        reported = mine["orig_unit"].mode().first()
        uln, lln = _mode(mine, "ref_high"), _mode(mine, "ref_low")
        base = None
        if day1 is not None:
            pre = mine.filter(pl.col("date") <= day1).sort("time")
            base = pre["value"].last() if pre.height else None
        lines = []
        iwcll = protocol.surveillance.cytopenias == "iwcll-2018" and code in ("NEUT", "PLAT", "HGB")
        if iwcll:
            for r in load_rules().get(code, []):
                if r["rule"] != "grade":
                    continue
                value = _cut(analyte, r["basis"], float(r["cutoff"]), r["unit"], lln, uln, base)
                lines.append(_line(int(r["grade"]), value, r, "iwCLL 2018"))
        else:
            version = protocol.surveillance.cytopenias if code in ("NEUT", "PLAT", "HGB") else protocol.surveillance.ctcae
            term = default_terms(version).get((code, direction))
            rules = load_terms(version)[term].rules if term else ()
            for r in rules:
                if (r.reading not in ("literal", "both") or r.condition or (r.mult and r.add) or r.basis == "ULN&BASE"
                        or r.grade < 0):
                    continue  # conditional, "baseline + x", "above ULN and baseline" and no-grade rules have no single line
                if r.basis == "abs" and r.unit != reported and _has_unit(rules, r.grade, reported):
                    continue  # the native-unit rule: the cut-off printed in the reported unit is the one used
                value = _cut(analyte, r.basis, r.mult or r.add, r.unit, lln, uln, base)
                lines.append(_line(r.grade, value, {"op": r.op, "basis": r.basis}, term))
        for crit in tls_rules.get("laboratory", []):
            cuts = [c for c in crit.get("cutoffs") or []
                    if c["code"] == code and c["population"] in ("any", "adult") and c["unit"] in (reported, analyte.unit)]
            for c in sorted(cuts, key=lambda c: c["unit"] != reported)[:1]:  # the reported unit's cut-off first
                lines.append({"grade": None, "value": _to_canonical(analyte, c["value"], c["unit"]),
                              "label": f"TLS {_OPS[c['op']]}{c['value']:g}" + ("" if c["unit"] == analyte.unit else f" {c['unit']}"),
                              "source": f"{tls_rules['name']}: {c['source']}"})
        out[code] = _dedupe([ln for ln in lines if ln["value"] is not None and math.isfinite(ln["value"])])
    return out


_OPS = {">=": "≥", ">": ">", "<=": "≤", "<": "<"}


def _mode(df: pl.DataFrame, col: str) -> float | None:
    s = df[col].drop_nulls()
    return float(s.mode().first()) if s.len() else None


def _has_unit(rules, grade: int, unit: str) -> bool:
    return any(r.grade == grade and r.basis == "abs" and r.unit == unit for r in rules)


def _to_canonical(analyte, value: float, unit: str) -> float | None:
    try:
        scale, offset = analyte.conversion(unit.replace("^", "*"))
    except Exception:  # a unit the catalog cannot convert: no line rather than a wrong one
        return None
    return value * scale + offset


def _cut(analyte, basis: str, number: float, unit: str, lln, uln, base) -> float | None:
    if basis == "abs":
        return _to_canonical(analyte, number, unit)
    if basis == "ULN":
        return number * uln if uln is not None else None
    if basis == "LLN":
        return number * lln if lln is not None else None
    if basis == "BASE":
        return number * base if base is not None else None
    if basis == "FALL":  # iwCLL: a fall of number % from the pretreatment value
        return base * (1 - number / 100) if base is not None else None
    return None


def _line(grade: int, value: float | None, rule, name: str) -> dict[str, Any]:
    basis = rule["basis"]
    how = {"ULN": "x ULN", "LLN": "x LLN", "BASE": "x baseline", "FALL": "% fall"}.get(basis, "")
    return {"grade": grade, "value": value, "label": f"G{grade}" + (" base" if basis in ("BASE", "FALL") else ""),
            "source": f"{name}, grade {grade} ({rule['op']} {how})".replace(" )", ")")}


def _dedupe(lines: list[dict]) -> list[dict]:
    seen, out = set(), []
    for ln in sorted(lines, key=lambda x: (x["grade"] is None, x["grade"] or 0, x["value"])):
        key = (ln["grade"], round(ln["value"], 6))
        if key not in seen:
            seen.add(key)
            out.append(ln)
    return out


# ------------------------------------------------------------------------------------------ cohort

def cohort_board(session: Session, trial: Trial, viewer: Viewer, design: str, target: float | None,
                 skeleton: list[float] | None = None) -> dict[str, Any]:
    """The dose levels with their patients' DLT status and the design's recommendation, from the
    stored assessments (``service.stored_cohort``: what every other page shows and what ``GET
    .../cohort/next`` answers without ``as_of``), so that the board does not re-run the monitor on
    the whole trial. CRM and TITE-CRM need a ``skeleton`` (the prior DLT probability of each level)."""
    from ..escalation.cohort_cli import fit_rows

    protocol = trial_protocol(session, trial)
    stored = service.stored_cohort(session, trial, viewer, protocol)
    fitted, used, _ = fit_rows(stored.rows, protocol, design, target=target, skeleton=skeleton)
    rec = fitted.to_dict()
    counted = {r.patient_id for r in used}
    rows = [{"patient_id": r.patient_id, "day1": r.day1, "level": r.dose, "status": r.status, "dlt": r.dlt,
             "followup": r.followup, "days_left": stored.dlt[r.patient_id].get("days_left"),
             "event": stored.dlt[r.patient_id].get("event"), "date": stored.dlt[r.patient_id].get("date"),
             "counted": r.patient_id in counted} for r in stored.rows]
    crm = design in CRM_DESIGNS
    levels = []
    for lv in sorted(protocol.study_drug.levels, key=lambda lv: -lv.level):
        mine = [r for r in rows if r["level"] == lv.level]
        evaluable = [r for r in mine if r["counted"]]
        row = {"level": lv.level, "dose": lv.dose, "patients": mine, "evaluable": len(evaluable),
               "dlts": sum(r["dlt"] for r in evaluable)}
        if crm:  # the model's reasoning per level: prior (skeleton) and posterior DLT probability
            i = lv.level - 1
            row.update(skeleton=skeleton[i], ptox=rec["ptox"][i], ptox_lower=rec["ptox_lower"][i],
                       ptox_upper=rec["ptox_upper"][i])
        levels.append(row)
    boundaries = None
    if design in ("boin", "tite-boin"):
        from ..escalation.boin import boin_boundaries

        most = max((len(v["patients"]) for v in levels), default=0)
        boundaries = boin_boundaries(target, 3, max(4, math.ceil(most / 3) + 1))
    return {"rec": rec, "design": design, "levels": levels, "unit": protocol.study_drug.unit,
            "not_counted": [r["patient_id"] for r in rows if not r["counted"]], "n_used": len(used),
            "scope": "all sites" if viewer.all_sites else "your sites only", "as_of": stored.as_of,
            "protocol": protocol.id, "protocol_version": trial.protocol_version, "skeleton": skeleton,
            "boundaries": boundaries, "window_days": protocol.dlt.window_days,
            "dlt_source": protocol.sources.get(protocol.dlt.source, protocol.dlt.source)}


def default_skeleton(target: float, n_levels: int) -> list[float]:
    """A starting skeleton for CRM: dfcrm ``getprior`` with half-width 0.05 and the prior MTD at the
    middle level, rounded to 3 decimals. The board says so; the trial's own skeleton replaces it."""
    from ..escalation.crm import get_prior

    return [round(p, 3) for p in get_prior(SKELETON_HALFWIDTH, target, math.ceil(n_levels / 2), n_levels)]


def cohort_decisions(session: Session, trial: Trial, limit: int = 50) -> list[dict[str, Any]]:
    """The decisions on the next cohort, newest first, with their signatures
    (``store.signatures.cohort_decisions``). They are the trial's, not a site's (their audit entries
    have no site): the pages show them to the roles that see every site, as the audit trail does."""
    from ..store.signatures import cohort_decisions as decisions

    return decisions(session, trial, limit)


# ------------------------------------------------------------------------------------------ audit

def audit_view(session: Session, viewer: Viewer, trial: Trial, patient_id: str | None,
               verify_chain: bool = False) -> dict[str, Any]:
    """A patient's audit entries (or the trial's, newest first) and, when asked by a role that may
    verify the chain, its verification (it reads the whole trail: a second or so for a large
    trial, so it runs on request rather than with every page)."""
    if patient_id:
        service.patient_by_id(session, trial, viewer, patient_id)  # another site's patient: NotFound
    entries = service.audit_entries(session, viewer, patient_id, trial, limit=AUDIT_LIMIT)
    may_verify = viewer.role in CAPABILITIES["verify_audit"]
    return {"entries": entries, "verification": verify(session) if may_verify and verify_chain else None,
            "may_verify": may_verify, "limit": AUDIT_LIMIT}
