"""The closed loop: virtual patients dosed by a protocol, labs drawn on its monitoring schedule,
dosewatch's monitor (``monitor.evaluate``) reading the record, and its dose actions (hold, reduce,
discontinue) applied from the next day.

The monitor is called only on days with new data and only for the patients who have new data that
day (their whole record up to that day): no event can appear for a patient without a new record.
Resuming after a hold is the virtual investigator's call (``care.yaml`` ``resume``, from the drug
label's resume conditions) on the latest measured values; the monitor then sees the drug given again.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..monitor import evaluate
from ..protocols.model import Protocol
from ..protocols.schedule import cycle_of, relative_assessment_plan, relative_prophylaxis_plan
from .draws import EXAM_CODES, LAB_CODES, NoRecord, Recorder, date_of
from .params import Values, table
from .physiology import Patients
from .population import Population

TLS_TERMS = ("Laboratory tumor lysis syndrome", "Clinical tumor lysis syndrome")
FLARE_TERM = "Tumor flare reaction"
FN_TERM = "Febrile neutropenia"
UNDETECTED = 10_000  # "never" in day arrays
LAB_SCHEDULES = ("protocol", "daily", "weekly")


@dataclass
class Arm:
    """How one arm's patients are treated and watched."""

    protocol: Protocol
    days: int = 28
    labs: str = "protocol"  # protocol | daily | weekly (the protocol's codes on every day / days 1, 8, 15, ...)
    hydration: bool = False  # hydration on every treatment day beyond what the protocol prescribes
    rasburicase: bool = False  # rasburicase on days 1-7 beyond what the protocol prescribes
    allopurinol: bool = False  # allopurinol every day beyond what the protocol prescribes (not recorded as a dose)
    # miss_study_drug, miss_steroid, stop_steroid, miss_allopurinol; steroid_stop_day (a story's fixed day)
    adherence: dict[str, float] = field(default_factory=dict)
    act: bool = True  # False: the monitor runs but nobody acts on it (the counterfactual)
    watch: bool = True  # False: no record and no monitor at all - the model alone (sensitivity runs)


@dataclass
class Trace:
    """Per patient: the truth (first day of each event, 0-based arrays over patients) and what the
    monitor saw (first day it reported it), plus daily series for one patient's timeline."""

    truth: dict[str, np.ndarray]
    detected: dict[str, np.ndarray]
    holds: np.ndarray
    first_hold: np.ndarray  # study day the first hold took effect (UNDETECTED: never held)
    first_hold_term: np.ndarray  # the event term behind it
    discontinued: np.ndarray
    dose_given: np.ndarray  # mg summed over the horizon
    evaluations: int
    series: dict[str, list] = field(default_factory=dict)
    dlt_day: np.ndarray | None = None  # study day the monitor first judged a DLT (UNDETECTED: none)


SIMULATED = (*LAB_CODES, *EXAM_CODES)


def not_simulated(protocol: Protocol) -> list[str]:
    """Codes the protocol's monitoring asks for that the virtual patients do not have (the monitor
    then reports them missing, as it would for a real patient)."""
    return sorted({c for a in protocol.monitoring for c in a.codes} - set(SIMULATED))


def _schedule(protocol: Protocol, days: int, labs: str) -> dict[int, list[str]]:
    """Study day -> simulated codes drawn that day."""
    plan = relative_assessment_plan(protocol, days)
    codes_by_day: dict[int, list[str]] = {}
    for day, code in plan.select("study_day", "code").iter_rows():
        codes_by_day.setdefault(day, [])
        if code not in SIMULATED:
            continue
        if code not in codes_by_day[day]:
            codes_by_day[day].append(code)
    if labs == "protocol":
        return codes_by_day
    every = list(dict.fromkeys(c for cs in codes_by_day.values() for c in cs))
    step = 1 if labs == "daily" else 7
    return {d: every for d in range(1, days + 1, step)}


