"""Renal criteria: KDIGO 2012 acute kidney injury, CTCAE v5.0 "Acute kidney injury", Cockcroft-Gault.

Thresholds live in ``criteria/data/kdigo-2012.yaml`` with their sources. The small helpers at the top
(``load_table``, ``meets``, ``clinical_events``, ``evidence_for``) are shared with the
neutropenia, flare and risk modules.
"""
from __future__ import annotations

import datetime as dt
from functools import cache
from importlib import resources

import numpy as np
import polars as pl

from ..analytes import catalog
from ..events import Event, Evidence
from ..record import Cohort, day1_frame
from ..units import normalize_unit
from ..yaml_load import safe_load


@cache
def load_table(name: str) -> dict:
    """A criteria data file from ``criteria/data`` (parsed once)."""
    text = resources.files("dosewatch").joinpath(f"criteria/data/{name}").read_text()
    return safe_load(text)


def meets(x, op: str, cutoff, tol: float):
    """``x op cutoff`` with a relative tolerance at the cut-off (criteria.md decision 3).

    Works on numbers, numpy arrays and polars expressions. ">=" and "<=" accept a value a hair
    short of the cut-off (1.2 - 0.9 meets "+0.3"); ">" and "<" reject a value a hair past it.
    """
    slack = (cutoff.abs() if isinstance(cutoff, pl.Expr) else abs(cutoff)) * tol
    if op == ">=":
        return x >= cutoff - slack
    if op == ">":
        return x > cutoff + slack
    if op == "<=":
        return x <= cutoff + slack
    if op == "<":
        return x < cutoff - slack
    raise ValueError(f"unknown operator {op!r}")


def clinical_events(cohort: Cohort, codes: list[str]) -> pl.DataFrame:
    """Clinical events of the given codes (patient_id, event_id, code, date, end_date).

    DEATH also comes from ``patients.deceased_date`` (reference ``Patient/<id>``).
    """
    ev = cohort.events.filter(pl.col("code").is_in(codes) & pl.col("date").is_not_null()).select(
        "patient_id", "event_id", "code", "date", "end_date"
    )
    if "DEATH" in codes:
        dead = cohort.patients.filter(pl.col("deceased_date").is_not_null()).select(
            "patient_id",
            (pl.lit("Patient/") + pl.col("patient_id")).alias("event_id"),
            pl.lit("DEATH").alias("code"),
            pl.col("deceased_date").alias("date"),
            pl.lit(None, pl.Date).alias("end_date"),
        )
        ev = pl.concat([ev, dead])
    return ev.unique(subset=["patient_id", "code", "date"], keep="first", maintain_order=True)


def events_between(events: pl.DataFrame, patient_id: str, start: dt.date, end: dt.date) -> pl.DataFrame:
    """Clinical events of one patient that start within [start, end]."""
    return events.filter(
        (pl.col("patient_id") == patient_id) & (pl.col("date") >= start) & (pl.col("date") <= end)
    ).sort("date")


def evidence_for(row: dict, note: str | None = None) -> Evidence:
    """Evidence from an observation row: the value and unit as reported (native unit), else canonical."""
    reported = row.get("orig_value") is not None and row.get("orig_unit")
    return Evidence(
        ref=row["obs_id"],
        code=row["code"],
        value=row["orig_value"] if reported else row["value"],
        unit=row["orig_unit"] if reported else row["unit"],
        date=row["date"],
        note=note,
    )


def event_evidence(row: dict, note: str | None = None) -> Evidence:
    return Evidence(ref=row["event_id"], code=row["code"], value=None, unit=None, date=row["date"], note=note)


# --- Cockcroft-Gault --------------------------------------------------------------------------


def cockcroft_gault(age_years, weight_kg, creat_umol_l, sex):
    """Creatinine clearance in mL/min (Cockcroft & Gault, Nephron 1976;16:31-41).

    CrCl = (140 - age) x weight / (72 x SCr[mg/dL]), x 0.85 for women. Uses the weight given (the
    original used actual body weight) and the creatinine as measured (no rounding up of low values).
    SCr in umol/L is converted to mg/dL with creatinine's molar mass (1 mg/dL = 88.40 umol/L).
    Vectorised: numpy arrays in, an array out; scalars in, a float out. Sex other than "M" / "F"
    gives NaN (the formula needs it).
    """
    cg = load_table("kdigo-2012.yaml")["cockcroft_gault"]
    per_mg_dl = catalog()["CREAT"].conversion("mg/dL")[0]  # umol/L per mg/dL
    age = np.asarray(age_years, dtype=float)
    weight = np.asarray(weight_kg, dtype=float)
    scr = np.asarray(creat_umol_l, dtype=float) / per_mg_dl
    sex = np.asarray(sex, dtype=object)
    factor = np.where(sex == "F", cg["female_factor"]["value"], np.where(sex == "M", 1.0, np.nan))
    crcl = (cg["age_constant"]["value"] - age) * weight / (cg["divisor"]["value"] * scr) * factor
    return float(crcl) if np.ndim(crcl) == 0 else crcl


