"""``dosewatch insilico``: run a scenario of virtual patients through a protocol and the monitor."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

insilico_app = typer.Typer(help="In-silico trials: virtual CLL patients dosed by a protocol, watched by dosewatch's "
                                "own monitor.", no_args_is_help=True)


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(code=2) from None


def _emit(result: dict, out: Optional[Path]) -> None:
    """The result as JSON: to ``out`` (said on stderr), else on stdout."""
    import json

    text = json.dumps(result, indent=2)
    if out:
        out.write_text(text + "\n")
        typer.echo(f"wrote {out}", err=True)
    else:
        typer.echo(text)


@insilico_app.command("run")
def insilico_run(
    scenario: Annotated[Path, typer.Argument(help="A scenario YAML file (see docs/insilico.md)")],
    patients: Annotated[Optional[int], typer.Option("--patients", min=1, help="Virtual patients per arm (default: the file's)")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed (default: the file's); same seed, same numbers")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the JSON here (default: stdout)")] = None,
    html: Annotated[Optional[Path], typer.Option("--html", help="Also write an HTML report here")] = None,
    dask: Annotated[Optional[str], typer.Option("--dask", help="Run the arms on a Dask cluster: its scheduler "
                                                "address, or 'local' for two local worker processes")] = None,
) -> None:
    """Simulate every arm of SCENARIO on the same virtual patients; print or write the outcomes as JSON."""
    from contextlib import ExitStack

    from ..errors import InputError
    from .scenario import load_scenario, run_scenario

    try:
        spec, base = load_scenario(scenario)
        with ExitStack() as stack:
            client = None
            if dask:
                from distributed import Client, LocalCluster

                where = (stack.enter_context(LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None))
                         if dask == "local" else dask)
                client = stack.enter_context(Client(where))
            result = run_scenario(spec, base, patients, seed, client=client)
    except (InputError, KeyError, ValueError) as exc:
        _fail(exc)
    _emit(result, out)
    if html:
        from .report import render_html

        html.write_text(render_html(result))
        typer.echo(f"wrote {html}", err=True)
    _print_summary(result)


@insilico_app.command("design")
def insilico_design(
    protocol: Annotated[str, typer.Argument(help="Built-in protocol id or protocol file (lenalidomide)")],
    design: Annotated[str, typer.Option("--design", help="3+3, boin, crm, tite-crm or tite-boin")],
    target: Annotated[Optional[float], typer.Option("--target", help="Target DLT probability (all but 3+3)")] = None,
    skeleton: Annotated[Optional[str], typer.Option("--skeleton", help="CRM: p1,p2,... one per dose level")] = None,
    accrual: Annotated[Optional[float], typer.Option("--accrual", help="TITE designs: patients per day")] = None,
    patients: Annotated[int, typer.Option("--patients", min=10, help="Virtual patients per dose level")] = 200,
    trials: Annotated[int, typer.Option("--trials", min=1, max=1_000_000, help="Simulated trials")] = 2000,
    cohorts: Annotated[int, typer.Option("--cohorts", min=1, max=100, help="Cohorts of 3 per trial")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; same seed, same numbers")] = 0,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the JSON here (default: stdout)")] = None,
) -> None:
    """The DLT rate of each dose level as dosewatch's monitor judges it on virtual patients, and the
    design's MTD selection and allocation on those rates (escalation.simulate, matched to the R packages)."""
    from ..errors import InputError
    from ..escalation.crm import parse_skeleton
    from ..protocols import load_protocol
    from .dose_finding import design_on_virtual_patients
    from .scenario import MODELLED_DRUGS

    try:
        proto = load_protocol(protocol)
        if proto.study_drug.drug not in MODELLED_DRUGS:
            raise ValueError(f"{proto.id} gives {proto.study_drug.drug}; the virtual patients model "
                             f"{', '.join(MODELLED_DRUGS)} only")
        options = {"skeleton": parse_skeleton(skeleton)} if skeleton else {}
        result = design_on_virtual_patients(proto, design, target=target, patients=patients, trials=trials,
                                            seed=seed, max_cohorts=cohorts, accrual=accrual, **options)
    except (InputError, KeyError, ValueError) as exc:
        _fail(exc)
    _emit(result, out)
    oc = result["operating_characteristics"]
    for r, pct in zip(result["levels"], oc["selected_as_mtd_pct"]):
        typer.echo(f"level {r['level']} ({r['dose']:g} {r['unit']}): DLT {r['dlt_rate']:.1%} "
                   f"(95% {r['ci95'][0]:.1%}-{r['ci95'][1]:.1%}), selected as MTD {pct:.1f}%", err=True)


