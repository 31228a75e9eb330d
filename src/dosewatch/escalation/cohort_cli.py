"""``dosewatch cohort next INPUT --protocol ID --design ...``: the next cohort's dose from patients'
records. The monitor judges each patient's DLT status and follow-up inside the protocol's DLT window
(:func:`dosewatch.monitor.evaluate`); the patient's dose level is the level of the first dose of
the study drug (day 1). Registered by the main app with ``app.add_typer(cohort_app, name="cohort")``."""
from __future__ import annotations

import csv
import datetime as dt
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .cli import (CutoffOpt, DesignName, EarlyStopOpt, ExtrasafeOpt, InterceptOpt, JsonOpt, LastCohortOpt,
                  MaxPendingOpt, Model, ModelOpt, OffsetOpt, PictureOpt, PriorSdOpt, PSafOpt, PToxOpt, RestrictOpt,
                  Rules, RulesOpt, SafetyStopOpt, SkeletonOpt, TargetOpt, Variant, VariantOpt, Weights, WeightsOpt,
                  _clean, _fail, _skeleton, cohort_sizes, emit_paths)

cohort_app = typer.Typer(
    help="Dose finding from patients' records: the monitor's DLT judgement feeds a design.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

TITE = ("tite-crm", "tite-boin")


@cohort_app.callback()
def _group() -> None:
    """Dose finding from patients' records (a group, so that ``cohort next`` keeps its name)."""


@dataclass(frozen=True)
class CohortRow:
    patient_id: str
    day1: dt.date
    dose: int  # level of the first dose
    dlt: int
    followup: float  # days inside the DLT window; the whole window after a DLT
    status: str  # the monitor's: DLT | in window | no DLT


def level_of_dose(levels, dose: float) -> int | None:
    """The protocol level whose dose equals ``dose`` (relative 1e-9), else None."""
    for lv in levels:
        if abs(lv.dose - dose) <= 1e-9 * max(abs(lv.dose), 1.0):
            return lv.level
    return None


def cohort_rows(record, protocol, as_of: dt.date | None = None) -> list[CohortRow]:
    """One row per patient who started the study drug, in the order of their day 1 (then id)."""
    import polars as pl

    from ..monitor import evaluate

    drug = protocol.study_drug.drug
    first = (record.doses.filter((pl.col("drug") == drug) & (pl.col("status") == "completed"))
             .sort("patient_id", "date").group_by("patient_id", maintain_order=True).first())
    first_dose = dict(zip(first["patient_id"].to_list(), first["dose"].to_list(), strict=True))
    window = protocol.dlt.window_days
    rows = []
    for a in evaluate(record, protocol, as_of):
        if a.day1 is None or a.patient_id not in first_dose:
            continue
        level = level_of_dose(protocol.study_drug.levels, float(first_dose[a.patient_id]))
        if level is None:
            raise ValueError(f"patient {a.patient_id}: first dose {first_dose[a.patient_id]:g} "
                             f"{protocol.study_drug.unit} is not one of the levels of protocol {protocol.id}")
        status = a.dlt["status"]
        dlt = 1 if status == "DLT" else 0
        followup = float(window if status != "in window" else a.dlt["followup_days"])
        rows.append(CohortRow(a.patient_id, a.day1, level, dlt, followup, status))
    rows.sort(key=lambda r: (r.day1, r.patient_id))
    return rows


def write_cohort(path: str | Path, rows: list[CohortRow]) -> None:
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["dose", "dlt", "followup", "patient_id"])
        for r in rows:
            out.writerow([r.dose, r.dlt, f"{r.followup:g}", r.patient_id])


def next_from_records(record, protocol, design: str, *, as_of: dt.date | None = None,
                      current_dose: int | None = None, **options: Any) -> tuple[Any, list[CohortRow], list[CohortRow]]:
    """(Recommendation, rows used, rows left out), the monitor judging each patient's DLT status."""
    return fit_rows(cohort_rows(record, protocol, as_of), protocol, design, current_dose=current_dose, **options)


def design_for(protocol, design: str, options: dict[str, Any]):
    """The design by name on the protocol's dose levels (TITE designs on its DLT window unless
    ``window`` is given); CRM designs take their levels from the skeleton, which must match."""
    from . import make_design

    levels = len(protocol.study_drug.levels)
    if design in TITE and options.get("window") is None:
        options = {**options, "window": float(protocol.dlt.window_days)}
    obj = make_design(design, levels=None if design in ("crm", "tite-crm") else levels, **options)
    if obj.n_levels != levels:
        what = "skeleton" if design in ("crm", "tite-crm") else "design"
        raise ValueError(f"the {what} has {obj.n_levels} levels but protocol {protocol.id} has {levels}")
    return obj


