"""Operating characteristics by simulation, vectorised across trials.

Every engine simulates a whole batch of trials at once: the state is a set of numpy arrays of
shape (trials, doses) and each loop step is one cohort (or one wait) for every trial still running,
never one Python loop per trial. The loops copy the R packages' simulation functions:

* BOIN: ``get.oc`` of BOIN 2.7.2 (cohorts of C, elimination checked at the current dose, n.earlystop,
  no decision after the last cohort, ``select.mtd`` at the end);
* CRM: ``crmsim`` of dfcrm 0.2-2.1 (first cohort at the start dose, then the model dose of a Bayesian
  fit on all data with no skipping on escalation and no escalation right after a cohort whose DLT
  rate reached the target; no early stop unless ``safety_stop`` is given; the final selection is the
  unrestricted model dose). The posterior mean of beta comes from a fixed composite Gauss-Legendre
  rule evaluated for all trials at once (:class:`CrmPosterior`), checked against :func:`~.crm.fit_crm`;
* TITE-BOIN and TITE-CRM: ``get_oc_TITE_QuasiBOIN`` of TITEgBOIN 0.4.0 (exponential inter-arrival at
  ``accrual`` patients per day; Weibull DLT times with ``late_fraction`` of the DLTs in the second
  half of the window; a decision at each next arrival, waiting while accrual is suspended);
* 3+3: the variant of :mod:`.three_plus_three`, whose exact characteristics
  :func:`three_plus_three_exact` gives by enumerating every outcome path.

Reproducibility: trials are cut into batches of a fixed size (independent of the number of
workers), batch ``k`` of grid cell ``c`` draws from ``SeedSequence(seed, spawn_key=(c, k))``, and
batch totals are integer counts (durations summed in batch order), so the same seed gives the same
result in process or on any number of Dask workers.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .boin import boin_lambdas, check_target, deescalate_min, escalate_max

SIM_DESIGNS = ("boin", "crm", "tite-crm", "tite-boin", "3+3")
TITE_DESIGNS = ("tite-crm", "tite-boin")
# Trials per batch (one task on a cluster). Fixed per design, never derived from the number of
# workers, so that the random streams -- and the results -- do not depend on how the work is spread.
DEFAULT_BATCH = {"boin": 50_000, "3+3": 50_000, "tite-boin": 5_000, "crm": 10_000, "tite-crm": 1_000}
# select.mtd's tie-break (see boin.py)
_TIE_BREAK = 1e-10

_BOIN_KEYS = ("p_saf", "p_tox", "cutoff_eli", "extrasafe", "offset", "n_earlystop", "bound_mtd")
_CRM_KEYS = ("skeleton", "model", "intercept", "prior_sd", "restrict", "safety_stop")
_OPTION_KEYS = {
    "boin": _BOIN_KEYS,
    "tite-boin": _BOIN_KEYS + ("max_pending",),
    "crm": _CRM_KEYS,
    "tite-crm": _CRM_KEYS + ("weights",),
    "3+3": (),
}


# ----------------------------------------------------------------------------------------------
# the configuration of one simulated design on one scenario (picklable, sent to Dask workers)


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


# ----------------------------------------------------------------------------------------------
# per-batch outcome and totals


@dataclass
class BatchOutcome:
    """Per trial of a batch: patients and DLTs per dose (trials, doses), the selected dose (1-based,
    0 = none) and, for TITE designs, the trial's duration in days."""

    n: np.ndarray
    y: np.ndarray
    mtd: np.ndarray
    duration: np.ndarray | None = None


@dataclass
class Totals:
    """Additive totals of a batch: integer counts (exact whatever the order of addition) and the
    duration sum (added in batch order)."""

    trials: int
    selected: np.ndarray  # length levels + 1; index 0 counts trials with no dose selected
    patients: np.ndarray
    dlts: np.ndarray
    duration_sum: float | None = None

    @classmethod
    def of(cls, out: BatchOutcome, levels: int) -> "Totals":
        return cls(int(out.mtd.size), np.bincount(out.mtd, minlength=levels + 1).astype(np.int64),
                   out.n.sum(axis=0).astype(np.int64), out.y.sum(axis=0).astype(np.int64),
                   None if out.duration is None else float(out.duration.sum()))

    def __add__(self, other: "Totals") -> "Totals":
        dur = None if self.duration_sum is None else self.duration_sum + other.duration_sum
        return Totals(self.trials + other.trials, self.selected + other.selected, self.patients + other.patients,
                      self.dlts + other.dlts, dur)