# --- KDIGO 2012 AKI ---------------------------------------------------------------------------


def _creatinine_rows(cohort: Cohort, day1: dict[str, dt.date], baseline: str) -> pl.DataFrame:
    """Every creatinine with its 48-hour comparator, its baseline, the AKI test and the stage."""
    aki = load_table("kdigo-2012.yaml")["aki"]
    tol = aki["settings"]["tolerance"]
    rise, ratio = aki["definition"]
    per_mg_dl = catalog()["CREAT"].conversion("mg/dL")[0]
    obs = (
        cohort.observations.filter((pl.col("code") == "CREAT") & pl.col("value").is_not_null())
        .join(day1_frame(day1), on="patient_id", how="inner")
        .sort("patient_id", "time", "obs_id")
    )
    units = {u: normalize_unit(u) for u in obs["orig_unit"].drop_nulls().unique().to_list()}
    obs = obs.with_columns(
        (pl.col("orig_unit").replace_strict(units, default=None) == "mg/dL").fill_null(False).alias("mg_dl")
    )
    # Native-unit rule: a value reported in mg/dL is held to the mg/dL cut-off, else to the umol/L one.
    def native(cut: dict) -> pl.Expr:
        return pl.when(pl.col("mg_dl")).then(cut["mg/dL"] * per_mg_dl).otherwise(cut["umol/L"])

    def prior_min(period: str, suffix: str) -> pl.DataFrame:
        # Window [t - period, t): earlier values only. Rows at the same time share one window.
        return (
            obs.rolling(index_column="time", period=period, closed="left", group_by="patient_id")
            .agg(
                pl.col("value").min().alias(f"min_{suffix}"),
                pl.col("obs_id").sort_by("value").first().alias(f"min_{suffix}_id"),
            )
            .unique(subset=["patient_id", "time"])
        )

    obs = obs.join(prior_min(f"{rise['window_hours']}h", "48h"), on=["patient_id", "time"], how="left")
    obs = obs.join(prior_min(f"{ratio['window_days']}d", "7d"), on=["patient_id", "time"], how="left")
    if baseline == "lowest-7d":
        obs = obs.with_columns(pl.col("min_7d").alias("base"), pl.col("min_7d_id").alias("base_id"))
    elif baseline == "pretreatment":
        pre = (
            obs.filter(pl.col("date") < pl.col("day1"))
            .group_by("patient_id")
            .agg(pl.col("value").last().alias("base"), pl.col("obs_id").last().alias("base_id"))
        )
        obs = obs.join(pre, on="patient_id", how="left")
    else:
        raise ValueError(f"unknown AKI baseline {baseline!r}: use 'lowest-7d' or 'pretreatment'")

    ratio_x = pl.col("value") / pl.col("base")
    by_rise = meets(pl.col("value") - pl.col("min_48h"), rise["op"], native(rise["value"]), tol).fill_null(False)
    by_ratio = meets(ratio_x, ratio["op"], ratio["value"], tol).fill_null(False)
    absolute = aki["stage3_absolute"]
    stage = pl.lit(1)
    for row in aki["stages"]:  # ascending: the last band met wins; gaps fall to the lower stage
        stage = pl.when(meets(ratio_x, ">=", row["ratio_min"], tol).fill_null(False)).then(row["stage"]).otherwise(stage)
    stage = pl.when(meets(pl.col("value"), absolute["op"], native(absolute["value"]), tol)).then(3).otherwise(stage)
    return obs.with_columns(
        ratio_x.alias("ratio"),
        (pl.col("value") - pl.col("min_48h")).alias("rise"),
        by_rise.alias("by_rise"),
        by_ratio.alias("by_ratio"),
        (by_rise | by_ratio).alias("aki"),
    ).with_columns(pl.when(pl.col("aki")).then(stage).otherwise(None).cast(pl.Int32).alias("stage"))


def _fmt(value: float, mg_dl: bool, per_mg_dl: float) -> str:
    return f"{value / per_mg_dl:.4g} mg/dL" if mg_dl else f"{value:.4g} umol/L"


