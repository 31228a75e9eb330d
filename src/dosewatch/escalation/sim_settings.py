"""The setting of one simulated design on one scenario (checked, frozen, picklable: sent to Dask
workers) and what a batch of simulated trials returns. The engines are in sim_rules.py (BOIN, 3+3),
sim_crm.py and sim_tite.py; batches, seeds and totals in simulate.py."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .boin import check_target

SIM_DESIGNS = ("boin", "crm", "tite-crm", "tite-boin", "3+3")
TITE_DESIGNS = ("tite-crm", "tite-boin")

_BOIN_KEYS = ("p_saf", "p_tox", "cutoff_eli", "extrasafe", "offset", "n_earlystop", "bound_mtd")
_CRM_KEYS = ("skeleton", "model", "intercept", "prior_sd", "restrict", "safety_stop")
_OPTION_KEYS = {
    "boin": _BOIN_KEYS,
    "tite-boin": _BOIN_KEYS + ("max_pending",),
    "crm": _CRM_KEYS,
    "tite-crm": _CRM_KEYS + ("weights",),
    "3+3": (),
}


@dataclass(frozen=True)
class SimSettings:
    design: str
    true_tox: tuple[float, ...]
    target: float | None
    cohort_size: int
    max_cohorts: int
    start_dose: int = 1
    accrual: float | None = None
    window: float | None = None
    late_fraction: float = 0.5
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def levels(self) -> int:
        return len(self.true_tox)

    def opt(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)


def make_settings(design: str, true_tox: Sequence[float], *, target: float | None, cohort_size: int,
                  max_cohorts: int, start_dose: int = 1, accrual: float | None = None, window: float | None = None,
                  late_fraction: float = 0.5, **options: Any) -> SimSettings:
    """Check and freeze a simulation setting; ``options`` are the design's (as for
    :func:`~dosewatch.escalation.make_design`); unknown or inapplicable ones are an error."""
    if design not in SIM_DESIGNS:
        raise ValueError(f"unknown design {design!r}: use one of {', '.join(SIM_DESIGNS)}")
    tox = tuple(float(p) for p in true_tox)
    if not tox or not all(0.0 <= p < 1.0 for p in tox):
        raise ValueError("true toxicity probabilities must be in [0, 1)")
    if cohort_size < 1 or max_cohorts < 1:
        raise ValueError("cohort size and number of cohorts must be at least 1")
    if not 1 <= start_dose <= len(tox):
        raise ValueError(f"start dose {start_dose} is not one of the levels 1..{len(tox)}")
    given = {k: v for k, v in options.items() if v is not None}
    allowed = _OPTION_KEYS[design]
    extra = sorted(set(given) - set(allowed))
    if extra:
        raise ValueError(f"design {design} does not take option(s) {', '.join(extra)}")
    if design == "3+3":
        if cohort_size != 3:
            raise ValueError("the 3+3 design treats cohorts of 3 (--cohort-size 3)")
    elif target is None:
        raise ValueError(f"design {design} needs a target toxicity probability")
    if design in ("boin", "tite-boin"):
        p_saf = given.get("p_saf", 0.6 * target)
        p_tox = given.get("p_tox", 1.4 * target)
        check_target(target, p_saf, p_tox, given.get("offset", 0.05))
    if design in ("crm", "tite-crm"):
        sk = given.get("skeleton")
        if sk is None:
            raise ValueError(f"design {design} needs a skeleton (one probability per dose level)")
        sk = tuple(float(p) for p in sk)
        if len(sk) != len(tox):
            raise ValueError(f"the skeleton has {len(sk)} levels but the true curve {len(tox)}")
        if not all(0 < p < 1 for p in sk) or any(b <= a for a, b in zip(sk, sk[1:])):
            raise ValueError("the skeleton must be increasing probabilities strictly between 0 and 1")
        given["skeleton"] = sk
        if given.get("model", "empiric") not in ("empiric", "logistic"):
            raise ValueError(f"unknown model {given['model']!r}: use empiric or logistic")
        if given.get("weights", "linear") not in ("linear", "adaptive"):
            raise ValueError(f"unknown weights {given['weights']!r}: use linear or adaptive")
    if design in TITE_DESIGNS:
        if window is None or window <= 0:
            raise ValueError(f"{design} needs the DLT window in days (--window)")
        if accrual is None or accrual <= 0:
            raise ValueError(f"{design} needs the accrual rate in patients per day (--accrual)")
        if not 0 < late_fraction < 1:
            raise ValueError("--late-fraction must be strictly between 0 and 1")
    return SimSettings(design, tox, target, cohort_size, max_cohorts, start_dose,
                       accrual if design in TITE_DESIGNS else None, window if design in TITE_DESIGNS else None,
                       late_fraction, tuple(sorted(given.items())))


@dataclass
class BatchOutcome:
    """Per trial of a batch: patients and DLTs per dose (trials, doses), the selected dose (1-based,
    0 = none) and, for TITE designs, the trial's duration in days."""

    n: np.ndarray
    y: np.ndarray
    mtd: np.ndarray
    duration: np.ndarray | None = None
