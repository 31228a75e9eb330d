"""The design's operating characteristics for the packet (SPIRIT-DEFINE item 8, "the design and its
operating characteristics"): the trial's design and options simulated on a true dose-toxicity curve
the committee chooses, from the protocol's start level, with the protocol's DLT window for the
TITE designs. The simulation is ``escalation.simulate``, the one that matches the R packages."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# design_options of the packet (as for `cohort next`) that the simulation also takes
_SIMULATED = ("skeleton", "model", "prior_sd", "extrasafe", "cutoff_eli", "weights")


def operating_characteristics(protocol, design: str, design_options: dict[str, Any], true_tox: Sequence[float], *,
                              trials: int = 2000, seed: int = 1, max_cohorts: int = 10, cohort_size: int = 3,
                              accrual: float | None = None) -> dict[str, Any]:
    """Operating characteristics as the packet and the JSON items show them; ValueError on a curve
    that does not fit the protocol's levels or a setting the design does not take."""
    from ..escalation.sim_settings import _OPTION_KEYS
    from ..escalation.simulate import simulate

    levels = protocol.study_drug.levels
    if len(true_tox) != len(levels):
        raise ValueError(f"the true DLT probabilities give {len(true_tox)} level(s); the protocol has {len(levels)}")
    if not 1 <= trials <= 1_000_000:
        raise ValueError("the number of simulated trials is between 1 and 1,000,000")
    options = {k: v for k, v in design_options.items()
               if k in _SIMULATED and k in _OPTION_KEYS[design] and v is not None}
    tite = design.startswith("tite")
    if tite and accrual is None:
        raise ValueError(f"{design}'s operating characteristics need the accrual rate in patients per day")
    result = simulate(design, list(true_tox), target=design_options.get("target"), cohort_size=cohort_size,
                      max_cohorts=max_cohorts, trials=trials, seed=seed, start_dose=protocol.study_drug.start_level,
                      accrual=accrual if tite else None,
                      window=float(protocol.dlt.window_days) if tite else None, **options).to_dict()
    out = {"true DLT probability": list(true_tox), "trials simulated": trials, "seed": seed,
           "cohorts": f"{max_cohorts} cohorts of {cohort_size}, from level {protocol.study_drug.start_level}",
           "selected as MTD (%)": [round(x, 1) for x in result["selection_pct"]],
           "stopped without an MTD (%)": round(result["stop_pct"], 1),
           "mean patients per level": [round(x, 2) for x in result["mean_patients"]],
           "mean DLTs per level": [round(x, 2) for x in result["mean_dlts"]],
           "mean sample size": round(result["mean_n"], 1)}
    if tite:
        out["accrual (patients per day)"] = accrual
        out["mean duration (days)"] = round(result["mean_duration_days"], 1)
    return out