def run(arm: Arm, pop: Population, v: Values, seed: int, follow: int | None = None) -> Trace:
    """Simulate ``arm`` for every patient of ``pop``; ``follow`` keeps a daily timeline of one patient.

    Three independent random streams from ``seed``: physiology (infections, deaths), adherence, and
    measurement noise (keyed by day and code), so that two arms run with one seed differ only where
    their treatment or schedule makes them differ (common random numbers)."""
    rng = np.random.default_rng([seed, 2])
    protocol, days = arm.protocol, arm.days
    sd = protocol.study_drug
    care = Values({**v, **{k: x for k, x in arm.adherence.items() if k != "steroid_stop_day"}})
    n = pop.n
    p = Patients(pop, v, np.random.default_rng([seed, 1]))
    pids = np.array([f"V{i + 1:05d}" for i in range(n)])
    rec = Recorder(pids, p, seed) if arm.watch else NoRecord()
    ids = sd.level_ids
    level = np.full(n, ids.index(sd.start_level))
    floor = ids.index(sd.min_level) if sd.min_level is not None else 0
    held = np.zeros(n, dtype=bool)
    stopped = np.zeros(n, dtype=bool)
    hold_term = np.full(n, "", dtype=object)
    hold_change = np.zeros(n, dtype=int)
    hold_day = np.zeros(n, dtype=int)
    resumed_on = np.zeros(n, dtype=int)
    severe_on = np.full(n, -UNDETECTED)  # last day the monitor saw an event that stops escalation begin
    esc_grade = sd.escalation.unless_grade_at_least if sd.escalation else 3
    seen: set[tuple] = set()
    last: dict[str, np.ndarray] = {c: np.full(n, np.nan) for c in (*LAB_CODES, *EXAM_CODES)}
    baseline_creat = np.full(n, np.nan)
    holds = np.zeros(n, dtype=int)
    first_hold = np.full(n, UNDETECTED)
    first_hold_term = np.full(n, "", dtype=object)
    dose_given = np.zeros(n)
    truth = {k: np.full(n, UNDETECTED) for k in ("lab_tls", "clinical_tls", "flare", "flare3", "fn", "death", "airway")}
    detected = {k: np.full(n, UNDETECTED) for k in ("tls", "flare", "flare3", "fn", "any")}
    steroid_stop = np.where(rng.random(n) < care.stop_steroid, rng.integers(2, 8, n), UNDETECTED)
    if "steroid_stop_day" in arm.adherence:  # a story: everyone stops the steroid on this study day
        steroid_stop[:] = int(arm.adherence["steroid_stop_day"])
    schedule = _schedule(protocol, days, arm.labs)
    proph = relative_prophylaxis_plan(protocol, days)
    proph_by_day: dict[int, list[tuple]] = {}
    for day, drug, role, dose, unit in proph.select("study_day", "drug", "role", "dose", "unit").iter_rows():
        proph_by_day.setdefault(day, []).append((drug, role, dose, unit))
    dex_eq = v.steroid_dex_equivalent
    resume = table("care")["resume"]
    rules = {f"{protocol.id}:{r.id}": r for r in protocol.dose_rules}
    ramp = [s.dose for s in sd.ramp_up for _ in range(s.days)]
    series: dict[str, list] = {}
    evaluations = 0
    dlt_day = np.full(n, UNDETECTED)

    # screening the day before day 1 (the Cairo-Bishop baseline is the last value before the first dose)
    everyone = np.arange(n)
    screen = list(dict.fromkeys([*LAB_CODES, *(c for cs in schedule.values() for c in cs)]))
    for code, x in rec.draw(p, -1, everyone, screen).items():
        last[code] = x.astype(float)
    baseline_creat[:] = last["CREAT"]
    for day in sorted(proph_by_day):
        if day < 1:
            _prophylaxis(rec, proph_by_day[day], day, everyone, rng, care, steroid_stop)

    for day in range(1, days + 1):
        cycle, cday = cycle_of(day, sd.cycle_days)
        alive = p.alive.copy()
        # --- the investigator's decisions for today ---
        if sd.escalation and day > 1 and (day - 1) % sd.escalation.every_days == 0:
            calm = severe_on <= day - 1 - sd.escalation.every_days
            up = alive & ~held & ~stopped & calm
            top = ids.index(sd.escalation.max_level)
            level = np.where(up, np.minimum(level + sd.escalation.steps, top), level)
        if held.any():
            ok = _resolved(held & alive & ~stopped & (day > hold_day + 1), hold_term, last, baseline_creat, resume)
            level = np.where(ok, np.maximum(level + hold_change, floor), level)
            held &= ~ok
            resumed_on = np.where(ok, day, resumed_on)
        level_dose = np.array([sd.dose_at(i) for i in ids])[level]
        every = np.array([sd.every_days_at(i) for i in ids])[level]
        planned = np.where(sd.dosing.applies(cycle, cday) & ((day - 1) % every == 0), level_dose, 0.0)
        if day - sd.ramp_up_start_day in range(len(ramp)):
            planned = np.full(n, float(ramp[day - sd.ramp_up_start_day]))
        planned = np.where(alive & ~held & ~stopped, planned, 0.0)
        taken = (planned > 0) & ((day == 1) | (rng.random(n) >= care.miss_study_drug))
        missed = (planned > 0) & ~taken
        dose = np.where(taken, planned, 0.0)
        dose_given += dose
        rec.dose(day, np.flatnonzero(taken), sd.drug, dose[taken], sd.unit, "completed")
        rec.dose(day, np.flatnonzero(missed), sd.drug, planned[missed], sd.unit, "not-done")
        on_drug = alive & ~stopped
        dex, allo, rasb, hyd = _prophylaxis(rec, proph_by_day.get(day, []), day, np.flatnonzero(on_drug), rng, care,
                                            steroid_stop, dex_eq, n)
        hyd |= arm.hydration & on_drug
        allo |= arm.allopurinol & on_drug
        rasb |= arm.rasburicase & on_drug & (day <= 7)
        # --- one day of physiology ---
        t = p.step(dose, dex, allo, rasb, hyd)
        for key, hit in (("lab_tls", t.lab_tls), ("clinical_tls", t.clinical_tls), ("flare", t.flare_grade >= 1),
                         ("flare3", t.flare_grade >= 3), ("fn", t.febrile_neutropenia), ("death", t.died),
                         ("airway", t.airway)):
            truth[key] = np.where(hit & (truth[key] == UNDETECTED), day, truth[key])
        # --- what the clinic records ---
        codes = schedule.get(day, [])
        scheduled = np.flatnonzero(alive) if codes else np.array([], dtype=int)
        ill = alive & ((p.temp >= 38.3) | (t.flare_grade >= 3) | t.airway | t.sepsis | t.died)
        presenting = np.flatnonzero(ill)  # drawn at presentation even after morning labs: a denser schedule sees a superset
        for code, x in rec.draw(p, day, scheduled, codes).items():
            last[code][scheduled] = x
        full = list(dict.fromkeys([*LAB_CODES, *EXAM_CODES]))
        for code, x in rec.draw(p, day, presenting, full, hour=14).items():
            last[code][presenting] = x
        for code, hit in (("AIRWAY", t.airway), ("SEPSIS", t.sepsis), ("HOSPITAL", t.sepsis | t.airway), ("DEATH", t.died)):
            rec.event(day, np.flatnonzero(hit), code)
        if follow is not None:
            for name, x in (("dose", dose), ("dex", dex), ("K", p.k), ("PHOS", p.phos), ("URATE", p.urate),
                            ("CREAT", p.creat), ("NEUT", p.neut.circ), ("LYM", p.alc), ("flare", p.flare_index),
                            ("held", held.astype(float)), ("measured_K", last["K"])):
                dead = truth["death"][follow] < day  # nothing to draw after the day of death
                series.setdefault(name, []).append(None if dead else float(x[follow]))
        # --- the monitor, for the patients with new data today ---
        fresh = np.union1d(scheduled, np.flatnonzero(ill))
        if not len(fresh) or not arm.watch:
            continue
        evaluations += 1
        assessments = evaluate(rec.of(fresh), protocol, date_of(day))
        for a in assessments:
            i = int(a.patient_id[1:]) - 1
            for e in a.events:
                if e.term in TLS_TERMS:
                    detected["tls"][i] = min(detected["tls"][i], day)
                if e.term == FLARE_TERM:
                    detected["flare"][i] = min(detected["flare"][i], day)
                    if (e.grade or 0) >= 3:
                        detected["flare3"][i] = min(detected["flare3"][i], day)
                if e.term == FN_TERM:
                    detected["fn"][i] = min(detected["fn"][i], day)
                if (e.grade or 0) >= esc_grade and e.onset >= date_of(1):
                    severe_on[i] = max(severe_on[i], (e.onset - date_of(1)).days + 1)
            if a.alerts:
                detected["any"][i] = min(detected["any"][i], day)
            if a.dlt.get("status") == "DLT":
                dlt_day[i] = min(dlt_day[i], day)
            for act in a.dose_actions:
                key = (i, act.date, act.rule, act.action)
                if key in seen or not arm.act:
                    continue
                seen.add(key)
                if act.study_day < resumed_on[i] or stopped[i]:
                    continue  # from before the last resume: already dealt with
                if act.action in ("hold", "hold-next-dose") and not held[i]:
                    held[i], hold_day[i] = True, day
                    hold_term[i] = act.reason.split(" grade ")[0].split(" (")[0]  # the event's term
                    rule = rules.get(act.rule)
                    hold_change[i] = rule.resume_level_change if rule else 0
                    holds[i] += 1
                    if first_hold[i] == UNDETECTED:
                        first_hold[i], first_hold_term[i] = day + 1, hold_term[i]
                elif act.action == "reduce":
                    level[i] = max(level[i] - 1, floor)
                elif act.action == "discontinue":
                    stopped[i] = True
    return Trace(truth, detected, holds, first_hold, first_hold_term, stopped.copy(), dose_given, evaluations, series,
                 dlt_day)


