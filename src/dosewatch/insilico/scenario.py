"""Scenario files: arms that differ in protocol, start dose, lab schedule, prophylaxis or adherence,
run on the same virtual patients with the same random numbers, and their outcomes side by side."""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import InputError, Problem
from ..protocols import load_protocol
from ..protocols.model import Protocol
from . import params
from .loop import Arm, not_simulated, run
from .outcomes import OUTCOMES, paired_difference, summarise
from .population import sample


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ArmSpec(_Strict):
    id: str
    protocol: str  # a built-in protocol id or a protocol file (relative to the scenario file)
    start_level: int | None = None  # overrides the protocol's start level
    labs: Literal["protocol", "daily", "weekly"] = "protocol"
    hydration: bool = False
    rasburicase: bool = False
    allopurinol: bool = False
    monitor_acts: bool = True
    adherence: dict[str, float] = Field(default_factory=dict)
    note: str | None = None


class Scenario(_Strict):
    id: str
    title: str
    question: str | None = None
    sources: dict[str, str] = Field(default_factory=dict)
    patients: int = Field(200, ge=1, le=1_000_000)
    seed: int = 0
    days: int = Field(28, ge=1, le=2000)
    parameters: dict[str, Any] = Field(default_factory=dict)  # overrides of data/insilico values
    arms: tuple[ArmSpec, ...] = Field(min_length=1)


MODELLED_DRUGS = ("lenalidomide",)
SHIPPED = ("seed-start-low", "lab-schedule")


def load_scenario(path: str | Path) -> tuple[Scenario, Path]:
    """A scenario file, or a shipped scenario by name (``seed-start-low``)."""
    path = Path(path)
    if not path.exists() and str(path) in SHIPPED:
        path = Path(str(resources.files("dosewatch").joinpath(f"data/insilico/scenarios/{path}.yaml")))
    if not path.exists():
        raise InputError([Problem(str(path), "scenario", "no such file")])
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError([Problem(str(path), "scenario", f"not YAML: {exc}")]) from exc
    try:
        return Scenario.model_validate(data), path.parent
    except ValidationError as exc:
        raise InputError([Problem(str(path), ".".join(str(p) for p in e["loc"]) or "(top)", e["msg"])
                          for e in exc.errors()]) from exc


def arm_protocol(spec: ArmSpec, base: Path) -> Protocol:
    candidate = base / spec.protocol
    protocol = load_protocol(candidate if candidate.exists() else spec.protocol)
    if protocol.study_drug.drug not in MODELLED_DRUGS:
        raise InputError([Problem(spec.id, "protocol", f"{protocol.id} gives {protocol.study_drug.drug}; the virtual "
                                  f"patients model {', '.join(MODELLED_DRUGS)} only (docs/insilico.md)")])
    if spec.start_level is not None:
        if spec.start_level not in protocol.study_drug.level_ids:
            raise InputError([Problem(spec.id, "start_level",
                                      f"{spec.start_level} is not a level of {protocol.id} ({protocol.study_drug.level_ids})")])
        sd = protocol.study_drug.model_copy(update={"start_level": spec.start_level})
        protocol = protocol.model_copy(update={"study_drug": sd})
    return protocol


def run_scenario(scenario: Scenario, base: Path = Path("."), patients: int | None = None, seed: int | None = None,
                 follow: int | None = -1, client: Any = None) -> dict[str, Any]:
    """Every arm on the same virtual patients and random numbers; the result is plain JSON data.
    ``follow``: the patient whose daily timeline is kept (-1: the one with the largest tumour burden,
    the likeliest to show lysis; None: no timeline). ``client``: a Dask client that runs the arms
    in parallel, one task each (the same numbers: an arm depends only on its inputs and the seed)."""
    n = patients or scenario.patients
    seed = scenario.seed if seed is None else seed
    try:
        values = params.with_overrides(params.central(), scenario.parameters)
    except (KeyError, ValueError) as exc:
        raise InputError([Problem(scenario.id, "parameters", str(exc))]) from exc
    pop = sample(n, values, np.random.default_rng([seed, 0]))
    if follow == -1:
        follow = int(np.argmax(pop.alc + pop.node_equiv * pop.node_cm ** 3))
    arms, hits = [], []
    plans = [(spec, Arm(arm_protocol(spec, base), scenario.days, spec.labs, spec.hydration, spec.rasburicase,
                        spec.allopurinol, dict(spec.adherence), spec.monitor_acts)) for spec in scenario.arms]
    if client is not None:
        traces = client.gather([client.submit(run, arm, pop, values, seed, follow=follow, pure=False)
                                for _, arm in plans])
    else:
        traces = [run(arm, pop, values, seed, follow=follow) for _, arm in plans]
    for (spec, arm), trace in zip(plans, traces):
        protocol = arm.protocol
        sd = protocol.study_drug
        cycle1 = {k: trace.truth[k] <= sd.cycle_days for k in OUTCOMES}
        hits.append(cycle1)
        arms.append({
            "id": spec.id, "protocol": protocol.id, "protocol_version": protocol.version, "note": spec.note,
            "start_dose": sd.dose_at(sd.start_level), "unit": sd.unit, "labs": spec.labs,
            "not_simulated": not_simulated(protocol),
            **summarise(trace, pop, sd.cycle_days),
            "timeline": {"patient": f"V{follow + 1:05d}", **trace.series} if follow is not None else None,
        })
        if len(arms) > 1:  # each arm against the first, patient by patient
            arms[-1]["versus_first_arm"] = {k: paired_difference(cycle1[k], hits[0][k], seed) for k in OUTCOMES}
    return {
        "scenario": scenario.id, "title": scenario.title, "question": scenario.question,
        "patients": n, "seed": seed, "days": scenario.days, "generated_by": "dosewatch insilico run",
        "population": _population_summary(pop),
        "parameters_overridden": scenario.parameters,
        "arms": arms,
        "caveats": CAVEATS,
    }


CAVEATS = [
    "Model parameters are set by hand near published rates, not fitted; most are dosewatch assumptions "
    "(data/insilico/*.yaml, status 'assumption'). These intervals are Monte Carlo intervals over virtual "
    "patients and do not include parameter uncertainty ('dosewatch insilico uncertainty' gives parameter "
    "bands for the model without the monitor).",
    "Lenalidomide only; one morning draw per scheduled day (no intra-day draws); a patient who becomes ill "
    "presents and is examined the same day; nobody treats a complication beyond holding the drug.",
    "The truth of laboratory TLS has no time window; the monitor applies Cairo-Bishop's window, so TLS "
    "outside it is counted as true and missed.",
]


def _population_summary(pop) -> dict[str, Any]:
    tier = pop.tier
    return {
        "age_median": round(float(np.median(pop.age)), 1),
        "alc_median": round(float(np.median(pop.alc)), 1),
        "bulky_fraction": round(float((pop.node_cm >= 5).mean()), 3),
        "crcl_median": round(float(np.median(pop.crcl)), 1),
        "tls_risk_tier": {name: int((tier == i).sum()) for i, name in enumerate(("low", "medium", "high"))},
    }
