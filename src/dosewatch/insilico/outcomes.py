"""Outcome rates with 95% intervals, and how long the monitor took to see what really happened.

Intervals are exact binomial (Clopper-Pearson) over the virtual patients: they say how precisely the
simulation estimated the model's rate, not how uncertain the model is (``scenario`` runs parameter
draws for that)."""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import beta

from .loop import UNDETECTED, Trace
from .population import TIERS, Population

OUTCOMES = {
    "lab_tls": "laboratory TLS (Cairo-Bishop 2004, true values)",
    "clinical_tls": "clinical TLS (laboratory TLS with creatinine >= 1.5 x ULN or fatal arrhythmia)",
    "flare": "tumor flare, any grade (CTCAE v3.0)",
    "flare3": "tumor flare grade >= 3",
    "fn": "febrile neutropenia",
    "death": "death",
}
# what the monitor reports for each true event
DETECTION = {"lab_tls": "tls", "flare3": "flare3", "fn": "fn"}


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def rate(hit: np.ndarray) -> dict[str, Any]:
    k, n = int(hit.sum()), int(hit.size)
    lo, hi = clopper_pearson(k, n)
    return {"events": k, "patients": n, "rate": k / n if n else None, "ci95": [round(lo, 4), round(hi, 4)]}


def summarise(trace: Trace, pop: Population, cycle_days: int) -> dict[str, Any]:
    """Rates over the simulated horizon and in cycle 1, by TLS risk tier, and the monitor's timing."""
    out: dict[str, Any] = {"outcomes": {}, "cycle1": {}, "by_tier": {}, "detection": {}}
    for key, label in OUTCOMES.items():
        day = trace.truth[key]
        out["outcomes"][key] = {"label": label, **rate(day < UNDETECTED)}
        out["cycle1"][key] = {"label": label, **rate(day <= cycle_days)}
    tier = pop.tier
    for t, name in enumerate(TIERS):
        mine = tier == t
        out["by_tier"][name] = {"patients": int(mine.sum()),
                                **{k: rate(trace.truth[k][mine] < UNDETECTED) for k in ("lab_tls", "clinical_tls", "death")}}
    for truth_key, seen_key in DETECTION.items():
        out["detection"][truth_key] = detection(trace.truth[truth_key], trace.detected[seen_key])
    clinical = trace.truth["clinical_tls"] < UNDETECTED
    before = clinical & (trace.detected["tls"] < trace.truth["clinical_tls"])
    out["detection"]["tls_caught_before_clinical"] = {
        "clinical_tls": int(clinical.sum()), "caught_before": int(before.sum()),
        "fraction": float(before.sum() / clinical.sum()) if clinical.any() else None,
        "ci95": [round(x, 4) for x in clopper_pearson(int(before.sum()), int(clinical.sum()))]}
    out["treatment"] = {
        "mean_dose_mg": round(float(trace.dose_given.mean()), 2),
        "patients_held": rate(trace.holds > 0),
        "discontinued": rate(trace.discontinued),
        "monitor_evaluations": trace.evaluations,
    }
    return out


def detection(truth_day: np.ndarray, seen_day: np.ndarray) -> dict[str, Any]:
    """Days from true onset to the first day the monitor reported it, for patients with both; events it
    never reported; and reports without the true event (measurement noise near a cut-off, or a
    definition that differs from the model's truth)."""
    true = truth_day < UNDETECTED
    seen = seen_day < UNDETECTED
    both = true & seen
    delay = (seen_day - truth_day)[both]
    return {
        "true_events": int(true.sum()),
        "reported": int(both.sum()),
        "missed": int((true & ~seen).sum()),
        "reported_without_true_event": int((seen & ~true).sum()),
        "delay_days": {
            "median": float(np.median(delay)) if delay.size else None,
            "q25": float(np.percentile(delay, 25)) if delay.size else None,
            "q75": float(np.percentile(delay, 75)) if delay.size else None,
            "max": int(delay.max()) if delay.size else None,
            "reported_before_true_onset": int((delay < 0).sum()),
        },
    }


def paired_difference(hit: np.ndarray, reference: np.ndarray, seed: int, resamples: int = 2000) -> dict[str, Any]:
    """Rate in one arm minus the reference arm's, on the same virtual patients, with a paired
    bootstrap 95% interval (patients resampled together in both arms; seeded, so reproducible)."""
    d = hit.astype(float) - reference.astype(float)
    rng = np.random.default_rng([seed, 99])
    means = d[rng.integers(0, d.size, (resamples, d.size))].mean(axis=1) if d.size else np.zeros(1)
    return {"difference": round(float(d.mean()), 4),
            "ci95": [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)],
            "method": "paired bootstrap over patients, 2000 resamples"}