def fit_rows(rows: list[CohortRow], protocol, design: str, *, current_dose: int | None = None,
             **options: Any) -> tuple[Any, list[CohortRow], list[CohortRow]]:
    """(Recommendation, rows used, rows left out) of ``design`` on these patients. TITE designs use
    every patient with their follow-up; the others only patients whose DLT window is complete (DLT
    or no DLT). CRM designs take their levels from the skeleton, which must match the protocol's."""
    from .base import Outcomes

    obj = design_for(protocol, design, options)
    counted = (lambda r: True) if design in TITE else (lambda r: r.status != "in window")
    used = [r for r in rows if counted(r)]
    left = [r for r in rows if not counted(r)]
    outcomes = Outcomes.from_lists([r.dose for r in used], [r.dlt for r in used],
                                   [r.followup for r in used] if design in TITE else None)
    if current_dose is None and rows:
        current_dose = rows[-1].dose
    return obj.fit(outcomes, current_dose), used, left


def paths_from_rows(rows: list[CohortRow], protocol, design: str, cohort_sizes, *, current_dose: int | None = None,
                    window: float | None = None, **options: Any):
    """Dose-transition pathways from the monitored patients: those still inside the DLT window are
    the pending patients (resolved first, each as DLT or not), TITE designs weigh them now."""
    from .base import Outcomes
    from .paths import dose_paths

    obj = design_for(protocol, design, {**options, "window": window})
    window = float(window if window is not None else protocol.dlt.window_days)
    outcomes = Outcomes.from_lists([r.dose for r in rows], [r.dlt for r in rows],
                                   [r.followup if r.status == "in window" else window for r in rows])
    return dose_paths(obj, outcomes, cohort_sizes, window=window, patient_ids=[r.patient_id for r in rows],
                      current_dose=current_dose)


