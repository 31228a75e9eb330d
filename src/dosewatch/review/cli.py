"""``dosewatch report review INPUT --protocol ID --design ...``: the safety review packet as PDF
(and HTML, and the CONSORT-DEFINE / SPIRIT-DEFINE items as JSON). Registered by the main app with
``app.add_typer(report_app, name="report")``."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..escalation.cli import (CutoffOpt, DesignName, ExtrasafeOpt, Model, ModelOpt, PriorSdOpt, Rules, RulesOpt,
                              SkeletonOpt, TargetOpt, Variant, VariantOpt, Weights, WeightsOpt, _clean, _fail,
                              _floats, _skeleton, cohort_sizes)

report_app = typer.Typer(help="Reports for the safety review committee.", no_args_is_help=True,
                         add_completion=False, pretty_exceptions_enable=False)


@report_app.callback()
def _group() -> None:
    """Reports for the safety review committee (a group, so that ``report review`` keeps its name)."""


def design_options(target, skeleton, model, weights, rules, variant, extrasafe, cutoff_eli, prior_sd) -> dict:
    return {"target": target, "skeleton": _skeleton(skeleton), "model": model.value, "weights": weights.value,
            "rules": rules.value, "variant": variant.value, "extrasafe": extrasafe, "cutoff_eli": cutoff_eli,
            "prior_sd": prior_sd}


@report_app.command("review")
def review(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="FHIR R4 Bundle (.json) or SDTM folder")],
    protocol: Annotated[str, typer.Option(help="Protocol id (built-in) or protocol file")],
    design: Annotated[DesignName, typer.Option(help="Design")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The packet as PDF")],
    html: Annotated[Optional[Path], typer.Option(help="Also write the packet as HTML here")] = None,
    items: Annotated[Optional[Path], typer.Option(help="Write the CONSORT-DEFINE / SPIRIT-DEFINE items as JSON here")] = None,
    trial: Annotated[str, typer.Option(help="Trial name on the packet [default: the protocol id]")] = "",
    as_of: Annotated[Optional[str], typer.Option(help="Data as of the end of this date (YYYY-MM-DD) [default: today]")] = None,
    cohort_sizes_text: Annotated[str, typer.Option("--cohort-sizes", help="Next cohorts for the pathways")] = "3,3",
    target: TargetOpt = None,
    skeleton: SkeletonOpt = None,
    model: ModelOpt = Model.empiric,
    prior_sd: PriorSdOpt = None,
    weights: WeightsOpt = Weights.linear,
    rules: RulesOpt = Rules.crmsim,
    variant: VariantOpt = Variant.korn,
    extrasafe: ExtrasafeOpt = False,
    cutoff_eli: CutoffOpt = 0.95,
    oc_true_tox: Annotated[Optional[str], typer.Option(
        help="Simulate the design's operating characteristics on this true DLT probability per level p1,p2,...")] = None,
    oc_trials: Annotated[int, typer.Option(help="Simulated trials for the operating characteristics")] = 2000,
    oc_seed: Annotated[int, typer.Option(help="Random seed of the simulation")] = 1,
    oc_cohorts: Annotated[int, typer.Option(help="Cohorts of 3 per simulated trial (the protocol has no sample size)")] = 10,
    oc_accrual: Annotated[Optional[float], typer.Option(help="TITE designs: patients enrolled per day in the simulation")] = None,
) -> None:
    """The safety review packet: exposure and worst grades by dose level, every DLT with its evidence,
    grade 4-5 events and deaths, a swimmer plot, tumor lysis labs, the design's recommendation with its
    dose-transition pathways, CONSORT-DEFINE / SPIRIT-DEFINE items and the signature block."""
    from ..errors import InputError
    from ..io import read_any
    from ..protocols import load_protocol
    from .content import review_content
    from .packet import render_html, write_pdf

    try:
        day = dt.date.fromisoformat(as_of) if as_of else dt.date.today()
        if output.suffix.lower() != ".pdf":
            raise ValueError(f"{output}: the packet is written as .pdf (give --html for the HTML)")
        proto = load_protocol(protocol)
        cohort = read_any(input_path).cohort
        options = design_options(target, skeleton, model, weights, rules, variant, extrasafe, cutoff_eli, prior_sd)
        options = {k: v for k, v in options.items() if v is not None}
        oc = None
        if oc_true_tox:
            from .oc import operating_characteristics
            oc = operating_characteristics(proto, design.value, options, _floats(oc_true_tox, "--oc-true-tox"),
                                           trials=oc_trials, seed=oc_seed, max_cohorts=oc_cohorts, accrual=oc_accrual)
        content = review_content(cohort, proto, as_of=day, design=design.value, design_options=options,
                                 cohort_sizes=cohort_sizes(cohort_sizes_text), trial=trial, oc=oc)
        page = render_html(content, cohort)
        write_pdf(page, output)
        if html is not None:
            html.write_text(page, encoding="utf-8")
        if items is not None:
            items.write_text(json.dumps(_clean(content.consort), indent=1, default=str), encoding="utf-8")
    except (InputError, ValueError, OSError) as exc:
        _fail(exc)
    typer.echo(f"wrote {output}" + (f", {html}" if html else "") + (f", {items}" if items else ""), err=True)
