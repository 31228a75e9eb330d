"""``dosewatch design ...``: boundaries, skeleton, next dose and MTD. Registered by the main app
with ``app.add_typer(design_app, name="design")``. Heavy modules load inside each command."""
from __future__ import annotations

import json
import math
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

design_app = typer.Typer(
    help="Dose finding: BOIN boundaries, CRM skeletons, the next cohort's dose and the MTD "
    "(3+3, BOIN, CRM, TITE-CRM, TITE-BOIN), deciding as the R packages BOIN, dfcrm and TITEgBOIN do.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class DesignName(str, Enum):
    boin = "boin"
    crm = "crm"
    tite_crm = "tite-crm"
    tite_boin = "tite-boin"
    three_plus_three = "3+3"


class BoundaryDesign(str, Enum):
    boin = "boin"
    tite_boin = "tite-boin"


class Model(str, Enum):
    empiric = "empiric"
    logistic = "logistic"


class Weights(str, Enum):
    linear = "linear"
    adaptive = "adaptive"


JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table")]
TargetOpt = Annotated[Optional[float], typer.Option(help="Target DLT probability")]
LevelsOpt = Annotated[Optional[int], typer.Option(help="Number of dose levels (BOIN, TITE-BOIN, 3+3)")]
DataOpt = Annotated[Path, typer.Option("--data", help="Cohort CSV: dose,dlt[,followup] (one row per patient, in order)")]
SkeletonOpt = Annotated[Optional[str], typer.Option(help="CRM skeleton p1,p2,... (one per dose level)")]
SafetyStopOpt = Annotated[Optional[float], typer.Option(help="CRM: stop when P(toxicity at dose 1 > target) exceeds this")]
RestrictOpt = Annotated[bool, typer.Option(help="CRM: dfcrm crmsim's restrictions (no skipping, coherence; see --rules)")]
LastCohortOpt = Annotated[int, typer.Option(help="CRM: size of the last cohort for the coherence rule")]
ModelOpt = Annotated[Model, typer.Option(help="CRM dose-toxicity model")]
InterceptOpt = Annotated[float, typer.Option(help="Logistic model intercept")]
PriorSdOpt = Annotated[Optional[float], typer.Option(help="Prior SD of beta [default: sqrt(1.34)]")]
WindowOpt = Annotated[Optional[float], typer.Option(help="DLT window in days (TITE designs)")]
WeightsOpt = Annotated[Weights, typer.Option(help="TITE-CRM weights")]
MaxPendingOpt = Annotated[float, typer.Option(help="TITE-BOIN: suspend when more than this fraction is pending")]
PSafOpt = Annotated[Optional[float], typer.Option(help="BOIN: highest probability deemed safe [default: 0.6*target]")]
PToxOpt = Annotated[Optional[float], typer.Option(help="BOIN: lowest probability deemed toxic [default: 1.4*target]")]
CutoffOpt = Annotated[float, typer.Option(help="BOIN: eliminate a dose when P(toxicity > target) > this")]
ExtrasafeOpt = Annotated[bool, typer.Option("--extrasafe", help="BOIN: stop when dose 1 is too toxic (cutoff - offset)")]
OffsetOpt = Annotated[float, typer.Option(help="BOIN: extrasafe offset")]
EarlyStopOpt = Annotated[int, typer.Option(help="BOIN: stop when this many patients are at a dose that would not change")]


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(code=2)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _emit(result: dict, as_json: bool, title: str, rows: list[dict] | None = None) -> None:
    """One JSON object on stdout, or a Rich table: the per-dose ``rows`` if given, else key/value."""
    if as_json:
        sys.stdout.write(json.dumps(_clean(result)) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    if rows:
        for key in rows[0]:
            table.add_column(key.replace("_", " "), justify="right")
        for row in rows:
            table.add_row(*["-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()])
    else:
        table.add_column("field")
        table.add_column("value")
        for key, value in result.items():
            shown = ", ".join("-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v) for v in value) \
                if isinstance(value, list) else ("-" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value))
            table.add_row(key, shown)
    Console().print(table)


def _skeleton(text: Optional[str]) -> Optional[list[float]]:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--skeleton {text!r} is not a comma-separated list of probabilities") from None


@design_app.command()
def boundaries(
    target: Annotated[float, typer.Option(help="Target DLT probability")],
    cohort_size: Annotated[int, typer.Option(help="Patients per cohort")],
    max_cohorts: Annotated[int, typer.Option(help="Maximum number of cohorts")],
    design: Annotated[BoundaryDesign, typer.Option(help="Design")] = BoundaryDesign.boin,
    p_saf: PSafOpt = None,
    p_tox: PToxOpt = None,
    cutoff_eli: CutoffOpt = 0.95,
    extrasafe: ExtrasafeOpt = False,
    offset: OffsetOpt = 0.05,
    n_earlystop: EarlyStopOpt = 100,
    as_json: JsonOpt = False,
) -> None:
    """BOIN decision boundaries (BOIN get.boundary) for every number of patients at a dose."""
    from .boin import boin_boundaries

    try:
        result = boin_boundaries(target, cohort_size, max_cohorts, n_earlystop=n_earlystop, p_saf=p_saf,
                                 p_tox=p_tox, cutoff_eli=cutoff_eli, extrasafe=extrasafe, offset=offset)
    except ValueError as exc:
        _fail(exc)
    title = f"BOIN boundaries: lambda_e {result['lambda_e']:.4f}, lambda_d {result['lambda_d']:.4f}"
    _emit(result, as_json, title, result["table"])


@design_app.command()
def skeleton(
    target: Annotated[float, typer.Option(help="Target DLT probability")],
    halfwidth: Annotated[float, typer.Option(help="Half-width of the indifference interval")],
    prior_mtd: Annotated[int, typer.Option(help="Prior guess of the MTD level (1-based)")],
    levels: Annotated[int, typer.Option(help="Number of dose levels")],
    model: ModelOpt = Model.empiric,
    intercept: InterceptOpt = 3.0,
    as_json: JsonOpt = False,
) -> None:
    """CRM skeleton by Lee and Cheung's indifference intervals (dfcrm getprior)."""
    from .crm import get_prior

    try:
        sk = get_prior(halfwidth, target, prior_mtd, levels, model.value, intercept)
    except ValueError as exc:
        _fail(exc)
    _emit({"skeleton": sk}, as_json, "CRM skeleton", [{"dose": i + 1, "skeleton": p} for i, p in enumerate(sk)])


def _design_and_data(design: DesignName, data: Path, target, levels, skeleton_text, model, intercept, prior_sd,
                     window, weights, max_pending, cohort_size, restrict, safety_stop, p_saf, p_tox, cutoff_eli,
                     extrasafe, offset, n_earlystop, bound_mtd):
    from . import make_design
    from .cohort_io import read_cohort

    sk = _skeleton(skeleton_text)
    obj = make_design(design.value, target, levels=levels, skeleton=sk, model=model.value, intercept=intercept,
                      prior_sd=prior_sd, window=window, weights=weights.value, max_pending=max_pending,
                      cohort_size=cohort_size, restrict=restrict, safety_stop=safety_stop, p_saf=p_saf, p_tox=p_tox,
                      cutoff_eli=cutoff_eli, extrasafe=extrasafe, offset=offset, n_earlystop=n_earlystop,
                      bound_mtd=bound_mtd)
    outcomes = read_cohort(data, n_levels=obj.n_levels, need_followup=design.value in ("tite-crm", "tite-boin"))
    return obj, outcomes


@design_app.command("next")
def next_dose(
    design: Annotated[DesignName, typer.Option(help="Design")],
    data: DataOpt,
    target: TargetOpt = None,
    current_dose: Annotated[Optional[int], typer.Option(help="Current dose [default: dose of the last row]")] = None,
    levels: LevelsOpt = None,
    skeleton: SkeletonOpt = None,
    model: ModelOpt = Model.empiric,
    intercept: InterceptOpt = 3.0,
    prior_sd: PriorSdOpt = None,
    window: WindowOpt = None,
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
    """The next cohort's dose: escalate, stay, de-escalate, suspend (TITE: wait) or stop."""
    from ..errors import InputError

    try:
        obj, outcomes = _design_and_data(design, data, target, levels, skeleton, model, intercept, prior_sd, window,
                                         weights, max_pending, cohort_size, restrict, safety_stop, p_saf, p_tox,
                                         cutoff_eli, extrasafe, offset, n_earlystop, False)
        rec = obj.fit(outcomes, current_dose)
    except (InputError, ValueError, OSError) as exc:
        _fail(exc)
    result = rec.to_dict()
    _emit(result, as_json, f"{design.value}: {rec.decision} -> dose {rec.next_dose if rec.next_dose else '-'}")


@design_app.command()
def mtd(
    design: Annotated[DesignName, typer.Option(help="Design")],
    data: DataOpt,
    target: TargetOpt = None,
    levels: LevelsOpt = None,
    skeleton: SkeletonOpt = None,
    model: ModelOpt = Model.empiric,
    intercept: InterceptOpt = 3.0,
    prior_sd: PriorSdOpt = None,
    window: WindowOpt = None,
    weights: WeightsOpt = Weights.linear,
    p_saf: PSafOpt = None,
    p_tox: PToxOpt = None,
    cutoff_eli: CutoffOpt = 0.95,
    extrasafe: ExtrasafeOpt = False,
    offset: OffsetOpt = 0.05,
    bound_mtd: Annotated[bool, typer.Option("--bound-mtd", help="BOIN: only doses with isotonic estimate <= lambda_d")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The MTD on the data so far (BOIN select.mtd, dfcrm's model dose, or the 3+3 rule)."""
    from ..errors import InputError

    try:
        obj, outcomes = _design_and_data(design, data, target, levels, skeleton, model, intercept, prior_sd, window,
                                         weights, 0.5, 3, True, None, p_saf, p_tox, cutoff_eli, extrasafe, offset,
                                         100, bound_mtd)
        rec = obj.select_mtd(outcomes)
    except (InputError, ValueError, OSError) as exc:
        _fail(exc)
    result = {"mtd": rec.mtd, "reason": rec.reason, **rec.extra}
    rows = None
    if "isotonic" in result:
        rows = [{"dose": i + 1, "isotonic": v} for i, v in enumerate(result["isotonic"])]
    _emit(result, as_json, f"{design.value}: MTD {rec.mtd if rec.mtd else 'none'}", rows)


class Rules(str, Enum):
    crmsim = "crmsim"
    dtpcrm = "dtpcrm"


class Variant(str, Enum):
    korn = "korn"
    escalation = "escalation"


RulesOpt = Annotated[Rules, typer.Option(help="CRM restrictions: crmsim (no skipping up, no escalation after a "
                                              "toxic cohort) or dtpcrm (applied_crm's)")]
VariantOpt = Annotated[Variant, typer.Option(help="3+3: korn (MTD always with six patients) or escalation "
                                                  "(brockk/escalation's three_plus_three)")]
PictureOpt = Annotated[Optional[Path], typer.Option(help="Write the pathway tree here (.svg, .png or .pdf)")]


def cohort_sizes(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--cohort-sizes {text!r} is not a comma-separated list of whole numbers") from None
    if not sizes or min(sizes) < 1:
        raise ValueError("--cohort-sizes needs at least one cohort of one or more patients")
    return sizes


def emit_paths(paths, as_json: bool, title: str, picture: Optional[Path], extra: dict | None = None) -> None:
    """The pathways as one JSON object, or Rich tables (pending patients, then one row per path);
    the tree picture to ``picture`` when given."""
    if picture is not None:
        from .paths_plot import write

        write(paths, picture, title)
    result = {**(extra or {}), **paths.to_dict(), "picture": None if picture is None else str(picture)}
    if as_json:
        sys.stdout.write(json.dumps(_clean(result), default=str) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    now = paths.root.rec
    console.print(f"[bold]now[/bold]: {now.decision} -> next dose {now.next_dose or '-'}: {now.reason}")
    if paths.pending:
        table = Table(title="patients still inside the DLT window (each resolved as N or T below)")
        for col in ("patient", "dose level", "follow-up (days)", "weight"):
            table.add_column(col)
        for p in paths.pending:
            table.add_row(p.patient_id, str(p.dose), f"{p.followup:g}", f"{p.weight:.3f}")
        console.print(table)
    rows = paths.table()
    table = Table(title=title)
    for key in rows[0]:
        table.add_column(key)
    for row in rows:
        table.add_row(*["-" if v is None else str(v) for v in row.values()])
    console.print(table)
    if picture is not None:
        console.print(f"tree written to {picture}")


@design_app.command()
def paths(
    design: Annotated[DesignName, typer.Option(help="Design")],
    data: Annotated[Optional[Path], typer.Option("--data", help="Cohort CSV: dose,dlt[,followup]")] = None,
    outcomes: Annotated[Optional[str], typer.Option(help="Outcomes so far as escalation strings, e.g. '1NNN 2NTN'")] = None,
    cohort_sizes_text: Annotated[str, typer.Option("--cohort-sizes", help="Sizes of the next cohorts, e.g. 3,3")] = "3,3",
    next_dose: Annotated[Optional[int], typer.Option(help="Dose of the first cohort [default: the design's]")] = None,
    target: TargetOpt = None,
    levels: LevelsOpt = None,
    skeleton: SkeletonOpt = None,
    model: ModelOpt = Model.empiric,
    intercept: InterceptOpt = 3.0,
    prior_sd: PriorSdOpt = None,
    window: Annotated[Optional[float], typer.Option(help="DLT window in days: patients without DLT followed "
                                                         "less are pending (every design)")] = None,
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
    """Dose-transition pathways: the next dose after every outcome of the next cohorts (and every
    resolution of patients still pending), as escalation's get_dose_paths and dtpcrm compute them."""
    from ..errors import InputError
    from . import make_design
    from .base import parse_outcomes
    from .cohort_io import read_cohort
    from .paths import dose_paths

    try:
        if data is not None and outcomes is not None:
            raise ValueError("give --data or --outcomes, not both")
        obj = make_design(design.value, target, levels=levels, skeleton=_skeleton(skeleton), model=model.value,
                          intercept=intercept, prior_sd=prior_sd, window=window, weights=weights.value,
                          max_pending=max_pending, cohort_size=cohort_size, restrict=restrict, rules=rules.value,
                          safety_stop=safety_stop, p_saf=p_saf, p_tox=p_tox, cutoff_eli=cutoff_eli,
                          extrasafe=extrasafe, offset=offset, n_earlystop=n_earlystop, variant=variant.value)
        tite = design.value in ("tite-crm", "tite-boin")
        if data is not None:
            known = read_cohort(data, n_levels=obj.n_levels, need_followup=tite)
        else:
            known = parse_outcomes(outcomes or "")
            if tite:
                raise ValueError(f"{design.value} needs each patient's follow-up: give --data with a followup column")
        if known.dose.size and known.dose.max() > obj.n_levels:
            raise ValueError(f"dose level {int(known.dose.max())} is above the design's {obj.n_levels} levels")
        tree = dose_paths(obj, known, cohort_sizes(cohort_sizes_text), window=window, next_dose=next_dose)
        emit_paths(tree, as_json, f"{design.value}: dose-transition pathways", picture, {"design": design.value})
    except (InputError, ValueError, OSError) as exc:
        _fail(exc)


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a comma-separated list of numbers") from None


@design_app.command()
def simulate(
    design: Annotated[list[DesignName], typer.Option(help="Design (repeat to compare several)")],
    true_tox: Annotated[list[str], typer.Option(help="True DLT probability per dose p1,p2,... (repeat for scenarios)")],
    target: TargetOpt = None,
    cohort_size: Annotated[int, typer.Option(help="Patients per cohort")] = 3,
    max_cohorts: Annotated[int, typer.Option(help="Maximum number of cohorts")] = 10,
    trials: Annotated[int, typer.Option(help="Number of simulated trials")] = 10_000,
    seed: Annotated[int, typer.Option(help="Random seed (the same seed gives the same result on any cluster)")] = 1,
    start_dose: Annotated[int, typer.Option(help="Dose level of the first cohort")] = 1,
    skeleton: SkeletonOpt = None,
    model: ModelOpt = Model.empiric,
    intercept: InterceptOpt = 3.0,
    prior_sd: PriorSdOpt = None,
    restrict: RestrictOpt = True,
    safety_stop: SafetyStopOpt = None,
    max_pending: MaxPendingOpt = 0.5,
    p_saf: PSafOpt = None,
    p_tox: PToxOpt = None,
    cutoff_eli: CutoffOpt = 0.95,
    extrasafe: ExtrasafeOpt = False,
    offset: OffsetOpt = 0.05,
    n_earlystop: EarlyStopOpt = 100,
    bound_mtd: Annotated[bool, typer.Option("--bound-mtd", help="BOIN: only doses with isotonic estimate <= lambda_d")] = False,
    accrual: Annotated[Optional[float], typer.Option(help="TITE: patients per day (exponential inter-arrival)")] = None,
    window: WindowOpt = None,
    late_fraction: Annotated[float, typer.Option(help="TITE: fraction of DLTs in the second half of the window")] = 0.5,
    batch_size: Annotated[Optional[int], typer.Option(help="Trials per batch / Dask task (changes the random stream)")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Run on a local Dask cluster of N worker processes")] = None,
    scheduler: Annotated[Optional[str], typer.Option(help="Run on the Dask scheduler at ADDRESS (tcp://host:8786)")] = None,
    html: Annotated[Optional[Path], typer.Option("--html", help="Write a self-contained HTML report here")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Operating characteristics by simulation (BOIN get.oc, dfcrm crmsim, TITEgBOIN's time model)."""
    from .simulate import simulate_grid

    if workers is not None and scheduler is not None:
        _fail(ValueError("give --workers or --scheduler, not both"))
    try:
        scenarios = {f"S{i + 1}": _floats(t, "--true-tox") for i, t in enumerate(true_tox)}
        sk = _skeleton(skeleton)
        designs = {}
        for d in dict.fromkeys(design):
            name = d.value
            opts: dict[str, Any] = {"design": name}
            if name in ("boin", "tite-boin"):
                opts.update(p_saf=p_saf, p_tox=p_tox, cutoff_eli=cutoff_eli, extrasafe=extrasafe, offset=offset,
                            n_earlystop=n_earlystop, bound_mtd=bound_mtd)
            if name == "tite-boin":
                opts["max_pending"] = max_pending
            if name in ("crm", "tite-crm"):
                opts.update(skeleton=sk, model=model.value, intercept=intercept, prior_sd=prior_sd, restrict=restrict,
                            safety_stop=safety_stop)
            designs[name] = opts
        with _progress_bar(as_json) as progress:
            results = simulate_grid(scenarios, designs, target=target, cohort_size=cohort_size,
                                    max_cohorts=max_cohorts, trials=trials, seed=seed, start_dose=start_dose,
                                    accrual=accrual, window=window, late_fraction=late_fraction,
                                    batch_size=batch_size, workers=workers, scheduler=scheduler, progress=progress)
    except (ValueError, RuntimeError, OSError) as exc:
        _fail(exc)
    dicts = [r.to_dict() for r in results]
    if html is not None:
        from .report import write_report

        write_report(html, results)
    if as_json:
        payload = dicts[0] if len(dicts) == 1 else {"results": dicts, "trials": trials,
                                                     "elapsed_s": dicts[0]["elapsed_s"]}
        sys.stdout.write(json.dumps(_clean(payload)) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for r in dicts:
        table = Table(title=f"{r['design']} on {r['scenario']}: {r['trials']} trials, "
                            f"stop {r['stop_pct']:.1f}%, mean n {r['mean_n']:.2f}"
                            + (f", mean duration {r['mean_duration_days']:.1f} days" if "mean_duration_days" in r else "")
                            + f" ({r['elapsed_s']:.2f} s)")
        for col in ("dose", "true tox", "selected %", "patients", "DLTs"):
            table.add_column(col, justify="right")
        for i, p in enumerate(r["true_tox"]):
            table.add_row(str(i + 1), f"{p:.3f}", f"{r['selection_pct'][i]:.2f}", f"{r['mean_patients'][i]:.2f}",
                          f"{r['mean_dlts'][i]:.2f}")
        console.print(table)
    if html is not None:
        console.print(f"report written to {html}")


class _progress_bar:
    """A Rich progress bar on stderr for runs of more than one batch, when stderr is a terminal."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar = None
        self.task = None

    def __enter__(self):
        return self.update

    def update(self, done: int, total: int) -> None:
        if total < 2 or not sys.stderr.isatty():
            return
        if self.bar is None:
            from rich.console import Console
            from rich.progress import Progress

            self.bar = Progress(console=Console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("simulating", total=total)
        self.bar.update(self.task, completed=done)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False