@dataclass
class SimResult:
    """Operating characteristics of one design on one scenario."""

    settings: SimSettings
    totals: Totals
    elapsed_s: float
    scenario: str = ""
    label: str = ""

    def to_dict(self) -> dict[str, Any]:
        t = self.totals
        n = t.trials
        out: dict[str, Any] = {
            "design": self.label or self.settings.design,
            "scenario": self.scenario,
            "true_tox": list(self.settings.true_tox),
            "target": self.settings.target,
            "trials": n,
            "selection_pct": (100.0 * t.selected[1:] / n).tolist(),
            "stop_pct": 100.0 * float(t.selected[0]) / n,
            "mean_patients": (t.patients / n).tolist(),
            "mean_dlts": (t.dlts / n).tolist(),
            "mean_n": float(t.patients.sum()) / n,
            "mean_total_dlts": float(t.dlts.sum()) / n,
        }
        if t.duration_sum is not None:
            out["mean_duration_days"] = t.duration_sum / n
        out["elapsed_s"] = self.elapsed_s
        return out


# ----------------------------------------------------------------------------------------------
# BOIN select.mtd, vectorised


def _prob_table(target: float, n_max: int) -> np.ndarray:
    """P(p > target | y DLTs in n) under a Beta(1, 1) prior for 0 <= y <= n <= n_max (NaN for y > n),
    as P(Binomial(n + 1, target) <= y), the same number as BOIN's 1 - pbeta(target, y+1, n-y+1)
    without importing scipy (the command must start fast); the boundaries derived from it are
    checked against :func:`~.boin.boin_boundaries` in the tests."""
    tab = np.full((n_max + 1, n_max + 1), np.nan)
    for n in range(n_max + 1):
        m = n + 1
        pmf = [math.comb(m, k) * target**k * (1 - target) ** (m - k) for k in range(n + 1)]
        tab[n, : n + 1] = np.minimum(np.cumsum(pmf), 1.0)
    return tab