@insilico_app.command("calibrate")
def insilico_calibrate(
    patients: Annotated[int, typer.Option("--patients", min=1, help="Virtual patients per target regimen")] = 300,
    seed: Annotated[int, typer.Option("--seed", help="Random seed")] = 0,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the JSON here (default: stdout)")] = None,
) -> None:
    """Compare the model's cycle-1 rates with the published ones (data/insilico/targets.yaml). A check,
    not a fit: says for each rate whether the model lies inside the published exact 95% interval, and
    which rates guided the hand-set parameters ("tuned") and which did not ("held-out")."""
    import json

    from .calibration import calibrate

    result = calibrate(patients, seed)
    text = json.dumps(result, indent=2)
    if out:
        out.write_text(text + "\n")
    else:
        typer.echo(text)
    for r in result["targets"]:
        p, m = r["published"], r["model"]
        typer.echo(f"{r['id']:32s} {r['use']:9s} published {p['events']}/{p['patients']} "
                   f"({100 * p['ci95'][0]:.0f}-{100 * p['ci95'][1]:.0f}%)  model {100 * m['rate']:.1f}%  "
                   f"{'within' if r['within'] else 'OUTSIDE'}", err=True)
    typer.echo(f"held-out rates within their published interval: {result['held_out_within']}/{result['held_out']}", err=True)


@insilico_app.command("sensitivity")
def insilico_sensitivity(
    scenario: Annotated[Path, typer.Argument(help="A scenario YAML file or a shipped scenario's name")],
    outcome: Annotated[str, typer.Option("--outcome", help="lab_tls, clinical_tls, flare, flare3, fn or death")] = "lab_tls",
    patients: Annotated[int, typer.Option("--patients", min=1, help="Virtual patients per run")] = 1000,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed (default: the file's)")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the JSON here (default: stdout)")] = None,
    svg: Annotated[Optional[Path], typer.Option("--svg", help="Also write the tornado chart (SVG) here")] = None,
) -> None:
    """One-at-a-time sensitivity (tornado) of the last arm minus the first, cycle 1, over every uncertain
    parameter, on the model alone (without the monitor)."""
    from ..errors import InputError
    from .scenario import load_scenario
    from .sensitivity import tornado, tornado_svg

    try:
        spec, base = load_scenario(scenario)
        result = tornado(spec, base, outcome, patients, seed)
    except (InputError, KeyError, ValueError) as exc:
        _fail(exc)
    _emit(result, out)
    if svg:
        svg.write_text(tornado_svg(result))
    for r in result["parameters"][:10]:
        typer.echo(f"{r['parameter']:28s} {r['status']:10s} low {100 * r['low']['difference']:+6.1f}  "
                   f"high {100 * r['high']['difference']:+6.1f}  (central {100 * result['central_difference']:+.1f})", err=True)


@insilico_app.command("uncertainty")
def insilico_uncertainty(
    scenario: Annotated[Path, typer.Argument(help="A scenario YAML file or a shipped scenario's name")],
    draws: Annotated[int, typer.Option("--draws", min=2, help="Joint parameter draws")] = 100,
    patients: Annotated[int, typer.Option("--patients", min=1, help="Virtual patients per draw")] = 500,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed (default: the file's)")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the JSON here (default: stdout)")] = None,
) -> None:
    """Cycle-1 rates with every uncertain parameter drawn jointly from its range: the 95% band across
    draws per arm, and of the last arm minus the first. The model alone, without the monitor."""
    from ..errors import InputError
    from .scenario import load_scenario
    from .sensitivity import joint_uncertainty

    try:
        spec, base = load_scenario(scenario)
        result = joint_uncertainty(spec, base, draws, patients, seed)
    except (InputError, KeyError, ValueError) as exc:
        _fail(exc)
    _emit(result, out)
    for key, d in result["last_minus_first"].items():
        lo, hi = d["interval95"]
        typer.echo(f"{key:14s} last minus first arm: median {100 * d['median']:+.1f} points (95% band {100 * lo:+.1f} to "
                   f"{100 * hi:+.1f}); last arm worse in {d['draws_last_arm_worse']}/{result['draws']} draws", err=True)


def _print_summary(result: dict) -> None:
    """One line per arm and outcome on stderr (the JSON is on stdout or in --out)."""
    for arm in result["arms"]:
        typer.echo(f"{arm['id']} ({arm['start_dose']:g} {arm['unit']} start, {result['patients']} patients):", err=True)
        for key, o in arm["cycle1"].items():
            lo, hi = o["ci95"]
            d = (arm.get("versus_first_arm") or {}).get(key)
            vs = (f"; vs first arm {100 * d['difference']:+.1f} points ({100 * d['ci95'][0]:+.1f} to {100 * d['ci95'][1]:+.1f})"
                  if d else "")
            typer.echo(f"  cycle 1 {o['label']}: {100 * o['rate']:.1f}% (95% CI {100 * lo:.1f}-{100 * hi:.1f}){vs}", err=True)
