"""BOIN (Liu & Yuan 2015) as the R package BOIN 2.7.2 implements it: ``get.boundary``,
``select.mtd`` and the decision ``get.oc`` takes after each cohort. See docs/dose-finding.md for
every place where dosewatch differs from the package (its bugs are not copied)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .base import Design, Outcomes, Recommendation, decision_between

# BOIN's tolerance for "lambda_d * n is an integer" (de-escalation then needs one more DLT).
_INTEGER_TOL = 1e-12
# select.mtd adds i * 1e-10 to the i-th admissible isotonic estimate so that ties resolve as
# documented: a tied block below the target gives its highest dose, otherwise its lowest.
_TIE_BREAK = 1e-10


def check_target(target: float, p_saf: float, p_tox: float, offset: float = 0.05) -> None:
    """The argument checks of get.boundary / get.oc."""
    if target < 0.05:
        raise ValueError("the target is too low (BOIN needs 0.05 <= target <= 0.6)")
    if target > 0.6:
        raise ValueError("the target is too high (BOIN needs 0.05 <= target <= 0.6)")
    if target - p_saf < 0.1 * target:
        raise ValueError("the probability deemed safe cannot be higher than or too close to the target")
    if p_tox - target < 0.1 * target:
        raise ValueError("the probability deemed toxic cannot be lower than or too close to the target")
    if offset >= 0.5:
        raise ValueError("the offset is too large (must be < 0.5)")


def boin_lambdas(target: float, p_saf: float | None = None, p_tox: float | None = None) -> tuple[float, float]:
    """(lambda_e, lambda_d); p_saf and p_tox default to 0.6 and 1.4 times the target."""
    p_saf = 0.6 * target if p_saf is None else p_saf
    p_tox = 1.4 * target if p_tox is None else p_tox
    lambda_e = math.log((1 - p_saf) / (1 - target)) / math.log(target * (1 - p_saf) / (p_saf * (1 - target)))
    lambda_d = math.log((1 - target) / (1 - p_tox)) / math.log(p_tox * (1 - target) / (target * (1 - p_tox)))
    return lambda_e, lambda_d


def prob_above(target: float, y, n):
    """P(p > target | y DLTs in n) under a uniform prior: 1 - pbeta(target, y+1, n-y+1), as BOIN
    computes it (the complement, not the upper tail, so comparisons land where R's do)."""
    from scipy.special import betainc  # lazily: scipy.special costs ~0.3 s to import

    y = np.asarray(y, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    return 1.0 - betainc(y + 1.0, n - y + 1.0, target)


def smallest_y_above(target: float, n: int, cutoff: float) -> int | None:
    """Smallest y in 1..n with P(p > target | y, n) > cutoff, for n >= 3; None when none qualifies."""
    if n < 3:
        return None
    ys = np.arange(1, n + 1)
    hit = np.flatnonzero(prob_above(target, ys, n) > cutoff)
    return int(ys[hit[0]]) if hit.size else None


def escalate_max(lambda_e: float, n: int) -> int:
    return math.floor(lambda_e * n)


def deescalate_min(lambda_d: float, n: int, eliminate_min: int | None) -> int:
    x = lambda_d * n
    bound = round(x) + 1 if abs(round(x) - x) < _INTEGER_TOL else math.ceil(x)
    return min(bound, eliminate_min) if eliminate_min is not None else bound


@dataclass(frozen=True)
class BoundaryRow:
    n: int
    escalate_max: int
    deescalate_min: int
    eliminate_min: int | None
    stop_min: int | None


def boin_boundaries(target: float, cohort_size: int, max_cohorts: int, *, n_earlystop: int = 100,
                    p_saf: float | None = None, p_tox: float | None = None, cutoff_eli: float = 0.95,
                    extrasafe: bool = False, offset: float = 0.05) -> dict:
    """get.boundary's full table: one row per n from 1 to cohort_size*max_cohorts, cut at
    n_earlystop. ``stop_min`` is the extrasafe stop row (None without extrasafe or where no count
    qualifies; the package fails with "object 'stopneed' not found" in that case)."""
    p_saf = 0.6 * target if p_saf is None else p_saf
    p_tox = 1.4 * target if p_tox is None else p_tox
    check_target(target, p_saf, p_tox, offset)
    if cohort_size < 1 or max_cohorts < 1:
        raise ValueError("cohort size and number of cohorts must be at least 1")
    lambda_e, lambda_d = boin_lambdas(target, p_saf, p_tox)
    rows = []
    for n in range(1, min(cohort_size * max_cohorts, n_earlystop) + 1):
        elim = smallest_y_above(target, n, cutoff_eli)
        stop = smallest_y_above(target, n, cutoff_eli - offset) if extrasafe else None
        rows.append(BoundaryRow(n, escalate_max(lambda_e, n), deescalate_min(lambda_d, n, elim), elim, stop))
    return {"lambda_e": lambda_e, "lambda_d": lambda_d, "table": [vars(r) for r in rows]}


def pava(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted isotonic regression, merging the first violating adjacent pair again and again as
    BOIN's internal PAVA does (same pooling order, so pooled blocks hold identical values)."""
    x = np.array(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    level = np.arange(x.size)
    while True:
        viol = np.flatnonzero(np.diff(x) < 0)
        if viol.size == 0:
            return x
        i = viol[0]
        block = (level == level[i]) | (level == level[i + 1])
        x[block] = float(np.sum(x[block] * w[block])) / float(np.sum(w[block]))
        level[block] = level[i]


def eliminated_doses(target: float, n, y, cutoff_eli: float = 0.95, n_eli: int = 3) -> np.ndarray:
    """Boolean per dose: the lowest dose with n >= n_eli and P(p > target) > cutoff_eli, and every
    dose above it."""
    n = np.asarray(n)
    y = np.asarray(y)
    elim = np.zeros(n.size, dtype=bool)
    hit = np.flatnonzero((n >= n_eli) & (prob_above(target, y, n) > cutoff_eli))
    if hit.size:
        elim[hit[0]:] = True
    return elim


def extrasafe_stop(target: float, n, y, cutoff_eli: float, offset: float, n_eli: int = 3) -> bool:
    """extrasafe: the lowest dose is too toxic when n1 >= n_eli and P(p1 > target) > cutoff_eli - offset."""
    return bool(n[0] >= n_eli and prob_above(target, y[0], n[0]) > cutoff_eli - offset)


def select_mtd(target: float, n, y, *, cutoff_eli: float = 0.95, extrasafe: bool = False,
               offset: float = 0.05, bound_mtd: bool = False, p_tox: float | None = None,
               pseudo: float = 0.05, n_eli: int = 3) -> tuple[int | None, list[float | None]]:
    """BOIN's select.mtd: (MTD level or None, isotonic estimate per dose used for the selection,
    None for untreated or eliminated doses). ``pseudo`` is 0.05 in BOIN and 0.005 in
    TITEgBOIN's select_mtd_TITE_QuasiBOIN; ``n_eli`` is TITEgBOIN's Neli."""
    n = np.asarray(n, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    iso: list[float | None] = [None] * n.size
    elim = eliminated_doses(target, n, y, cutoff_eli, n_eli)
    if extrasafe and extrasafe_stop(target, n, y, cutoff_eli, offset, n_eli):
        elim[:] = True
    if elim[0] or n[~elim].sum() == 0:
        return None, iso
    adm = np.flatnonzero((n > 0) & ~elim)
    ya = y[adm].astype(np.float64)
    na = n[adm].astype(np.float64)
    phat = (ya + pseudo) / (na + 2 * pseudo)
    var = (ya + pseudo) * (na - ya + pseudo) / ((na + 2 * pseudo) ** 2 * (na + 2 * pseudo + 1))
    phat = pava(phat, 1.0 / var)
    for k, dose in enumerate(adm):
        iso[dose] = float(phat[k])
    broken = phat + np.arange(1, phat.size + 1) * _TIE_BREAK
    if bound_mtd:
        lambda_d = boin_lambdas(target, None, p_tox)[1]
        keep = broken <= lambda_d  # isotonic, so the kept doses are a prefix of adm
        if not keep.any():
            return None, iso
        broken = broken[keep]
    return int(adm[int(np.argmin(np.abs(broken - target)))] + 1), iso


def saf_tox(target: float, p_saf: float | None, p_tox: float | None, offset: float) -> tuple[float, float]:
    """BOIN's p.saf and p.tox (defaults 0.6 and 1.4 times the target), checked against the target."""
    p_saf = 0.6 * target if p_saf is None else p_saf
    p_tox = 1.4 * target if p_tox is None else p_tox
    check_target(target, p_saf, p_tox, offset)
    return p_saf, p_tox


class BOIN(Design):
    """BOIN with elimination, extrasafe, n.earlystop and boundMTD, deciding as get.oc does after a
    completed cohort. ``fit`` reads the data; the trial's history of eliminations is recovered from
    the counts (a dose's counts only change while it is the current dose, and get.oc checks it then)."""

    def __init__(self, target: float, n_levels: int, *, p_saf: float | None = None, p_tox: float | None = None,
                 cutoff_eli: float = 0.95, extrasafe: bool = False, offset: float = 0.05,
                 n_earlystop: int = 100, bound_mtd: bool = False):
        self.target = target
        self.levels = n_levels
        self.p_saf = p_saf
        self.p_tox = p_tox
        self.cutoff_eli = cutoff_eli
        self.extrasafe = extrasafe
        self.offset = offset
        self.n_earlystop = n_earlystop
        self.bound_mtd = bound_mtd

    @property
    def n_levels(self) -> int:
        return self.levels

    def _p(self) -> tuple[float, float]:
        return saf_tox(self.target, self.p_saf, self.p_tox, self.offset)

    def _select(self, n, y):
        return select_mtd(self.target, n, y, cutoff_eli=self.cutoff_eli, extrasafe=self.extrasafe,
                          offset=self.offset, bound_mtd=self.bound_mtd, p_tox=self._p()[1])

    def select_mtd(self, outcomes: Outcomes) -> Recommendation:
        n, y = outcomes.counts(self.levels)
        mtd, iso = self._select(n, y)
        reason = "no dose is acceptable" if mtd is None else f"isotonic estimate at dose {mtd} is closest to the target"
        return Recommendation(None, "stop", reason, mtd, {"isotonic": iso})

    def fit(self, outcomes: Outcomes, current_dose: int | None = None) -> Recommendation:
        p_saf, p_tox = self._p()
        lambda_e, lambda_d = boin_lambdas(self.target, p_saf, p_tox)
        n, y = outcomes.counts(self.levels)
        d = self._current(outcomes, current_dose)
        mtd, iso = self._select(n, y)
        extra = {"isotonic": iso, "lambda_e": lambda_e, "lambda_d": lambda_d,
                 "n": n.tolist(), "dlt": y.tolist()}

        def rec(nxt, reason, chosen=mtd):
            decision = "stop" if nxt is None else decision_between(d, nxt)
            return Recommendation(nxt, decision, reason, chosen, extra)

        elim = eliminated_doses(self.target, n, y, self.cutoff_eli)
        if elim[0]:
            return rec(None, f"dose 1 is eliminated: P(toxicity > {self.target}) > {self.cutoff_eli}; "
                             "the trial stops with no MTD", None)
        if self.extrasafe and extrasafe_stop(self.target, n, y, self.cutoff_eli, self.offset):
            return rec(None, f"extrasafe: P(toxicity at dose 1 > {self.target}) > "
                             f"{self.cutoff_eli - self.offset:g}; the trial stops with no MTD", None)
        if elim[d - 1]:
            first = int(np.argmax(elim)) + 1
            return rec(min(d, first) - 1, f"dose {first} and above are eliminated "
                                          f"(P(toxicity > {self.target}) > {self.cutoff_eli})")
        nd, yd = int(n[d - 1]), int(y[d - 1])
        if nd == 0:
            return rec(d, f"no patient has been treated at dose {d} yet")
        b_e = escalate_max(lambda_e, nd)
        b_d = deescalate_min(lambda_d, nd, smallest_y_above(self.target, nd, self.cutoff_eli))
        top_blocked = d == self.levels or bool(elim[d])
        state = f"{yd}/{nd} DLTs at dose {d}"
        if nd >= self.n_earlystop and ((b_e < yd < b_d) or (d == 1 and yd >= b_d) or (top_blocked and yd <= b_e)):
            return rec(None, f"{state}: {nd} patients reached n.earlystop={self.n_earlystop} "
                             "and the dose would not change; the trial stops")
        if yd <= b_e and d != self.levels:
            if elim[d]:
                return rec(d, f"{state} (<= {b_e}), but dose {d + 1} is eliminated")
            return rec(d + 1, f"{state}: observed rate {yd / nd:.3f} <= lambda_e {lambda_e:.4f}")
        if yd >= b_d and d != 1:
            return rec(d - 1, f"{state}: observed rate {yd / nd:.3f} > lambda_d {lambda_d:.4f}")
        if yd <= b_e:
            return rec(d, f"{state}: observed rate <= lambda_e but dose {d} is the highest")
        if yd >= b_d:
            return rec(d, f"{state}: observed rate > lambda_d but dose 1 is the lowest")
        return rec(d, f"{state}: observed rate {yd / nd:.3f} between lambda_e {lambda_e:.4f} "
                      f"and lambda_d {lambda_d:.4f}")
