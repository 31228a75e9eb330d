"""CRM (``crmsim`` of dfcrm 0.2-2.1) for a whole batch of trials at once: the posterior mean of beta
from a fixed composite Gauss-Legendre rule evaluated for all trials together (:class:`CrmPosterior`)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .sim_settings import BatchOutcome, SimSettings

# ----------------------------------------------------------------------------------------------
# CRM posterior on a fixed quadrature, for all trials at once


def _gauss_legendre(breaks: Sequence[float], nodes_per_panel: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.legendre.leggauss(nodes_per_panel)
    xs, ws = [], []
    for a, b in zip(breaks[:-1], breaks[1:]):
        xs.append((b - a) / 2 * x + (a + b) / 2)
        ws.append((b - a) / 2 * w)
    return np.concatenate(xs), np.concatenate(ws)


class CrmPosterior:
    """dfcrm's posterior moments of beta by a fixed composite Gauss-Legendre rule: the normaliser
    over [-40, 40] (the prior makes the rest negligible), the first moment over [-10, 10] only, as
    dfcrm integrates them. ``cut`` (a value of beta) becomes a panel edge so that the posterior mass
    below it -- P(p_1 > threshold) for the safety stop -- is integrated without a kink inside a panel."""

    MOMENT_BOUND = 10.0
    OUTER = 40.0

    def __init__(self, skeleton: Sequence[float], *, model: str = "empiric", intercept: float = 3.0,
                 prior_sd: float = math.sqrt(1.34), cut: float | None = None, nodes_per_panel: int = 16):
        sk = np.asarray(skeleton, dtype=np.float64)
        inner = list(np.arange(-10.0, 10.0 + 1e-9, 1.0))
        breaks = sorted({-self.OUTER, -25.0, *inner, 25.0, self.OUTER}
                        | ({float(cut)} if cut is not None and -self.OUTER < cut < self.OUTER else set()))
        beta, weight = _gauss_legendre(breaks, nodes_per_panel)
        self.beta = beta
        self.skeleton = sk
        self.model = model
        self.intercept = intercept
        self.log_weight = np.log(weight) - beta**2 / (2 * prior_sd**2)
        self.inner = np.abs(beta) <= self.MOMENT_BOUND
        self.below_cut = beta < cut if cut is not None else None
        eb = np.exp(beta)[None, :]
        if model == "empiric":
            z = eb * np.log(sk)[:, None]  # log p = exp(beta) log(skeleton)
            self.logp = z
            self.log1mp = np.log(-np.expm1(z))
        elif model == "logistic":
            scaled = np.log(sk / (1 - sk)) - intercept
            if not (scaled < 0).all():
                raise ValueError("intercept of the logistic model is too small: scaled doses > 0")
            eta = intercept + eb * scaled[:, None]
            self.logp = -np.logaddexp(0.0, -eta)
            self.log1mp = -np.logaddexp(0.0, eta)
        else:
            raise ValueError(f"unknown model {model!r}: use empiric or logistic")

    def _density(self, loglik: np.ndarray) -> np.ndarray:
        lf = loglik + self.log_weight[None, :]
        lf -= lf.max(axis=1, keepdims=True)
        return np.exp(lf, out=lf)

    def loglik_counts(self, n: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Log-likelihood on the grid (trials, nodes) from patients and DLTs per dose."""
        n = np.asarray(n, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        return y @ self.logp + (n - y) @ self.log1mp

    def mean_beta(self, loglik: np.ndarray) -> np.ndarray:
        f = self._density(loglik)
        return (f @ np.where(self.inner, self.beta, 0.0)) / f.sum(axis=1)

    def prob_below_cut(self, loglik: np.ndarray) -> np.ndarray:
        f = self._density(loglik)
        return (f @ self.below_cut.astype(np.float64)) / f.sum(axis=1)

    def fit_counts(self, n: np.ndarray, y: np.ndarray, target: float, safety: float | None = None):
        """Model dose per trial (and, with ``safety``, whether P(p_1 > target) exceeds it) from
        patients and DLTs per dose. Trials in the same state share one evaluation."""
        state = np.concatenate([n, y], axis=1)
        uniq, inverse = np.unique(state, axis=0, return_inverse=True)
        levels = n.shape[1]
        loglik = self.loglik_counts(uniq[:, :levels], uniq[:, levels:])
        dose = self.model_dose(self.mean_beta(loglik), target)[inverse.reshape(-1)]
        if safety is None:
            return dose, None
        return dose, (self.prob_below_cut(loglik) > safety)[inverse.reshape(-1)]

    def ptox(self, beta: np.ndarray) -> np.ndarray:
        """Plug-in curve at each trial's beta (trials, doses), as fit_crm computes it."""
        beta = np.asarray(beta, dtype=np.float64)
        if self.model == "empiric":
            return self.skeleton[None, :] ** np.exp(beta)[:, None]
        scaled = np.log(self.skeleton / (1 - self.skeleton)) - self.intercept
        return 1.0 / (1.0 + np.exp(-self.intercept - np.exp(beta)[:, None] * scaled[None, :]))

    def model_dose(self, beta: np.ndarray, target: float) -> np.ndarray:
        """dfcrm's ``mtd`` for each trial (1-based)."""
        pt = self.ptox(beta)
        nearest = np.argmin(np.abs(pt - target), axis=1) + 1
        return np.where((pt <= target).all(axis=1), pt.shape[1], np.where((pt >= target).all(axis=1), 1, nearest))


def _safety_cut(s: SimSettings) -> float | None:
    """beta below which p_1 exceeds the target (the safety stop's event), or None without a stop."""
    if s.opt("safety_stop") is None:
        return None
    sk1 = s.opt("skeleton")[0]
    if s.opt("model", "empiric") == "empiric":
        return math.log(math.log(s.target) / math.log(sk1))
    a = s.opt("intercept", 3.0)
    scaled = math.log(sk1 / (1 - sk1)) - a
    return math.log((math.log(s.target / (1 - s.target)) - a) / scaled)


def _posterior(s: SimSettings) -> CrmPosterior:
    return CrmPosterior(s.opt("skeleton"), model=s.opt("model", "empiric"), intercept=s.opt("intercept", 3.0),
                        prior_sd=s.opt("prior_sd", math.sqrt(1.34)), cut=_safety_cut(s))


def _restrict(model_dose: np.ndarray, last_dose: np.ndarray, last_rate: np.ndarray, target: float) -> np.ndarray:
    """crmsim's restriction (1-based doses): never above the last cohort's dose after a cohort whose
    DLT rate reached the target, otherwise at most one level above it."""
    return np.minimum(model_dose, np.where(last_rate >= target, last_dose, last_dose + 1))


def crm_batch(s: SimSettings, rng: np.random.Generator, trials: int) -> BatchOutcome:
    """``trials`` CRM trials as dfcrm's crmsim runs them (single stage, x0 = start dose)."""
    levels, C, K = s.levels, s.cohort_size, s.max_cohorts
    p = np.asarray(s.true_tox)
    post = _posterior(s)
    restrict = s.opt("restrict", True)
    safety = s.opt("safety_stop")
    n = np.zeros((trials, levels), dtype=np.int64)
    y = np.zeros((trials, levels), dtype=np.int64)
    d = np.full(trials, s.start_dose, dtype=np.int64)  # 1-based
    running = np.ones(trials, dtype=bool)
    no_mtd = np.zeros(trials, dtype=bool)
    mtd = np.zeros(trials, dtype=np.int64)
    for cohort in range(K):
        u = rng.random((trials, C))
        idx = np.flatnonzero(running)
        if idx.size == 0:
            continue
        dd = d[idx]
        tox = (u[idx] < p[dd - 1][:, None]).sum(axis=1)
        n[idx, dd - 1] += C
        y[idx, dd - 1] += tox
        model_dose, stop = post.fit_counts(n[idx], y[idx], s.target, safety)
        if stop is not None:
            no_mtd[idx[stop]] = True
            running[idx[stop]] = False
            keep = ~stop
            idx, dd, tox, model_dose = idx[keep], dd[keep], tox[keep], model_dose[keep]
        if cohort == K - 1:
            mtd[idx] = model_dose  # the final selection is the unrestricted model dose
            break
        d[idx] = _restrict(model_dose, dd, tox / C, s.target) if restrict else model_dose
    return BatchOutcome(n, y, np.where(no_mtd, 0, mtd))
