"""TITE-BOIN and TITE-CRM with TITEgBOIN's time model (``get_oc_TITE_QuasiBOIN`` of TITEgBOIN 0.4.0)
for a whole batch of trials at once."""
from __future__ import annotations

import math

import numpy as np

from .boin import boin_lambdas
from .sim_crm import _posterior, _restrict
from .sim_rules import _prob_table, select_mtd_batch
from .sim_settings import BatchOutcome, SimSettings

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

    def totals(self, levels: int) -> tuple[np.ndarray, np.ndarray]:
        """Patients and DLTs per dose of every trial at its end, shape (trials, levels)."""
        k = self.count
        filled = np.arange(k)[None, :] < self.enrolled[:, None]
        n_all = np.zeros((len(self.enrolled), levels), dtype=np.int64)
        y_all = np.zeros_like(n_all)
        for lv in range(levels):
            at = (self.dose[:, :k] == lv) & filled
            n_all[:, lv] = at.sum(axis=1)
            y_all[:, lv] = (at & self.tox[:, :k]).sum(axis=1)
        return n_all, y_all

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
    n_all, y_all = st.totals(levels)
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
    n_all, y_all = st.totals(levels)
    return BatchOutcome(n_all, y_all, np.where(no_mtd, 0, mtd), last_entry + W)
