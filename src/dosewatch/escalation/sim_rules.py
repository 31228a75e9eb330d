"""Rule-based designs for a whole batch of trials at once: BOIN as ``get.oc`` of BOIN 2.7.2 runs it
(``select.mtd`` vectorised) and the 3+3 variant of :mod:`.three_plus_three`, with its exact
characteristics by enumeration."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .boin import boin_lambdas, deescalate_min, escalate_max
from .sim_settings import BatchOutcome, SimSettings

# select.mtd's tie-break (see boin.py)
_TIE_BREAK = 1e-10


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
    for every trial (also finished ones) so that the stream is fixed by the seed alone. Each trial
    keeps its lowest eliminated level (elimination removes a dose and every dose above it), and the
    trials still running are an index that shrinks as they end."""
    levels, C, K = s.levels, s.cohort_size, s.max_cohorts
    p = np.asarray(s.true_tox)
    ptab = _prob_table(s.target, C * K)
    b_e, b_d, b_el = _boin_tables(s, ptab)
    cutoff, offset = s.opt("cutoff_eli", 0.95), s.opt("offset", 0.05)
    n_es = s.opt("n_earlystop", 100)
    extrasafe = s.opt("extrasafe", False)
    n = np.zeros((trials, levels), dtype=np.int64)
    y = np.zeros((trials, levels), dtype=np.int64)
    n_flat, y_flat = n.reshape(-1), y.reshape(-1)  # views: trial t, dose j at t * levels + j
    first_elim = np.full(trials, levels, dtype=np.int64)  # dose j is eliminated when j >= first_elim
    d = np.full(trials, s.start_dose - 1, dtype=np.int64)
    idx = np.arange(trials)  # the trials still running
    no_mtd = np.zeros(trials, dtype=bool)
    for cohort in range(K):
        u = rng.random((trials, C))
        if idx.size == 0:
            continue
        dd = d[idx]
        tox = (u[idx] < p[dd][:, None]).sum(axis=1)
        at = idx * levels + dd
        nd, yd = n_flat[at] + C, y_flat[at] + tox
        n_flat[at], y_flat[at] = nd, yd
        if cohort == K - 1:
            break  # get.oc: the cohort reaching the maximum sample size ends the trial, no decision
        hit = yd >= b_el[nd]
        fe = np.where(hit, np.minimum(first_elim[idx], dd), first_elim[idx])
        first_elim[idx] = fe
        stop_now = hit & (dd == 0)
        if extrasafe:
            # dosewatch's rule (docs "differences" 2): dose 1 too toxic at n >= 3, whether or not the
            # elimination table has an entry at this n
            n1, y1 = n_flat[idx * levels], y_flat[idx * levels]
            stop_now |= (dd == 0) & (n1 >= 3) & (ptab[n1, np.minimum(y1, n1)] > cutoff - offset)
        be, bd = b_e[nd], b_d[nd]
        next_elim = (fe <= dd + 1) & (dd + 1 < levels)  # the dose above is eliminated
        blocked = (dd == levels - 1) | next_elim
        early = (nd >= n_es) & (((yd > be) & (yd < bd)) | ((dd == 0) & (yd >= bd)) | (blocked & (yd <= be)))
        up = (yd <= be) & (dd != levels - 1)
        nxt = np.where(up, np.where(next_elim, dd, dd + 1), np.where((yd >= bd) & (dd != 0), dd - 1, dd))
        ended = stop_now | early
        d[idx] = np.where(ended, dd, nxt)
        no_mtd[idx] = stop_now
        idx = idx[~ended]
    mtd = select_mtd_batch(s.target, n, y, cutoff_eli=cutoff, extrasafe=extrasafe, offset=offset,
                           bound_mtd=s.opt("bound_mtd", False), p_tox=s.opt("p_tox"), ptab=ptab)
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