@cohort_app.command("next")
def cohort_next(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="FHIR R4 Bundle (.json) or SDTM folder")],
    protocol: Annotated[str, typer.Option(help="Protocol id (built-in) or protocol file")],
    design: Annotated[DesignName, typer.Option(help="Design")],
    target: TargetOpt = None,
    as_of: Annotated[Optional[str], typer.Option(help="Judge the records as of this date (YYYY-MM-DD)")] = None,
    current_dose: Annotated[Optional[int], typer.Option(help="Current dose [default: level of the last patient]")] = None,
    cohort_out: Annotated[Optional[Path], typer.Option(help="Write the cohort table used here (CSV)")] = None,
    skeleton: SkeletonOpt = None,
    model: ModelOpt = Model.empiric,
    intercept: InterceptOpt = 3.0,
    prior_sd: PriorSdOpt = None,
    window: Annotated[Optional[float], typer.Option(help="DLT window in days [default: the protocol's]")] = None,
    weights: WeightsOpt = Weights.linear,
    max_pending: MaxPendingOpt = 0.5,
    cohort_size: LastCohortOpt = 3,
    restrict: RestrictOpt = True,
    safety_stop: SafetyStopOpt = None,
    p_saf: PSafOpt = None,
    p_tox: PToxOpt = None,
    cutoff_eli: CutoffOpt = 0.95,
    extrasafe: ExtrasafeOpt = False,
    offset: OffsetOpt = 0.05,
    n_earlystop: EarlyStopOpt = 100,
    as_json: JsonOpt = False,
) -> None:
    """The next cohort's dose from patients' records, with the monitor's DLT judgement."""
    from ..errors import InputError
    from ..io import read_any
    from ..protocols import load_protocol

    try:
        day = dt.date.fromisoformat(as_of) if as_of else None
        proto = load_protocol(protocol)
        record = read_any(input_path).cohort
        rec, used, left = next_from_records(
            record, proto, design.value, as_of=day, current_dose=current_dose, target=target,
            skeleton=_skeleton(skeleton), model=model.value, intercept=intercept, prior_sd=prior_sd, window=window,
            weights=weights.value, max_pending=max_pending, cohort_size=cohort_size, restrict=restrict,
            safety_stop=safety_stop, p_saf=p_saf, p_tox=p_tox, cutoff_eli=cutoff_eli, extrasafe=extrasafe,
            offset=offset, n_earlystop=n_earlystop)
        if cohort_out is not None:
            write_cohort(cohort_out, used)
    except (InputError, ValueError, OSError) as exc:
        _fail(exc)
    reason = rec.reason
    if left:
        reason += (f" ({len(left)} patient(s) still inside the DLT window are not counted: "
                   f"{', '.join(r.patient_id for r in left)}; a TITE design counts them)")
    result = {**rec.to_dict(), "reason": reason, "protocol": proto.id, "design": design.value,
              "cohort": [{"patient_id": r.patient_id, "dose": r.dose, "dlt": r.dlt, "followup": r.followup,
                          "status": r.status} for r in used],
              "not_counted": [r.patient_id for r in left]}
    if as_json:
        sys.stdout.write(json.dumps(_clean(result), default=str) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{proto.id}: cohort used by {design.value}")
    for col in ("patient", "dose level", "DLT", "follow-up (days)", "monitor"):
        table.add_column(col)
    for r in used:
        table.add_row(r.patient_id, str(r.dose), str(r.dlt), f"{r.followup:g}", r.status)
    console = Console()
    console.print(table)
    nxt = "-" if rec.next_dose is None else str(rec.next_dose)
    console.print(f"[bold]{rec.decision}[/bold] -> next dose {nxt}: {reason}")
    if cohort_out is not None:
        console.print(f"cohort table written to {cohort_out}")


@cohort_app.command("paths")
def cohort_paths(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="FHIR R4 Bundle (.json) or SDTM folder")],
    protocol: Annotated[str, typer.Option(help="Protocol id (built-in) or protocol file")],
    design: Annotated[DesignName, typer.Option(help="Design")],
    target: TargetOpt = None,
    as_of: Annotated[Optional[str], typer.Option(help="Judge the records as of this date (YYYY-MM-DD)")] = None,
    cohort_sizes_text: Annotated[str, typer.Option("--cohort-sizes", help="Sizes of the next cohorts, e.g. 3,3")] = "3,3",
    current_dose: Annotated[Optional[int], typer.Option(help="Current dose [default: level of the last patient]")] = None,
    skeleton: SkeletonOpt = None,
    model: ModelOpt = Model.empiric,
    intercept: InterceptOpt = 3.0,
    prior_sd: PriorSdOpt = None,
    window: Annotated[Optional[float], typer.Option(help="DLT window in days [default: the protocol's]")] = None,
    weights: WeightsOpt = Weights.linear,
    max_pending: MaxPendingOpt = 0.5,
    cohort_size: LastCohortOpt = 3,
    restrict: RestrictOpt = True,
    rules: RulesOpt = Rules.crmsim,
    safety_stop: SafetyStopOpt = None,
    variant: VariantOpt = Variant.korn,
    p_saf: PSafOpt = None,
    p_tox: PToxOpt = None,
    cutoff_eli: CutoffOpt = 0.95,
    extrasafe: ExtrasafeOpt = False,
    offset: OffsetOpt = 0.05,
    n_earlystop: EarlyStopOpt = 100,
    picture: PictureOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Dose-transition pathways from patients' records: the monitor judges DLTs and follow-up;
    patients still inside the DLT window are resolved every way first."""
    from ..errors import InputError
    from ..io import read_any
    from ..protocols import load_protocol

    try:
        day = dt.date.fromisoformat(as_of) if as_of else None
        proto = load_protocol(protocol)
        rows = cohort_rows(read_any(input_path).cohort, proto, day)
        tree = paths_from_rows(
            rows, proto, design.value, cohort_sizes(cohort_sizes_text), current_dose=current_dose, window=window,
            target=target, skeleton=_skeleton(skeleton), model=model.value, intercept=intercept, prior_sd=prior_sd,
            weights=weights.value, max_pending=max_pending, cohort_size=cohort_size, restrict=restrict,
            rules=rules.value, safety_stop=safety_stop, variant=variant.value, p_saf=p_saf, p_tox=p_tox,
            cutoff_eli=cutoff_eli, extrasafe=extrasafe, offset=offset, n_earlystop=n_earlystop)
        cohort = [{"patient_id": r.patient_id, "dose": r.dose, "dlt": r.dlt, "followup": r.followup,
                   "status": r.status} for r in rows]
        emit_paths(tree, as_json, f"{proto.id}: {design.value} dose-transition pathways", picture,
                   {"protocol": proto.id, "design": design.value, "cohort": cohort})
    except (InputError, ValueError, OSError) as exc:
        _fail(exc)