def _prophylaxis(rec: Recorder | NoRecord, planned: list[tuple], day: int, idx: np.ndarray, rng: np.random.Generator, care: Values,
                 steroid_stop: np.ndarray, dex_eq: dict | None = None, n: int | None = None):
    """Record today's planned prophylaxis for patients ``idx`` (taken or not, by adherence) and return
    (dexamethasone-equivalent mg, allopurinol, rasburicase, hydration) per patient."""
    size = n if n is not None else len(steroid_stop)
    dex = np.zeros(size)
    allo, rasb, hyd = (np.zeros(size, dtype=bool) for _ in range(3))
    for drug, role, amount, unit in planned:
        if role == "steroid":
            miss = (rng.random(len(idx)) < care.miss_steroid) | (day >= steroid_stop[idx])
        elif role == "uricosuric":
            miss = rng.random(len(idx)) < care.miss_allopurinol
        else:
            miss = np.zeros(len(idx), dtype=bool)
        took, skipped = idx[~miss], idx[miss]
        rec.dose(day, took, drug, np.full(len(took), amount), unit, "completed", hour=8)
        rec.dose(day, skipped, drug, np.full(len(skipped), amount), unit, "not-done", hour=8)
        if role == "steroid" and dex_eq is not None:
            dex[took] += amount * dex_eq.get(drug, 0.0)
        elif role == "uricosuric":
            if drug == "rasburicase":
                rasb[took] = True
            else:
                allo[took] = True
        elif role == "hydration":
            hyd[took] = True
    return dex, allo, rasb, hyd


def _resolved(candidates: np.ndarray, hold_term: np.ndarray, last: dict[str, np.ndarray], baseline_creat: np.ndarray,
              resume: dict) -> np.ndarray:
    """Held patients whose latest measured values meet the resume conditions of what held them."""
    ok = np.zeros(len(candidates), dtype=bool)
    for term in set(hold_term[candidates].tolist()):
        rows = candidates & (hold_term == term)
        cond = resume.get(term)
        if cond is None:  # a rule dosewatch has no resume condition for: resume once no longer held by the monitor
            ok |= rows
            continue
        good = rows.copy()
        for code, (op, cut) in cond["tests"].items():
            x = last[code]
            good &= {"<": x < cut, "<=": x <= cut, ">": x > cut, ">=": x >= cut}[op]
        if "creat_times_baseline" in cond:
            good &= last["CREAT"] <= cond["creat_times_baseline"] * baseline_creat
        if "creat_times_uln" in cond:
            good &= last["CREAT"] <= cond["creat_times_uln"] * 114.9
        ok |= good
    return ok
