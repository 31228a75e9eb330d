"""``dosewatch insilico``: run a scenario of virtual patients through a protocol and the monitor."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

insilico_app = typer.Typer(help="In-silico trials: virtual CLL patients dosed by a protocol, watched by dosewatch's "
                                "own monitor.", no_args_is_help=True)


@insilico_app.command("run")
def insilico_run(
    scenario: Annotated[Path, typer.Argument(help="A scenario YAML file (see docs/insilico.md)")],
    patients: Annotated[Optional[int], typer.Option("--patients", min=1, help="Virtual patients per arm (default: the file's)")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed (default: the file's); same seed, same numbers")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the JSON here (default: stdout)")] = None,
    html: Annotated[Optional[Path], typer.Option("--html", help="Also write an HTML report here")] = None,
) -> None:
    """Simulate every arm of SCENARIO on the same virtual patients; print or write the outcomes as JSON."""
    import json

    from ..errors import InputError
    from .scenario import load_scenario, run_scenario

    try:
        spec, base = load_scenario(scenario)
        result = run_scenario(spec, base, patients, seed)
    except (InputError, KeyError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    text = json.dumps(result, indent=2)
    if out:
        out.write_text(text + "\n")
        typer.echo(f"wrote {out}", err=True)
    else:
        typer.echo(text)
    if html:
        from .report import render_html

        html.write_text(render_html(result))
        typer.echo(f"wrote {html}", err=True)
    _print_summary(result)


def _print_summary(result: dict) -> None:
    """One line per arm and outcome on stderr (the JSON is on stdout or in --out)."""
    for arm in result["arms"]:
        typer.echo(f"{arm['id']} ({arm['start_dose']:g} {arm['unit']} start, {result['patients']} patients):", err=True)
        for key, o in arm["cycle1"].items():
            lo, hi = o["ci95"]
            typer.echo(f"  cycle 1 {o['label']}: {100 * o['rate']:.1f}% (95% CI {100 * lo:.1f}-{100 * hi:.1f})", err=True)
