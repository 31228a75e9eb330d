"""Dose finding: 3+3, BOIN, CRM, TITE-CRM and TITE-BOIN deciding as the R packages BOIN 2.7.2,
dfcrm 0.2-2.1 and TITEgBOIN 0.4.0 do (see docs/dose-finding.md).

    >>> from dosewatch.escalation import make_design, parse_outcomes
    >>> boin = make_design("boin", target=0.25, levels=5)
    >>> rec = boin.fit(parse_outcomes("1NNN 2NTN 2NNN"))
    >>> rec.next_dose, rec.decision
    (3, 'escalate')

Heavy modules (numpy, scipy) load on first use so that the command line starts fast.
"""
from __future__ import annotations

import importlib
from typing import Any

DESIGNS = ("boin", "crm", "tite-crm", "tite-boin", "3+3")

_LAZY = {
    "Outcomes": "base", "Recommendation": "base", "Design": "base", "parse_outcomes": "base",
    "BOIN": "boin", "boin_boundaries": "boin", "boin_lambdas": "boin", "select_mtd": "boin",
    "CRM": "crm", "fit_crm": "crm", "get_prior": "crm", "CrmFit": "crm",
    "TiteBOIN": "tite_boin", "ThreePlusThree": "three_plus_three",
    "DontSkip": "wrappers", "Coherent": "wrappers", "CoherentAtDose": "wrappers", "StopWhenTooToxic": "wrappers", "make_crm": "wrappers",
    "read_cohort": "cohort_io",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)


def make_design(design: str, target: float | None = None, *, levels: int | None = None, skeleton=None,
                model: str = "empiric", intercept: float = 3.0, prior_sd: float | None = None,
                window: float | None = None, weights: str = "linear", max_pending: float = 0.5,
                cohort_size: int = 3, restrict: bool = True, rules: str = "crmsim", safety_stop: float | None = None,
                p_saf: float | None = None, p_tox: float | None = None, cutoff_eli: float = 0.95,
                extrasafe: bool = False, offset: float = 0.05, n_earlystop: int = 100, bound_mtd: bool = False,
                variant: str = "korn"):
    """One of the designs by its command-line name, configured with the command-line defaults:
    CRM / TITE-CRM get crmsim's restrictions (``restrict``; ``rules`` picks dtpcrm's instead) and
    an optional safety stop; ``variant`` is the 3+3's (``korn`` or brockk/escalation's)."""
    if design not in DESIGNS:
        raise ValueError(f"unknown design {design!r}: use one of {', '.join(DESIGNS)}")
    if design == "3+3":
        from .three_plus_three import ThreePlusThree

        return ThreePlusThree(_need_levels(levels, design), variant=variant)
    if target is None:
        raise ValueError(f"design {design} needs a target toxicity probability")
    if design == "boin":
        from .boin import BOIN

        return BOIN(target, _need_levels(levels, design), p_saf=p_saf, p_tox=p_tox, cutoff_eli=cutoff_eli,
                    extrasafe=extrasafe, offset=offset, n_earlystop=n_earlystop, bound_mtd=bound_mtd)
    if design == "tite-boin":
        from .tite_boin import TiteBOIN

        if window is None:
            raise ValueError("TITE-BOIN needs the DLT window in days (--window)")
        return TiteBOIN(target, _need_levels(levels, design), window, max_pending=max_pending, p_saf=p_saf,
                        p_tox=p_tox, cutoff_eli=cutoff_eli, extrasafe=extrasafe, offset=offset,
                        n_earlystop=n_earlystop, bound_mtd=bound_mtd)
    from .crm import DEFAULT_PRIOR_SD
    from .wrappers import make_crm

    if skeleton is None:
        raise ValueError(f"design {design} needs a skeleton (--skeleton p1,p2,...; see `design skeleton`)")
    if levels is not None and levels != len(skeleton):
        raise ValueError(f"--levels {levels} differs from the skeleton's {len(skeleton)} levels")
    if design == "tite-crm" and window is None:
        raise ValueError("TITE-CRM needs the DLT window in days (--window)")
    return make_crm(list(skeleton), target, cohort_size=cohort_size, restrict=restrict, rules=rules, safety_stop=safety_stop,
                    model=model, intercept=intercept, prior_sd=DEFAULT_PRIOR_SD if prior_sd is None else prior_sd,
                    window=window if design == "tite-crm" else None, weights=weights)


def _need_levels(levels: int | None, design: str) -> int:
    if levels is None or levels < 1:
        raise ValueError(f"design {design} needs the number of dose levels (--levels N)")
    return levels


__all__ = ["DESIGNS", "make_design", *_LAZY]
