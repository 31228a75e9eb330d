"""Adherence: the protocol's plan for each day compared with what the record shows was given and
measured. Prophylaxis taken, study-drug doses against the plan, required labs recorded; each finding
becomes an alert of kind ``adherence:<kind>``. The work is done on whole columns for all patients.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from ..analytes import catalog
from ..protocols.model import Protocol
from ..protocols.schedule import DoseChange
from ..record import study_day
from .plans import Plans, level_for_dose


@dataclass(frozen=True)
class Finding:
    """An adherence finding: a missed prophylaxis dose, a dose given while held, a missing lab."""

    date: dt.date
    study_day: int | None
    kind: str  # prophylaxis-not-done | prophylaxis-missing | dose-while-held | dose-above-plan | lab-missing
    message: str
    refs: tuple[str, ...] = ()
    # The first day the record supports the finding: a day without a record once it has passed, a
    # prophylaxis day (required while the study drug is given) once the drug is given on or after it.
    known: dt.date | None = None

    @property
    def known_on(self) -> dt.date:
        return self.known or self.date

    def as_dict(self) -> dict[str, Any]:
        return {"study_day": self.study_day, "date": self.date.isoformat(), "known_on": self.known_on.isoformat(),
                "kind": self.kind, "message": self.message, "refs": list(self.refs)}



def adherence_findings(protocol: Protocol, as_of: dt.date, doses: pl.DataFrame, obs: pl.DataFrame, given: pl.DataFrame,
                       started: dict[str, dt.date], stop: dict[str, dt.date | None],
                       own: dict[str, dict[int, tuple[str, float, int]]], plans: Plans) -> dict[str, list[Finding]]:
    """Prophylaxis, study-drug records and assessment adherence up to ``as_of`` for every started
    patient, on whole columns. ``stop`` (death, or the day the drug was discontinued) ends what is
    required; ``own`` holds the plans of the patients whose plan is not the protocol's unchanged one
    (their doses are checked against it by ``dose_findings``)."""
    if not started:
        return {}
    patients = pl.DataFrame(
        {"patient_id": list(started), "day1": list(started.values()), "stop": [stop[p] for p in started]},
        schema={"patient_id": pl.String, "day1": pl.Date, "stop": pl.Date},
    ).join(given.group_by("patient_id").agg(pl.col("date").max().alias("last")), on="patient_id", how="left")
    parts = [
        _prophylaxis_findings(protocol, as_of, doses, patients, plans, given),
        _study_drug_not_recorded(protocol, as_of, doses, patients, plans, own),
        _labs_missing(protocol, as_of, obs, patients, plans),
    ]
    rows = pl.concat([p for p in parts if p.height], how="vertical") if any(p.height for p in parts) else None
    out: dict[str, list[Finding]] = {}
    if rows is None:
        return out
    # The order the findings were listed in before sorting by (date, kind): prophylaxis by protocol
    # order, doses by time; one lab finding per day.
    for pid, date, day, kind, message, refs, known in rows.sort("patient_id", "date", "kind", "tie").select(
            "patient_id", "date", "study_day", "kind", "message", "refs", "known").iter_rows():
        out.setdefault(pid, []).append(Finding(date, day, kind, message, tuple(refs), known))
    return out


FINDINGS_SCHEMA = {"patient_id": pl.String, "date": pl.Date, "study_day": pl.Int32, "kind": pl.String,
                   "message": pl.String, "refs": pl.List(pl.String), "tie": pl.Int64, "known": pl.Date}


def _prophylaxis_findings(protocol: Protocol, as_of: dt.date, doses: pl.DataFrame, patients: pl.DataFrame,
                          plans: Plans, given: pl.DataFrame) -> pl.DataFrame:
    """Prophylaxis is required on its planned days while the patient is on the study drug (day 1 up to
    the last dose given so far, before ``stop``); an alternative drug (prednisone for dexamethasone)
    satisfies it. A dose recorded as not taken is reported on any such day; a day without a record
    only once it has passed."""
    frames = []
    next_dose = given.select("patient_id", pl.col("date").alias("next")).unique().sort("next")
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
        # Known once the study drug was given on or after the day (and, for a day without a record, once it passed).
        due = due.sort("date").join_asof(next_dose, left_on="date", right_on="next", by="patient_id", strategy="forward",
                                        check_sortedness=False)
        known = pl.max_horizontal("next", pl.when(pl.col("dose_id").is_null()).then(pl.col("date") + pl.duration(days=1))
                                  .otherwise(pl.col("date")))
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
            known.alias("known"),
        ).cast(FINDINGS_SCHEMA))
    return pl.concat(frames) if frames else pl.DataFrame(schema=FINDINGS_SCHEMA)


DOSING_STATES = ("on", "ramp-up")  # plan states with a dose of the study drug


def follow_given(protocol: Protocol, plans: Plans, day1: dt.date, changes: list[DoseChange],
                 given: list[tuple[dt.date, float, str]]) -> tuple[list[DoseChange], list[Finding]]:
    """The plan follows the doses given: a day's dose below the plan (the investigator reduced it) sets
    the level from that day on, and the protocol's schedule (escalation, days off) goes on from there;
    a dose below the plan, or on a day the plan has none, is a ``dose-differs-from-plan`` finding. A dose
    above the plan does not raise it (``dose_findings`` flags it each time). Returns the changes with the
    levels set by the record, and the findings."""
    sd = protocol.study_drug
    changes = list(changes)
    plan = plans.study_drug(changes)
    per_day: dict[dt.date, tuple[float, list[str]]] = {}
    for date, dose, dose_id in given:  # split doses on one day count together
        total, ids = per_day.get(date, (0.0, []))
        per_day[date] = (total + dose, [*ids, dose_id])
    findings = []
    for date, (dose, ids) in sorted(per_day.items()):
        day = study_day(date, day1)
        state, planned, level = plan.get(day, (None, None, None))
        if state in DOSING_STATES and dose < planned - 1e-9:
            new_level = level_for_dose(sd, dose)
            follows = state == "on" and new_level != level
            findings.append(Finding(date, day, "dose-differs-from-plan",
                                    f"{sd.drug} {dose:g} {sd.unit} given on day {day}; plan is {planned:g} {sd.unit}"
                                    + (f": the plan follows the dose given (level {new_level})" if follows else ""),
                                    tuple(ids)))
            if follows:
                changes.append(DoseChange(day, "set-level", level=new_level, rule="record"))
                plan = plans.study_drug(changes)
        elif state in ("off-day", "before ramp-up") and dose > 0:
            findings.append(Finding(date, day, "dose-differs-from-plan",
                                    f"{sd.drug} {dose:g} {sd.unit} given on day {day}, a day the plan has no dose ({state})",
                                    tuple(ids)))
    return changes, findings


def dose_findings(protocol: Protocol, day1: dt.date, plan: dict[int, tuple[str, float, int]],
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


def _labs_missing(protocol: Protocol, as_of: dt.date, obs: pl.DataFrame, patients: pl.DataFrame, plans: Plans
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
        date = patients["day1"][int(i)] + dt.timedelta(days=int(off))
        rows.append((pids[i], date, day, "lab-missing", f"required on day {day} but not recorded: {', '.join(missing)}",
                     [], 0, date + dt.timedelta(days=1)))
    return pl.DataFrame(rows, schema=FINDINGS_SCHEMA, orient="row")


def _study_drug_not_recorded(protocol: Protocol, as_of: dt.date, doses: pl.DataFrame, patients: pl.DataFrame,
                             plans: Plans, own: dict[str, dict[int, tuple[str, float, int]]]) -> pl.DataFrame:
    """Planned study-drug days that have passed (before ``stop``) with no record of the drug, neither
    given nor not taken: each run of two or more in a row (no record on a planned day between them) is a
    finding on its second day, known the day after. One day alone is not (a record may come late);
    a patient whose records stop gets one finding, not one a day."""
    sd = protocol.study_drug
    planned_base = plans.base.filter(pl.col("state").is_in(DOSING_STATES) & (pl.col("dose") > 0)).select("study_day")
    rows = [(pid, day) for pid, plan in own.items() for day, (state, dose, _) in plan.items()
            if state in DOSING_STATES and dose > 0]
    planned = pl.concat([
        patients.filter(~pl.col("patient_id").is_in(list(own))).select("patient_id").join(planned_base, how="cross"),
        pl.DataFrame(rows, schema={"patient_id": pl.String, "study_day": pl.Int32}, orient="row"),
    ])
    recorded = doses.filter(pl.col("drug") == sd.drug).select("patient_id", "date").unique().with_columns(
        pl.lit(True).alias("recorded"))
    days = (
        planned.join(patients.select("patient_id", "day1", "stop"), on="patient_id", how="inner")
        .with_columns((pl.col("day1") + pl.duration(days=pl.col("study_day") - 1)).alias("date"))
        .filter((pl.col("date") < as_of) & (pl.col("stop").is_null() | (pl.col("date") < pl.col("stop"))))
        .join(recorded, on=["patient_id", "date"], how="left")
        .with_columns(pl.col("recorded").fill_null(False))
        .sort("patient_id", "study_day")
        .with_columns(pl.col("recorded").cast(pl.Int32).cum_sum().over("patient_id").alias("run"))
        .filter(~pl.col("recorded"))
        .with_columns(pl.col("study_day").cum_count().over("patient_id", "run").alias("nth"),
                      pl.col("study_day").first().over("patient_id", "run").alias("first"))
        .filter(pl.col("nth") == 2)
    )
    return days.select(
        "patient_id", "date", "study_day", pl.lit("study-drug-not-recorded").alias("kind"),
        pl.format(f"{sd.drug} planned on days {{}} and {{}} but not recorded (neither given nor not taken)",
                  "first", "study_day").alias("message"),
        pl.lit([], pl.List(pl.String)).alias("refs"), pl.lit(0, pl.Int64).alias("tie"),
        (pl.col("date") + pl.duration(days=1)).alias("known"),
    ).cast(FINDINGS_SCHEMA)
