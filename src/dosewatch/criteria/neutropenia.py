"""CTCAE v5.0 "Febrile neutropenia", and the CTCAE v5.0 "Fever" grade used by the flare criteria.

Thresholds live in ``criteria/data/febrile-neutropenia.yaml`` with their sources.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from ..events import Event
from ..record import Cohort, day1_frame
from ..units import normalize_unit
from .renal import clinical_events, event_evidence, events_between, evidence_for, load_table, meets


def _table() -> dict:
    return load_table("febrile-neutropenia.yaml")


def fever_grade(temp_c, hours_above_40=None):
    """CTCAE v5.0 "Fever" grade (0 = no fever) of temperatures in degrees Celsius.

    1: 38.0-39.0; 2: >39.0-40.0; 3: >40.0 for <= 24 h; 4: >40.0 for > 24 h. ``hours_above_40`` is how
    long the temperature had stayed above 40.0 C; without it a temperature above 40.0 is grade 3
    (graded from the numbers given, criteria.md decision 4). Vectorised over numpy arrays; NaN gives 0.
    """
    fever = _table()["fever"]
    tol = fever["tolerance"]
    t = np.asarray(temp_c, dtype=float)
    hours = np.zeros_like(t) if hours_above_40 is None else np.asarray(hours_above_40, dtype=float)
    grade = np.zeros(np.shape(t), dtype=np.int64)
    with np.errstate(invalid="ignore"):
        for row in fever["grades"]:  # ascending: the highest grade met wins
            hit = meets(t, row["op"], row["value"], tol)
            if "hours_more_than" in row:
                hit &= hours > row["hours_more_than"]
            grade = np.where(hit, row["grade"], grade)
    return int(grade) if grade.ndim == 0 else grade


def _temperatures(cohort: Cohort, day1: dict[str, dt.date]) -> pl.DataFrame:
    """Temperatures with the febrile-neutropenia tests, in the unit reported (native-unit rule)."""
    fn = _table()["febrile_neutropenia"]
    tol = fn["settings"]["tolerance"]
    single, sustained = fn["single"], fn["sustained"]
    temps = (
        cohort.observations.filter((pl.col("code") == "TEMP") & pl.col("value").is_not_null())
        .join(day1_frame(day1), on="patient_id", how="inner")
        .sort("patient_id", "time", "obs_id")
    )
    units = {u: normalize_unit(u) for u in temps["orig_unit"].drop_nulls().unique().to_list()}
    is_f = (pl.col("orig_unit").replace_strict(units, default=None) == "[degF]").fill_null(False) & pl.col(
        "orig_value"
    ).is_not_null()
    native = pl.when(is_f).then(pl.col("orig_value")).otherwise(pl.col("value"))

    def cut(values: dict) -> pl.Expr:
        return pl.when(is_f).then(values["[degF]"]).otherwise(values["Cel"])

    temps = temps.with_columns(
        meets(native, single["op"], cut(single["value"]), tol).alias("single"),
        meets(native, sustained["op"], cut(sustained["value"]), tol).alias("high"),
    )
    # "Sustained for more than one hour": a run of readings at or above 38.0 C with no reading below it
    # in between, lasting more than 60 minutes from its first reading. Only readings with a known clock
    # time take part: a date-only reading cannot show how long a fever lasted.
    timed = temps.filter(pl.col("time_known")).with_columns(
        (pl.col("high") != pl.col("high").shift(1).over("patient_id")).fill_null(True).cum_sum().over("patient_id").alias("run")
    )
    timed = timed.with_columns(
        pl.col("time").first().over("patient_id", "run").alias("run_start"),
        pl.col("obs_id").first().over("patient_id", "run").alias("run_start_id"),
    ).with_columns(
        (pl.col("high") & (pl.col("time") - pl.col("run_start") > pl.duration(minutes=sustained["minutes_more_than"]))).alias(
            "sustained"
        )
    )
    return temps.join(timed.select("obs_id", "sustained", "run_start_id"), on="obs_id", how="left").with_columns(
        pl.col("sustained").fill_null(False)
    )


def detect_febrile_neutropenia(
    cohort: Cohort, day1: dict[str, dt.date], *, window_hours: float | None = None
) -> list[Event]:
    """CTCAE v5.0 "Febrile neutropenia" episodes on or after day 1.

    A fever qualifies when a single temperature is > 38.3 C (> 101 F if reported in F), or readings
    >= 38.0 C (>= 100.4 F) have lasted more than 60 minutes with none below in between. It makes febrile
    neutropenia when an ANC < 1.0 x 10^9/L was taken within ``window_hours`` (default in the data file:
    24 h) of it. Qualifying fevers within ``window_hours`` of the previous one form one episode; its
    onset is the date of its first qualifying fever. Grade 3; 4 with a SEPSIS or MECHVENT event, 5 with
    death, dated from the onset to ``event_grace_days`` after the last qualifying fever.
    """
    fn = _table()["febrile_neutropenia"]
    settings = fn["settings"]
    window = settings["window_hours"] if window_hours is None else window_hours
    tol = settings["tolerance"]
    temps = _temperatures(cohort, day1)
    febrile = temps.filter((pl.col("single") | pl.col("sustained")) & (pl.col("date") >= pl.col("day1")))
    anc = cohort.observations.filter(
        (pl.col("code") == fn["anc"]["code"]) & meets(pl.col("value"), fn["anc"]["op"], fn["anc"]["value"], tol)
    )
    gap = (pl.col("time_anc") - pl.col("time")).abs()
    paired = (
        febrile.join(anc, on="patient_id", suffix="_anc")
        .filter(gap <= pl.duration(microseconds=int(window * 3_600_000_000)))
        .sort("patient_id", "time", gap)
        .unique(subset="obs_id", keep="first", maintain_order=True)  # the nearest ANC for each fever
        .with_columns(
            ((pl.col("time") - pl.col("time").shift(1).over("patient_id")) > pl.duration(hours=window))
            .fill_null(True)
            .cum_sum()
            .over("patient_id")
            .alias("episode")
        )
    )
    # only the run starts that evidence will name (not every temperature row)
    starts = paired.filter(pl.col("sustained") & ~pl.col("single"))["run_start_id"].drop_nulls().unique()
    by_id = {r["obs_id"]: r for r in temps.filter(pl.col("obs_id").is_in(starts.implode())).iter_rows(named=True)}
    clinical = clinical_events(cohort, sorted({c for g in fn["grades"] for c in g.get("events", [])}))
    out: list[Event] = []
    for (pid, _), ep in paired.group_by(["patient_id", "episode"], maintain_order=True):
        first, last = ep.row(0, named=True), ep.row(-1, named=True)
        evidence = [evidence_for(first, _fever_note(first))]
        if first["sustained"] and not first["single"]:
            evidence.append(evidence_for(by_id[first["run_start_id"]], "start of the sustained fever"))
        anc_row = {k.removesuffix("_anc"): v for k, v in first.items() if k.endswith("_anc")}
        anc_row["code"] = fn["anc"]["code"]
        evidence.append(evidence_for(anc_row, "ANC < 1.0 x 10^9/L"))
        facts = events_between(clinical, pid, first["date"], last["date"] + dt.timedelta(days=settings["event_grace_days"]))
        grade = 3
        for g in fn["grades"]:
            hit = facts.filter(pl.col("code").is_in(g.get("events", [])))
            if hit.height:
                grade = g["grade"]
                evidence.append(event_evidence(hit.row(0, named=True), g["source"]))
        detail = {"window_hours": window, "last_fever_date": last["date"].isoformat()}
        out.append(Event(pid, fn["term"], fn["criteria"], grade, first["date"], tuple(evidence), f"grade-{grade}", detail))
    return out


def _fever_note(row: dict) -> str:
    if row["single"]:
        return "single temperature > 38.3 C (101 F)"
    return "temperature >= 38.0 C (100.4 F) sustained for more than one hour"