def detect_aki(
    cohort: Cohort,
    day1: dict[str, dt.date],
    *,
    baseline: str | None = None,
    ctcae: str = "ctcae-5.0",
) -> list[Event]:
    """KDIGO 2012 AKI episodes from serum creatinine, and the CTCAE v5.0 "Acute kidney injury" grade.

    A creatinine is "in AKI" when it is >= 0.3 mg/dL (26.5 umol/L) above a value of the previous
    48 hours, or >= 1.5 x baseline (``baseline``: "lowest-7d", the lowest value of the previous 7 days,
    the default; or "pretreatment", the last value dated before day 1). An episode is a run of
    consecutive creatinines in AKI that starts on or after day 1 (earlier values serve as comparators
    only). KDIGO events carry the stage in ``grade``: 1 (1.5-1.9x or +0.3), 2 (2.0-2.9x), 3 (>= 3.0x,
    or >= 4.0 mg/dL / 353.6 umol/L while in AKI, or a DIALYSIS event during the episode). Urine output
    is not read. A CTCAE v5.0 event is added only when the record holds the fact: HOSPITAL (grade 3),
    DIALYSIS (4) or DEATH (5) dated from the onset to ``event_grace_days`` after the last AKI value.
    Patients missing from ``day1`` are not evaluated.
    """
    if ctcae != "ctcae-5.0":
        raise ValueError(f"Acute kidney injury is graded with ctcae-5.0 only, not {ctcae!r}")
    table = load_table("kdigo-2012.yaml")
    aki, ct = table["aki"], table["ctcae_aki"]
    settings = aki["settings"]
    baseline = baseline or settings["baseline"]
    per_mg_dl = catalog()["CREAT"].conversion("mg/dL")[0]
    rows = _creatinine_rows(cohort, day1, baseline)
    # Episodes: runs of consecutive AKI rows among the creatinines dated on or after day 1.
    on_study = rows.filter(pl.col("date") >= pl.col("day1")).with_columns(
        (pl.col("aki") != pl.col("aki").shift(1).over("patient_id")).fill_null(True).cum_sum().over("patient_id").alias("run")
    )
    episodes: dict[tuple[str, int], list[dict]] = {}
    for r in on_study.filter(pl.col("aki")).iter_rows(named=True):
        episodes.setdefault((r["patient_id"], r["run"]), []).append(r)
    # Only the comparators that evidence will name are looked up (not every creatinine).
    refs = {r[k] for ep in episodes.values() for r in ep for k in ("min_48h_id", "base_id") if r[k] is not None}
    by_id = {r["obs_id"]: r for r in rows.filter(pl.col("obs_id").is_in(list(refs))).iter_rows(named=True)}
    codes = [ct_row["event"] for ct_row in ct["grades"]] + [aki["stage3_rrt"]["event"]]
    clinical: dict[str, list[dict]] = {}
    for fact in clinical_events(cohort, sorted(set(codes))).sort("date", maintain_order=True).iter_rows(named=True):
        clinical.setdefault(fact["patient_id"], []).append(fact)
    out: list[Event] = []
    for (pid, _), ep_rows in episodes.items():
        first, last = ep_rows[0], ep_rows[-1]
        peak = max(ep_rows, key=lambda r: (r["stage"], r["ratio"] or 0.0, r["value"]))
        span_end = last["date"] + dt.timedelta(days=settings["event_grace_days"])
        facts = [f for f in clinical.get(pid, ()) if first["date"] <= f["date"] <= span_end]
        rrt = next((f for f in facts if f["code"] == aki["stage3_rrt"]["event"]), None)
        stage, how = peak["stage"], _stage_reason(peak, aki, tol=settings["tolerance"])
        evidence = _row_evidence(first, by_id, per_mg_dl)
        if peak["obs_id"] != first["obs_id"]:
            seen = {e.ref for e in evidence}
            evidence += [e for e in _row_evidence(peak, by_id, per_mg_dl) if e.ref not in seen]
        if rrt is not None:
            stage, how = 3, "renal replacement therapy started"
            evidence.append(event_evidence(rrt, "renal replacement therapy: KDIGO stage 3"))
        detail = {"baseline": baseline, "stage_by": how, "last_aki_date": last["date"].isoformat()}
        out.append(Event(pid, aki["term"], aki["criteria"], stage, first["date"], tuple(evidence), f"stage-{stage}", detail))
        graded = [(g["grade"], g) for g in ct["grades"] if any(f["code"] == g["event"] for f in facts)]
        if graded:
            grade, g = max(graded, key=lambda x: x[0])
            fact = next(f for f in facts if f["code"] == g["event"])
            ev = (*evidence[:2], event_evidence(fact, g["source"]))
            out.append(Event(pid, ct["term"], ct["criteria"], grade, first["date"], ev, f"grade-{grade}"))
    return out


def _stage_reason(row: dict, aki: dict, tol: float) -> str:
    if row["stage"] == 3 and not meets(row["ratio"] or 0.0, ">=", aki["stages"][-1]["ratio_min"], tol):
        return "creatinine >= 4.0 mg/dL (353.6 umol/L) with AKI present"
    if row["by_ratio"]:
        return f"{row['ratio']:.3g} x baseline"
    return "rise >= 0.3 mg/dL (26.5 umol/L) within 48 h"


def _row_evidence(row: dict, by_id: dict, per_mg_dl: float) -> list[Evidence]:
    """The creatinine and the values it was compared with, each with what the comparison showed."""
    parts = []
    if row["by_rise"]:
        parts.append(f"+{_fmt(row['rise'], row['mg_dl'], per_mg_dl)} within 48 h of {row['min_48h_id']}")
    if row["base"] is not None:
        parts.append(f"{row['ratio']:.3g} x baseline {row['base_id']}")
    out = [evidence_for(row, f"KDIGO stage {row['stage']}: " + "; ".join(parts))]
    for ref, role in ((row["min_48h_id"], "48-hour comparator"), (row["base_id"], "baseline")):
        if ref is not None and ref not in {e.ref for e in out}:
            out.append(evidence_for(by_id[ref], role))
    return out
