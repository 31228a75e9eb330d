"""Tumor flare reaction (lenalidomide in CLL), graded by NCI CTCAE v3.0 "Tumor flare".

The rule and every threshold are in ``criteria/data/tumor-flare.yaml``:

* a **lymphoid finding**: a tender lymph node (LNTENDER = 1), or a node (LNDIAM, per site), the spleen,
  the liver or the tonsils enlarged from baseline;
* with at least one **companion** on the same day (``companion_days``): pain (PAIN / PAINNRS >= 1),
  fever (TEMP with a CTCAE v5.0 Fever grade >= 1, or FEVER = 1), rash (RASH >= 1), or an ALC rise;
* within the flare window after day 1 (or after each dose increase, when re-anchoring);
* baseline: the last value dated before the anchor date, per code and lymph-node site.

Grade (CTCAE v3.0): the worst recorded pain from onset to the last flare day, mapped mild / moderate /
severe -> 1 / 2 / 3 (PAIN grade by its word, PAINNRS by Serlin 1995), at least 1; 4 with an AIRWAY or
MECHVENT event, 5 with death, from onset to ``event_grace_days`` after the last flare day.
"""
from __future__ import annotations

import datetime as dt

import polars as pl

from ..events import Event, Evidence
from ..record import Cohort, day1_frame
from .neutropenia import fever_grade
from .renal import clinical_events, event_evidence, events_between, evidence_for, load_table, meets


def _table() -> dict:
    return load_table("tumor-flare.yaml")


def _anchors(cohort: Cohort, day1: dict[str, dt.date], drug: str, reanchor: bool) -> pl.DataFrame:
    """Day 1 per patient; each restart of the study drug after a pause (flare recurs when the drug is
    started again: Andritsos 2007, patient 3); and, with ``reanchor``, each date the dose went up."""
    t = _table()
    anchors = day1_frame(day1).rename({"day1": "anchor"})
    given = (
        cohort.doses.filter((pl.col("drug") == drug.lower()) & (pl.col("status") == "completed"))
        .sort("patient_id", "time")
        .with_columns(
            pl.col("dose").shift(1).over("patient_id").alias("previous"),
            pl.col("date").shift(1).over("patient_id").alias("previous_date"),
        )
        .join(anchors, on="patient_id", how="inner")
        .filter(pl.col("date") > pl.col("anchor"))
    )
    restart = (pl.col("date") - pl.col("previous_date")).dt.total_days() > t["window"]["restart_gap_days"]
    moved = restart | (pl.col("dose") > pl.col("previous")) if reanchor else restart
    extra = given.filter(moved).select("patient_id", pl.col("date").alias("anchor"))
    return pl.concat([anchors, extra]).unique(maintain_order=True).sort("patient_id", "anchor")


def _episodes(days: list[dt.date], clear: set[dt.date]) -> list[list[dt.date]]:
    """Flare days split into separate flares wherever an examination in between found no flare."""
    episodes: list[list[dt.date]] = []
    for d in days:
        if episodes and not any(episodes[-1][-1] < c < d for c in clear):
            episodes[-1].append(d)
        else:
            episodes.append([d])
    return episodes


def _findings(cohort: Cohort, anchors: pl.DataFrame) -> pl.DataFrame:
    """Observations in each anchor's window with their baseline and whether they meet their rule
    (in no particular order)."""
    t = _table()
    tol = t["tolerance"]
    rules = {r["code"]: (role, r) for role in ("lymphoid", "companions") for r in t[role]}
    obs = (
        cohort.observations.select("patient_id", "obs_id", "code", "site", "time", "date", "value", "unit",
                                   "orig_value", "orig_unit")
        .filter(pl.col("code").is_in(list(rules)) & pl.col("value").is_not_null())
        .join(anchors, on="patient_id", how="inner")
    )
    keys = ["patient_id", "anchor", "code", "site"]
    base = (
        obs.filter(pl.col("date") < pl.col("anchor"))
        .sort("time", "obs_id")
        .group_by(keys)
        .agg(pl.col("value").last().alias("base"), pl.col("obs_id").last().alias("base_id"))
    )
    window = obs.filter(
        (pl.col("date") >= pl.col("anchor")) & (pl.col("date") <= pl.col("anchor") + pl.duration(days=t["window"]["days"]))
    ).join(base, on=keys, how="left", nulls_equal=True)
    window = window.with_columns(pl.Series("fever_grade", fever_grade(window["value"].to_numpy())))
    rise = pl.col("value") - pl.col("base")
    hit = pl.lit(False)
    role = pl.lit(None, pl.String)
    rule_id = pl.lit(None, pl.String)
    for code, (kind, r) in rules.items():
        if r["test"] == "value":
            test = meets(pl.col("value"), r["op"], r["value"], tol)
        elif r["test"] == "fever_grade":
            test = pl.col("fever_grade") >= r["value"]
        else:  # increase from baseline, in the unit of the value and/or as a percent of baseline
            test = pl.lit(True)
            if "at_least_cm" in r or "at_least" in r:
                test &= meets(rise, ">=", r.get("at_least_cm", r.get("at_least")), tol)
            if "percent" in r:
                test &= meets(rise * 100 / pl.col("base"), ">=", r["percent"], tol)
            test = test.fill_null(False)
        is_code = pl.col("code") == code
        hit = pl.when(is_code).then(test).otherwise(hit)
        role = pl.when(is_code).then(pl.lit(kind)).otherwise(role)
        rule_id = pl.when(is_code).then(pl.lit(r["id"])).otherwise(rule_id)
    return window.with_columns(hit.alias("hit"), role.alias("role"), rule_id.alias("rule"))