def select_mtd_batch(target: float, n: np.ndarray, y: np.ndarray, *, cutoff_eli: float = 0.95,
                     extrasafe: bool = False, offset: float = 0.05, bound_mtd: bool = False,
                     p_tox: float | None = None, pseudo: float = 0.05, n_eli: int = 3,
                     ptab: np.ndarray | None = None) -> np.ndarray:
    """:func:`~.boin.select_mtd` for many trials at once: rows of ``n`` and ``y`` are trials.
    Returns the selected level per trial (1-based, 0 = none)."""
    n = np.asarray(n, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    rows, levels = n.shape
    if ptab is None:
        ptab = _prob_table(target, int(n.max(initial=0)))
    p_above = ptab[n, y]
    elim = np.maximum.accumulate((n >= n_eli) & (p_above > cutoff_eli), axis=1)
    if extrasafe:
        elim |= ((n[:, 0] >= n_eli) & (p_above[:, 0] > cutoff_eli - offset))[:, None]
    none = elim[:, 0] | ((n * ~elim).sum(axis=1) == 0)
    adm = (n > 0) & ~elim
    # admissible doses moved to the left, in dose order; PAVA runs over them as if adjacent
    order = np.argsort(~adm, axis=1, kind="stable")
    m = adm.sum(axis=1)
    valid = np.arange(levels)[None, :] < m[:, None]
    ya = np.take_along_axis(y, order, axis=1).astype(np.float64)
    na = np.take_along_axis(n, order, axis=1).astype(np.float64)
    x = (ya + pseudo) / (na + 2 * pseudo)
    w = 1.0 / ((ya + pseudo) * (na - ya + pseudo) / ((na + 2 * pseudo) ** 2 * (na + 2 * pseudo + 1)))
    x = np.where(valid, x, 0.0)
    w = np.where(valid, w, 0.0)
    level = np.broadcast_to(np.arange(levels), (rows, levels)).copy()
    while True:
        # merge the first violating adjacent pair, as BOIN's PAVA does
        viol = (x[:, 1:] < x[:, :-1]) & valid[:, 1:]
        todo = np.flatnonzero(viol.any(axis=1))
        if todo.size == 0:
            break
        i = np.argmax(viol[todo], axis=1)
        lv = level[todo]
        l1 = lv[np.arange(todo.size), i]
        l2 = lv[np.arange(todo.size), i + 1]
        block = (lv == l1[:, None]) | (lv == l2[:, None])
        xt, wt = x[todo], w[todo]
        pooled = (xt * wt * block).sum(axis=1) / (wt * block).sum(axis=1)
        x[todo] = np.where(block, pooled[:, None], xt)
        level[todo] = np.where(block, l1[:, None], lv)
    broken = x + np.arange(1, levels + 1)[None, :] * _TIE_BREAK
    ok = valid.copy()
    if bound_mtd:
        lambda_d = boin_lambdas(target, None, p_tox)[1]
        ok &= broken <= lambda_d
        none |= ~ok.any(axis=1)
    dist = np.where(ok, np.abs(broken - target), np.inf)
    pos = np.argmin(dist, axis=1)
    chosen = order[np.arange(rows), pos] + 1
    return np.where(none, 0, chosen).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# BOIN (get.oc)


def _boin_tables(s: SimSettings, ptab: np.ndarray):
    """get.oc's boundary vectors indexed by n = 0..N: escalate if y <= b_e[n], de-escalate if
    y >= b_d[n], eliminate if y >= b_el[n] (N + 1 where no boundary applies)."""
    npts = s.cohort_size * s.max_cohorts
    lambda_e, lambda_d = boin_lambdas(s.target, s.opt("p_saf"), s.opt("p_tox"))
    cutoff = s.opt("cutoff_eli", 0.95)
    big = npts + 1  # "no boundary": never reached
    b_e = np.full(npts + 1, -1, dtype=np.int64)
    b_d = np.full(npts + 1, big, dtype=np.int64)
    b_el = np.full(npts + 1, big, dtype=np.int64)
    for n in range(1, npts + 1):
        hit = np.flatnonzero(ptab[n, 1 : n + 1] > cutoff) if n >= 3 else np.array([], dtype=np.int64)
        elim = int(hit[0]) + 1 if hit.size else None
        b_e[n] = escalate_max(lambda_e, n)
        b_d[n] = deescalate_min(lambda_d, n, elim)
        if elim is not None:
            b_el[n] = elim
    return b_e, b_d, b_el


def boin_batch(s: SimSettings, rng: np.random.Generator, trials: int) -> BatchOutcome:
    """``trials`` BOIN trials as get.oc runs them. Each cohort draws (trials, cohort_size) uniforms
    for every trial (also finished ones) so that the stream is fixed by the seed alone."""
    levels, C, K = s.levels, s.cohort_size, s.max_cohorts
    p = np.asarray(s.true_tox)
    ptab = _prob_table(s.target, C * K)
    b_e, b_d, b_el = _boin_tables(s, ptab)
    cutoff, offset = s.opt("cutoff_eli", 0.95), s.opt("offset", 0.05)
    n_es = s.opt("n_earlystop", 100)
    n = np.zeros((trials, levels), dtype=np.int64)
    y = np.zeros((trials, levels), dtype=np.int64)
    elim = np.zeros((trials, levels + 1), dtype=bool)  # column `levels` is a sentinel (never eliminated)
    d = np.full(trials, s.start_dose - 1, dtype=np.int64)
    running = np.ones(trials, dtype=bool)
    no_mtd = np.zeros(trials, dtype=bool)
    cols = np.arange(levels + 1)
    for cohort in range(K):
        u = rng.random((trials, C))
        idx = np.flatnonzero(running)
        if idx.size == 0:
            continue
        dd = d[idx]
        tox = (u[idx] < p[dd][:, None]).sum(axis=1)
        n[idx, dd] += C
        y[idx, dd] += tox
        if cohort == K - 1:
            break  # get.oc: the cohort reaching the maximum sample size ends the trial, no decision
        nd, yd = n[idx, dd], y[idx, dd]
        hit = yd >= b_el[nd]
        elim[idx] |= hit[:, None] & (cols[None, :] >= dd[:, None])
        elim[idx, levels] = False
        stop_now = hit & (dd == 0)
        if s.opt("extrasafe", False):
            # dosewatch's rule (docs "differences" 2): dose 1 too toxic at n >= 3, whether or not the
            # elimination table has an entry at this n
            n1, y1 = n[idx, 0], y[idx, 0]
            stop_now |= (dd == 0) & (n1 >= 3) & (ptab[n1, np.minimum(y1, n1)] > cutoff - offset)
        be, bd = b_e[nd], b_d[nd]
        blocked = (dd == levels - 1) | elim[idx, dd + 1]
        early = (nd >= n_es) & (((yd > be) & (yd < bd)) | ((dd == 0) & (yd >= bd)) | (blocked & (yd <= be)))
        up = (yd <= be) & (dd != levels - 1)
        nxt = np.where(up, np.where(elim[idx, dd + 1], dd, dd + 1), np.where((yd >= bd) & (dd != 0), dd - 1, dd))
        ended = stop_now | early
        d[idx] = np.where(ended, dd, nxt)
        no_mtd[idx] = stop_now
        running[idx] = ~ended
    mtd = select_mtd_batch(s.target, n, y, cutoff_eli=cutoff, extrasafe=s.opt("extrasafe", False), offset=offset,
                           bound_mtd=s.opt("bound_mtd", False), p_tox=s.opt("p_tox"), ptab=ptab)
    return BatchOutcome(n, y, np.where(no_mtd, 0, mtd))


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


# ----------------------------------------------------------------------------------------------
# 3+3


def three_plus_three_batch(s: SimSettings, rng: np.random.Generator, trials: int) -> BatchOutcome:
    """``trials`` 3+3 trials (the variant of :mod:`.three_plus_three`); a trial still going after
    ``max_cohorts`` cohorts ends with no MTD."""
    levels, K = s.levels, s.max_cohorts
    p = np.asarray(s.true_tox)
    n = np.zeros((trials, levels + 1), dtype=np.int64)  # column `levels`: sentinel, "untested" never
    y = np.zeros((trials, levels), dtype=np.int64)
    n[:, levels] = 1
    d = np.full(trials, s.start_dose - 1, dtype=np.int64)
    running = np.ones(trials, dtype=bool)
    mtd = np.zeros(trials, dtype=np.int64)
    for _ in range(K):
        u = rng.random((trials, 3))
        idx = np.flatnonzero(running)
        if idx.size == 0:
            continue
        dd = d[idx]
        n[idx, dd] += 3
        y[idx, dd] += (u[idx] < p[dd][:, None]).sum(axis=1)
        nd, yd = n[idx, dd], y[idx, dd]
        below_n = n[idx, np.maximum(dd - 1, 0)]
        above_untested = n[idx, dd + 1] == 0
        toxic = yd >= 2
        stop_none = toxic & (dd == 0)
        de = toxic & (dd > 0) & (below_n < 6)
        stop_below = toxic & (dd > 0) & (below_n >= 6)
        up = ~toxic & ((yd == 0) | (nd == 6)) & above_untested
        stop_here = ~toxic & ~up & (nd == 6)
        d[idx] = np.where(de, dd - 1, np.where(up, dd + 1, dd))
        mtd[idx] = np.where(stop_below, dd, np.where(stop_here, dd + 1, 0))
        running[idx] = ~(stop_none | stop_below | stop_here)
    mtd[running] = 0
    return BatchOutcome(n[:, :levels], y, mtd)


def three_plus_three_exact(true_tox: Sequence[float], start_dose: int = 1) -> dict[str, Any]:
    """Exact operating characteristics of the 3+3 variant by enumerating every outcome path with the
    design's own decision rule (:class:`~.three_plus_three.ThreePlusThree`): selection probability
    per dose, P(no MTD), expected patients and DLTs per dose."""
    from .base import Outcomes
    from .three_plus_three import ThreePlusThree

    levels = len(true_tox)
    design = ThreePlusThree(levels)
    sel = np.zeros(levels + 1)
    exp_n = np.zeros(levels)
    exp_y = np.zeros(levels)

    def visit(dose: list[int], dlt: list[int], level: int, prob: float) -> None:
        pt = float(true_tox[level - 1])
        for k in range(4):
            pk = prob * math.comb(3, k) * pt**k * (1 - pt) ** (3 - k)
            if pk == 0.0:
                continue
            d2 = dose + [level] * 3
            y2 = dlt + [1] * k + [0] * (3 - k)
            rec = design.fit(Outcomes.from_lists(d2, y2), current_dose=level)
            if rec.decision == "stop":
                sel[rec.mtd or 0] += pk
                out = Outcomes.from_lists(d2, y2)
                nn, yy = out.counts(levels)
                exp_n[:] += pk * nn
                exp_y[:] += pk * yy
            else:
                visit(d2, y2, rec.next_dose, pk)

    visit([], [], start_dose, 1.0)
    return {"selection": sel[1:].tolist(), "no_mtd": float(sel[0]), "mean_patients": exp_n.tolist(),
            "mean_dlts": exp_y.tolist(), "mean_n": float(exp_n.sum())}


# ----------------------------------------------------------------------------------------------
# TITE designs: TITEgBOIN's time model


def _dlt_times(p: np.ndarray, u: np.ndarray, window: float, late_fraction: float) -> np.ndarray:
    """TITEgBOIN's gen.tite: Weibull DLT times with P(DLT within the window) = p and a fraction
    ``late_fraction`` of those DLTs in the second half of the window; no DLT gives the window."""
    pi = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        half = (1 - late_fraction) * pi
        alpha = np.log(np.log1p(-pi) / np.log1p(-half)) / math.log(2.0)  # alpha2 = 1/2 of the window
        lam = -np.log1p(-pi) / window**alpha
        t = (-np.log(u) / lam) ** (1 / alpha)
    t = np.where(pi > 0, t, np.inf)
    return np.where(t <= window, t, window), t <= window


class _TiteTrials:
    """Patient-level state of a batch of TITE trials: dose (0-based), entry time, event time
    (DLT time, or the window without a DLT) and DLT flag, shape (trials, max patients)."""

    def __init__(self, trials: int, npts: int):
        self.dose = np.zeros((trials, npts), dtype=np.int64)
        self.entry = np.zeros((trials, npts))
        self.event = np.zeros((trials, npts))
        self.tox = np.zeros((trials, npts), dtype=bool)
        self.enrolled = np.zeros(trials, dtype=np.int64)
        self.count = 0  # patients so far of every trial still running (all enroll whole cohorts)

    def enroll(self, idx, dose, entry, event, tox):
        k = self.count
        C = entry.shape[1]
        self.dose[idx, k:k + C] = dose[:, None]
        self.entry[idx, k:k + C] = entry
        self.event[idx, k:k + C] = event
        self.tox[idx, k:k + C] = tox
        self.enrolled[idx] += C

    def at(self, idx, t_dec, levels: int, window: float):
        """Per dose at decision times ``t_dec``: patients, observed DLTs, pending patients and
        their follow-up (TITEgBOIN's uniform timing prior makes the transform the identity)."""
        k = self.count
        dose, entry, event, tox = (a[idx, :k] for a in (self.dose, self.entry, self.event, self.tox))
        seen = entry + event <= t_dec[:, None]
        fu = np.minimum(np.minimum(event, t_dec[:, None] - entry), window)
        pend = ~seen
        onehot = dose[:, :, None] == np.arange(levels)[None, None, :]
        n = onehot.sum(axis=1)
        yobs = (onehot & (tox & seen)[:, :, None]).sum(axis=1)
        npend = (onehot & pend[:, :, None]).sum(axis=1)
        ft = (onehot * np.where(pend, fu, 0.0)[:, :, None]).sum(axis=1)
        return n, yobs, npend, ft, dose, tox, seen, fu


def _enroll_cohort(st: _TiteTrials, idx, d, t_start, p, rng_draws, s: SimSettings):
    exp_draw, u = rng_draws
    C = s.cohort_size
    gaps = exp_draw[idx] / s.accrual
    gaps[:, 0] = 0.0
    entry = t_start[:, None] + np.cumsum(gaps, axis=1)
    event, tox = _dlt_times(p[d][:, None], u[idx], s.window, s.late_fraction)
    st.enroll(idx, d, entry, event, tox)
    return entry[:, C - 1]


def tite_boin_batch(s: SimSettings, rng: np.random.Generator, trials: int) -> BatchOutcome:
    """``trials`` TITE-BOIN trials as TITEgBOIN's get_oc_TITE_QuasiBOIN runs them (binary toxicity):
    the first patient of a cohort enters at the decision time, the others at exponential gaps; the
    decision is taken when the next patient arrives, and while accrual is suspended the next arrival
    is awaited again. The trial ends ``window`` days after the last entry."""
    levels, C, K, W = s.levels, s.cohort_size, s.max_cohorts, s.window
    p = np.asarray(s.true_tox)
    lambda_e, lambda_d = boin_lambdas(s.target, s.opt("p_saf"), s.opt("p_tox"))
    cutoff, offset = s.opt("cutoff_eli", 0.95), s.opt("offset", 0.05)
    extrasafe, n_es = s.opt("extrasafe", False), s.opt("n_earlystop", 100)
    max_pending = s.opt("max_pending", 0.5)
    n_eli = 3
    ptab = _prob_table(s.target, C * K)
    st = _TiteTrials(trials, C * K)
    d = np.full(trials, s.start_dose - 1, dtype=np.int64)
    t_dec = np.zeros(trials)
    last_entry = np.zeros(trials)
    elim = np.zeros((trials, levels + 1), dtype=bool)
    running = np.ones(trials, dtype=bool)
    no_mtd = np.zeros(trials, dtype=bool)
    for cohort in range(K):
        draws = (rng.standard_exponential((trials, C)), rng.random((trials, C)))
        idx = np.flatnonzero(running)
        if idx.size == 0:
            continue
        t_dec[idx] = _enroll_cohort(st, idx, d[idx], t_dec[idx], p, draws, s)
        last_entry[idx] = t_dec[idx]
        st.count += C
        if cohort == K - 1:
            break
        d_cur = d.copy()
        waiting = running.copy()
        while True:
            wait = rng.standard_exponential(trials)
            idx = np.flatnonzero(waiting)
            if idx.size == 0:
                break
            t_dec[idx] += wait[idx] / s.accrual
            n, yobs, npend, ft, *_ = st.at(idx, t_dec[idx], levels, W)
            dc = d_cur[idx]
            # elimination scans every dose with the real n; flags persist (the package passes them on)
            hit = np.maximum.accumulate((n >= n_eli) & (ptab[n, yobs] > cutoff), axis=1)
            el = elim[idx]
            el[:, :levels] |= hit
            r = np.arange(idx.size)
            nc, yc, pc, ftc = n[r, dc], yobs[r, dc], npend[r, dc], ft[r, dc]
            early = np.zeros(idx.size, dtype=bool)
            if extrasafe:
                early = (dc == 0) & (nc >= n_eli) & (ptab[nc, yc] > cutoff - offset)
                el[early, :levels] = True
            first = np.argmax(el[:, :levels], axis=1)
            at_elim = el[r, dc]
            early |= at_elim & (first == 0)
            suspend = ~at_elim & (pc > nc * max_pending)
            with np.errstate(divide="ignore", invalid="ignore"):
                phat = np.where(pc == 0, yc / nc, yc / (nc - pc + ftc / W))
            decide = ~at_elim & ~suspend
            esc = decide & (phat <= lambda_e)
            de = decide & ~esc & (phat >= lambda_d)
            up = esc & (dc != levels - 1) & ~el[r, np.minimum(dc + 1, levels)]
            down = de & (dc != 0)
            stay = decide & ~up & ~down
            hold = de & (dc == 0) & (pc > 0)  # de-escalation signal at dose 1 with patients pending: wait
            nxt = np.where(at_elim, first - 1, np.where(up, dc + 1, np.where(down, dc - 1, dc)))
            stop = (nc >= n_es) & stay
            elim[idx] = el
            ended = early | stop
            d[idx] = np.where(early, dc, nxt)
            no_mtd[idx] = early
            running[idx] = ~ended
            waiting[idx] = ~ended & (suspend | hold)
    n_all = np.zeros((trials, levels), dtype=np.int64)
    y_all = np.zeros((trials, levels), dtype=np.int64)
    k = st.count
    filled = np.arange(k)[None, :] < st.enrolled[:, None]
    for lv in range(levels):
        at = (st.dose[:, :k] == lv) & filled
        n_all[:, lv] = at.sum(axis=1)
        y_all[:, lv] = (at & st.tox[:, :k]).sum(axis=1)
    mtd = select_mtd_batch(s.target, n_all, y_all, cutoff_eli=cutoff, extrasafe=extrasafe, offset=offset,
                           bound_mtd=s.opt("bound_mtd", False), p_tox=s.opt("p_tox"), pseudo=0.005, n_eli=n_eli,
                           ptab=ptab)
    return BatchOutcome(n_all, y_all, np.where(no_mtd, 0, mtd), last_entry + W)



def tite_crm_batch(s: SimSettings, rng: np.random.Generator, trials: int) -> BatchOutcome:
    """``trials`` TITE-CRM trials on TITEgBOIN's time model: each cohort's dose is decided when its
    first patient arrives, from a fit with linear weights on what is known then (a pending patient
    without a DLT counts with weight follow-up/window), restricted as crmsim restricts (no skipping;
    no escalation after a cohort whose observed DLT rate reached the target). TITE-CRM never
    suspends. The final selection is the model dose on the complete data."""
    if s.opt("weights", "linear") != "linear":
        raise ValueError("TITE-CRM simulation supports linear weights only")
    levels, C, K, W = s.levels, s.cohort_size, s.max_cohorts, s.window
    p = np.asarray(s.true_tox)
    post = _posterior(s)
    restrict = s.opt("restrict", True)
    safety = s.opt("safety_stop")
    st = _TiteTrials(trials, C * K)
    d = np.full(trials, s.start_dose - 1, dtype=np.int64)
    t_dec = np.zeros(trials)
    last_entry = np.zeros(trials)
    running = np.ones(trials, dtype=bool)
    no_mtd = np.zeros(trials, dtype=bool)
    mtd = np.zeros(trials, dtype=np.int64)
    for cohort in range(K):
        draws = (rng.standard_exponential((trials, C)), rng.random((trials, C)))
        wait = rng.standard_exponential(trials)
        idx = np.flatnonzero(running)
        if idx.size == 0:
            continue
        last_entry[idx] = _enroll_cohort(st, idx, d[idx], t_dec[idx], p, draws, s)
        st.count += C
        final = cohort == K - 1
        # the decision comes with the next arrival; the final selection on complete data
        t_dec[idx] = np.inf if final else last_entry[idx] + wait[idx] / s.accrual
        n, yobs, npend, ft, dose, tox, seen, fu = st.at(idx, t_dec[idx], levels, W)
        complete = seen  # DLT seen, or followed for the whole window
        nc = (dose[:, :, None] == np.arange(levels)) & complete[:, :, None]
        loglik = post.loglik_counts(nc.sum(axis=1), (nc & tox[:, :, None]).sum(axis=1))
        pend = ~complete
        cols = np.flatnonzero(pend.any(axis=0))
        if cols.size:
            sub = slice(cols[0], None)
            w = np.where(pend[:, sub], fu[:, sub] / W, 0.0)
            pj = np.exp(post.logp[dose[:, sub]])  # (trials, patients, nodes)
            loglik = loglik + np.log1p(-w[:, :, None] * pj).sum(axis=1)
        dd = d[idx] + 1
        if safety is not None:
            stop = post.prob_below_cut(loglik) > safety
            no_mtd[idx[stop]] = True
            running[idx[stop]] = False
            keep = ~stop
            idx, dd, loglik, tox, seen = idx[keep], dd[keep], loglik[keep], tox[keep], seen[keep]
        model_dose = post.model_dose(post.mean_beta(loglik), s.target)
        if final:
            mtd[idx] = model_dose
            break
        last_rate = (tox & seen)[:, -C:].sum(axis=1) / C
        d[idx] = (_restrict(model_dose, dd, last_rate, s.target) if restrict else model_dose) - 1
    n_all = np.zeros((trials, levels), dtype=np.int64)
    y_all = np.zeros((trials, levels), dtype=np.int64)
    k = st.count
    filled = np.arange(k)[None, :] < st.enrolled[:, None]
    for lv in range(levels):
        at = (st.dose[:, :k] == lv) & filled
        n_all[:, lv] = at.sum(axis=1)
        y_all[:, lv] = (at & st.tox[:, :k]).sum(axis=1)
    return BatchOutcome(n_all, y_all, np.where(no_mtd, 0, mtd), last_entry + W)


ENGINES: dict[str, Callable[[SimSettings, np.random.Generator, int], BatchOutcome]] = {
    "boin": boin_batch, "crm": crm_batch, "3+3": three_plus_three_batch,
    "tite-boin": tite_boin_batch, "tite-crm": tite_crm_batch,
}


# ----------------------------------------------------------------------------------------------
# batches, seeds and the public calls


@dataclass(frozen=True)
class Task:
    """One batch: ``size`` trials of ``settings`` drawn from SeedSequence(seed, spawn_key=(cell, batch))."""

    settings: SimSettings
    size: int
    seed: int
    cell: int
    batch: int


def run_task(task: Task) -> Totals:
    """Run one batch (in process or on a Dask worker)."""
    rng = np.random.default_rng(np.random.SeedSequence(task.seed, spawn_key=(task.cell, task.batch)))
    out = ENGINES[task.settings.design](task.settings, rng, task.size)
    return Totals.of(out, task.settings.levels)


def plan_tasks(settings: SimSettings, trials: int, seed: int, cell: int = 0, batch_size: int | None = None) -> list[Task]:
    if trials < 1:
        raise ValueError("the number of trials must be at least 1")
    if seed < 0:
        raise ValueError("the seed must be a non-negative integer")
    size = batch_size or DEFAULT_BATCH[settings.design]
    return [Task(settings, min(size, trials - start), seed, cell, k) for k, start in enumerate(range(0, trials, size))]


@dataclass
class Cell:
    """One (scenario, design) cell of a grid."""

    settings: SimSettings
    scenario: str = ""
    label: str = ""
    tasks: list[Task] = field(default_factory=list)


def run_cells(cells: list[Cell], *, client: Any = None, workers: int | None = None, scheduler: str | None = None,
              progress: Callable[[int, int], None] | None = None) -> list[SimResult]:
    """Run every task of every cell (in process, or on Dask: ``client``, a local cluster of
    ``workers`` processes, or the scheduler at ``scheduler``) and total them per cell in batch order."""
    tasks = [t for c in cells for t in c.tasks]
    start = time.perf_counter()
    if progress:
        progress(0, len(tasks))
    if client is None and workers is None and scheduler is None:
        results = []
        for i, task in enumerate(tasks):
            results.append(run_task(task))
            if progress:
                progress(i + 1, len(tasks))
    else:
        from .distributed import run_on_dask

        results = run_on_dask(tasks, client=client, workers=workers, scheduler=scheduler, progress=progress)
    elapsed = time.perf_counter() - start
    out, k = [], 0
    for c in cells:
        part = results[k:k + len(c.tasks)]
        k += len(c.tasks)
        total = part[0]
        for t in part[1:]:
            total = total + t
        out.append(SimResult(c.settings, total, elapsed, c.scenario, c.label))
    return out


def simulate(design: str, true_tox: Sequence[float], *, target: float | None = None, cohort_size: int = 3,
             max_cohorts: int = 10, trials: int = 10_000, seed: int = 1, start_dose: int = 1,
             accrual: float | None = None, window: float | None = None, late_fraction: float = 0.5,
             batch_size: int | None = None, client: Any = None, workers: int | None = None,
             scheduler: str | None = None, progress: Callable[[int, int], None] | None = None,
             **options: Any) -> SimResult:
    """Operating characteristics of one design on one true dose-toxicity curve.

    ``options`` are the design's (``skeleton``, ``model``, ``safety_stop``, ``extrasafe``, ...).
    The same ``seed`` (and ``batch_size``) gives the same result in process or on any cluster."""
    settings = make_settings(design, true_tox, target=target, cohort_size=cohort_size, max_cohorts=max_cohorts,
                             start_dose=start_dose, accrual=accrual, window=window, late_fraction=late_fraction,
                             **options)
    cell = Cell(settings, label=design, tasks=plan_tasks(settings, trials, seed, 0, batch_size))
    return run_cells([cell], client=client, workers=workers, scheduler=scheduler, progress=progress)[0]


def simulate_grid(scenarios: dict[str, Sequence[float]] | Iterable[Sequence[float]],
                  designs: dict[str, dict[str, Any]], *, target: float | None = None, cohort_size: int = 3,
                  max_cohorts: int = 10, trials: int = 10_000, seed: int = 1, start_dose: int = 1,
                  accrual: float | None = None, window: float | None = None, late_fraction: float = 0.5,
                  batch_size: int | None = None, client: Any = None, workers: int | None = None,
                  scheduler: str | None = None, progress: Callable[[int, int], None] | None = None
                  ) -> list[SimResult]:
    """Every scenario x design, all batches at once (one Dask task per batch on a cluster).

    ``scenarios``: name -> true toxicity per dose (or a list; names become S1, S2, ...).
    ``designs``: label -> options with a ``design`` key, e.g.
    ``{"BOIN": {"design": "boin"}, "CRM": {"design": "crm", "skeleton": [...]}}``; an option given
    there overrides the shared ones (target, cohort_size, window, ...). Cell ``c`` (scenario-major)
    uses spawn key ``(c, batch)`` so that each cell's numbers do not depend on the rest of the grid's
    size only through its position. Results come in scenario-major order."""
    if not isinstance(scenarios, dict):
        scenarios = {f"S{i + 1}": tox for i, tox in enumerate(scenarios)}
    shared = dict(target=target, cohort_size=cohort_size, max_cohorts=max_cohorts, start_dose=start_dose,
                  accrual=accrual, window=window, late_fraction=late_fraction)
    cells = []
    for name, tox in scenarios.items():
        for label, opts in designs.items():
            opts = dict(opts)
            design = opts.pop("design")
            kw = {**shared, **{k: opts.pop(k) for k in list(opts) if k in shared}}
            settings = make_settings(design, tox, **kw, **opts)
            cells.append(Cell(settings, name, label, plan_tasks(settings, trials, seed, len(cells), batch_size)))
    return run_cells(cells, client=client, workers=workers, scheduler=scheduler, progress=progress)


__all__ = ["SIM_DESIGNS", "BatchOutcome", "CrmPosterior", "SimResult", "SimSettings", "Totals", "make_settings",
           "run_task", "select_mtd_batch", "simulate", "simulate_grid", "three_plus_three_exact"]
