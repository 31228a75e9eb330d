"""A dose-finding design run on virtual patients: the DLT rate at each dose level as dosewatch's own
monitor judges it (the protocol's DLT definition and window, on the closed loop's records), then the
design's operating characteristics on those rates with the simulation matched to the R packages
(``escalation.simulate``).

Every level is given to the same virtual patients (common random numbers), so the rates differ only
by dose. A trial that enrolls patients independently at each level is then equivalent to drawing
DLTs with these probabilities, which is what ``escalation.simulate`` does; the rates' intervals
(Clopper-Pearson) say how well the virtual patients pin them down.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..escalation.simulate import simulate
from . import params
from .loop import UNDETECTED, Arm, run
from .outcomes import clopper_pearson
from .population import sample


def dlt_by_level(protocol, *, patients: int = 200, seed: int = 0, levels: list[int] | None = None,
                 values: params.Values | None = None) -> list[dict[str, Any]]:
    """Per dose level: the share of virtual patients with a DLT in the protocol's DLT window (and
    deaths in it), each patient started at that level and followed through the window."""
    values = values or params.central()
    pop = sample(patients, values, np.random.default_rng([seed, 0]))
    sd = protocol.study_drug
    out = []
    for level in levels or sd.level_ids:
        at_level = protocol.model_copy(update={"study_drug": sd.model_copy(update={"start_level": level})})
        trace = run(Arm(at_level, days=protocol.dlt.window_days), pop, values, seed)
        dlt = trace.dlt_day != UNDETECTED
        deaths = trace.truth["death"] <= protocol.dlt.window_days
        low, high = clopper_pearson(int(dlt.sum()), patients)
        out.append({"level": level, "dose": sd.dose_at(level), "unit": sd.unit, "patients": patients,
                    "dlt": int(dlt.sum()), "dlt_rate": float(dlt.mean()), "ci95": [low, high],
                    "deaths": int(deaths.sum())})
    return out


def design_on_virtual_patients(protocol, design: str, *, target: float | None, patients: int = 200,
                               trials: int = 2000, seed: int = 0, max_cohorts: int = 10, cohort_size: int = 3,
                               accrual: float | None = None, **options: Any) -> dict[str, Any]:
    """DLT rates by level from the virtual patients, and the design's operating characteristics on
    them from the protocol's start level (TITE designs: the protocol's DLT window)."""
    rates = dlt_by_level(protocol, patients=patients, seed=seed)
    tite = design.startswith("tite")
    if tite and accrual is None:
        raise ValueError(f"{design} needs the accrual rate in patients per day")
    curve = [min(r["dlt_rate"], 0.999) for r in rates]
    oc = simulate(design, curve, target=target, cohort_size=cohort_size, max_cohorts=max_cohorts, trials=trials,
                  seed=seed + 1, start_dose=protocol.study_drug.level_ids.index(protocol.study_drug.start_level) + 1,
                  accrual=accrual if tite else None, window=float(protocol.dlt.window_days) if tite else None,
                  **options).to_dict()
    closest = None
    if target is not None:
        closest = min(rates, key=lambda r: abs(r["dlt_rate"] - target))["level"]
    return {"protocol": protocol.id, "design": design, "target": target, "virtual_patients_per_level": patients,
            "seed": seed, "dlt_window_days": protocol.dlt.window_days, "levels": rates,
            "level_closest_to_target": closest,
            "operating_characteristics": {
                "trials": trials, "cohorts": f"{max_cohorts} of {cohort_size}",
                "selected_as_mtd_pct": [round(x, 1) for x in oc["selection_pct"]],
                "stopped_without_mtd_pct": round(oc["stop_pct"], 1),
                "mean_patients_per_level": [round(x, 2) for x in oc["mean_patients"]],
                "mean_dlts_per_level": [round(x, 2) for x in oc["mean_dlts"]],
                "mean_sample_size": round(oc["mean_n"], 1)},
            "caveat": "DLT rates come from the model (docs/insilico.md: parameters set by hand, not fitted); "
                      "the intervals are over virtual patients only."}