def _pain_grade(code: str, value: float) -> int:
    t = _table()
    grade = 0
    for band in t["pain_map"][code]["bands"]:
        if meets(value, ">=", band["min"], t["tolerance"]):
            grade = band["grade"]
    return grade


_INCREASES = {r["id"] for role in ("lymphoid", "companions") for r in load_table("tumor-flare.yaml")[role] if r["test"] == "increase"}


def _note(row: dict) -> str:
    where = f" at {row['site']}" if row["site"] else ""
    if row["rule"] not in _INCREASES:
        return f"tumor flare: {row['rule']}{where}"
    rise = row["value"] - row["base"]
    pct = f" ({100 * rise / row['base']:+.3g}%)" if row["base"] else ""
    return f"tumor flare: {row['rule']}{where}, {rise:+.3g}{pct} from baseline {row['base']:.3g} ({row['base_id']})"


def detect_tumor_flare(
    cohort: Cohort,
    day1: dict[str, dt.date],
    *,
    drug: str = "lenalidomide",
    reanchor_on_dose_increase: bool | None = None,
) -> list[Event]:
    """Tumor flare reactions after day 1 (and, if re-anchoring, after each dose increase of ``drug``).

    Term "Tumor flare reaction", criteria "ctcae-3.0" (the v3.0 "Tumor flare" scale the lenalidomide CLL
    trials used; v4/v5 have no flare term). One event per anchor with a flare; a flare found from a
    later anchor that starts before the previous flare's last day is the same flare and is not repeated.
    """
    t = _table()
    reanchor = t["window"]["reanchor_on_dose_increase"] if reanchor_on_dose_increase is None else reanchor_on_dose_increase
    found = _findings(cohort, _anchors(cohort, day1, drug, reanchor))
    clinical = clinical_events(cohort, sorted({c for g in t["grades"] for c in g.get("events", [])}))
    near = dt.timedelta(days=t["companion_days"])
    # Only (patient, anchor) windows with both a lymphoid hit and a companion hit can hold a flare.
    hits_by_role = found.filter(pl.col("hit")).group_by("patient_id", "anchor").agg(pl.col("role").n_unique().alias("roles"))
    candidates = hits_by_role.filter(pl.col("roles") == 2).select("patient_id", "anchor")
    found = found.join(candidates, on=["patient_id", "anchor"], how="semi").sort("patient_id", "anchor", "time", "obs_id")
    base_ids = found["base_id"].drop_nulls().unique().to_list()
    baselines = {r["obs_id"]: r for r in cohort.observations.filter(pl.col("obs_id").is_in(base_ids)).iter_rows(named=True)}
    out: list[Event] = []
    last_day: dict[str, dt.date] = {}
    for (pid, anchor), rows in found.group_by(["patient_id", "anchor"], maintain_order=True):
        rows = list(rows.iter_rows(named=True))
        hits = [r for r in rows if r["hit"]]
        companion_days = sorted({r["date"] for r in hits if r["role"] == "companions"})
        flare_days = sorted(
            {r["date"] for r in hits if r["role"] == "lymphoid" and any(abs(c - r["date"]) <= near for c in companion_days)}
        )
        examined = {r["date"] for r in rows if r["role"] == "lymphoid"}
        for episode in _episodes(flare_days, examined - set(flare_days)):
            if pid in last_day and episode[0] <= last_day[pid]:
                continue
            last_day[pid] = episode[-1]
            out.append(_flare_event(t, pid, anchor, episode[0], episode[-1], rows, hits, near, baselines, clinical))
    return out


def _flare_event(t: dict, pid: str, anchor: dt.date, onset: dt.date, end: dt.date, rows: list[dict], hits: list[dict],
                 near: dt.timedelta, baselines: dict, clinical: pl.DataFrame) -> Event:
    """One flare from ``onset`` to ``end``: its evidence on the onset day and its worst grade."""
    on_onset = [r for r in hits if r["role"] == "lymphoid" and r["date"] == onset] + [
        r for r in hits if r["role"] == "companions" and abs(r["date"] - onset) <= near
    ]
    evidence: list[Evidence] = [evidence_for(r, _note(r)) for r in on_onset]
    for ref in dict.fromkeys(r["base_id"] for r in on_onset if r["rule"] in _INCREASES and r["base_id"]):
        evidence.append(evidence_for(baselines[ref], "baseline"))
    grade, pain_row = t["minimum_grade"], None
    for r in rows:
        if r["code"] in t["pain_map"] and onset <= r["date"] <= end:
            g = _pain_grade(r["code"], r["value"])
            if g > grade or (g == grade and pain_row is None and g > 0):
                grade, pain_row = g, r
    if pain_row is not None and pain_row["obs_id"] not in {e.ref for e in evidence}:
        evidence.append(evidence_for(pain_row, f"pain -> CTCAE v3.0 Tumor flare grade {grade}"))
    facts = events_between(clinical, pid, onset, end + dt.timedelta(days=t["event_grace_days"]))
    for g in t["grades"]:
        hit = facts.filter(pl.col("code").is_in(g.get("events", [])))
        if hit.height:
            grade = g["grade"]
            evidence.append(event_evidence(hit.row(0, named=True), f"CTCAE v3.0 Tumor flare grade {g['grade']}: {g['text']}"))
    fevers = [r["fever_grade"] for r in hits if r["code"] == "TEMP" and onset <= r["date"] <= end]
    detail = {
        "anchor": anchor.isoformat(),
        "last_flare_day": end.isoformat(),
        "findings": sorted({r["rule"] for r in hits if onset <= r["date"] <= end}),
    }
    if fevers:
        detail["fever_grade_ctcae_5"] = max(fevers)
    return Event(pid, t["term"], t["criteria"], grade, onset, tuple(evidence), f"grade-{grade}", detail)
