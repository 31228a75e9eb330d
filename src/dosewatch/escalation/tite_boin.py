"""TITE-BOIN as TITEgBOIN 0.4.0 decides (``next_TITE_QuasiBOIN``, binary toxicity) and selects the
MTD (``select_mtd_TITE_QuasiBOIN``). Pending patients (no DLT, follow-up shorter than the window)
count through an effective sample size n - pending + (their follow-up)/window, which is what the
package's uniform DLT-timing prior reduces to."""
from __future__ import annotations

import numpy as np

from .base import Design, Outcomes, Recommendation, decision_between
from .boin import boin_lambdas, eliminated_doses, prob_above, saf_tox, select_mtd


def tite_counts(outcomes: Outcomes, n_levels: int, window: float):
    """Per dose: patients, DLTs, pending patients and their total follow-up (capped at the window).
    A patient with a DLT counts as fully followed."""
    if outcomes.followup is None:
        raise ValueError("TITE-BOIN needs each patient's follow-up (a followup column)")
    n, y = outcomes.counts(n_levels)
    pending = (outcomes.dlt == 0) & (outcomes.followup < window)
    idx = outcomes.dose[pending] - 1
    npend = np.bincount(idx, minlength=n_levels).astype(np.int64)
    ft = np.bincount(idx, weights=np.minimum(outcomes.followup[pending], window), minlength=n_levels)
    return n, y, npend, ft


class TiteBOIN(Design):
    """TITE-BOIN: BOIN's boundaries on y / (n - pending + follow-up/window); suspends accrual when
    more than ``max_pending`` of the current dose's patients are pending. Elimination uses the real
    n (Beta(1,1) posterior, n >= n_eli) and scans every dose."""

    def __init__(self, target: float, n_levels: int, window: float, *, max_pending: float = 0.5,
                 p_saf: float | None = None, p_tox: float | None = None, cutoff_eli: float = 0.95,
                 extrasafe: bool = False, offset: float = 0.05, n_earlystop: int = 100, n_eli: int = 3,
                 bound_mtd: bool = False):
        self.target = target
        self.levels = n_levels
        self.window = window
        self.max_pending = max_pending
        self.p_saf = p_saf
        self.p_tox = p_tox
        self.cutoff_eli = cutoff_eli
        self.extrasafe = extrasafe
        self.offset = offset
        self.n_earlystop = n_earlystop
        self.n_eli = n_eli
        self.bound_mtd = bound_mtd

    @property
    def n_levels(self) -> int:
        return self.levels

    def _lambdas(self) -> tuple[float, float]:
        return boin_lambdas(self.target, *saf_tox(self.target, self.p_saf, self.p_tox, self.offset))

    def _select(self, n, y):
        # TITEgBOIN's select_mtd: BOIN's rule with Beta(0.005, 0.005)-type pseudo-counts (no boundMTD
        # there; dosewatch offers it as BOIN defines it)
        return select_mtd(self.target, n, y, cutoff_eli=self.cutoff_eli, extrasafe=self.extrasafe, offset=self.offset,
                          bound_mtd=self.bound_mtd, p_tox=self.p_tox if self.p_tox is not None else 1.4 * self.target,
                          pseudo=0.005, n_eli=self.n_eli)

    def select_mtd(self, outcomes: Outcomes) -> Recommendation:
        n, y = outcomes.counts(self.levels)
        mtd, iso = self._select(n, y)
        reason = "no dose is acceptable" if mtd is None else f"isotonic estimate at dose {mtd} is closest to the target"
        return Recommendation(None, "stop", reason, mtd, {"isotonic": iso})

    def fit(self, outcomes: Outcomes, current_dose: int | None = None) -> Recommendation:
        lambda_e, lambda_d = self._lambdas()
        n, y, npend, ft = tite_counts(outcomes, self.levels, self.window)
        d = self._current(outcomes, current_dose)
        mtd, iso = self._select(n, y)
        ess = n - npend + ft / self.window
        extra = {"isotonic": iso, "lambda_e": lambda_e, "lambda_d": lambda_d, "n": n.tolist(), "dlt": y.tolist(),
                 "pending": npend.tolist(), "effective_n": ess.tolist()}

        def rec(nxt, decision, reason, chosen=mtd):
            return Recommendation(nxt, decision, reason, chosen, extra)

        elim = eliminated_doses(self.target, n, y, self.cutoff_eli, self.n_eli)
        nd, yd, pd = int(n[d - 1]), int(y[d - 1]), int(npend[d - 1])
        if (self.extrasafe and d == 1 and nd >= self.n_eli
                and prob_above(self.target, yd, nd) > self.cutoff_eli - self.offset):
            return rec(None, "stop", f"extrasafe: P(toxicity at dose 1 > {self.target}) > "
                                     f"{self.cutoff_eli - self.offset:g}; the trial stops with no MTD", None)
        if elim[d - 1]:
            first = int(np.argmax(elim)) + 1
            if first == 1:
                return rec(None, "stop", f"dose 1 is eliminated: P(toxicity > {self.target}) > "
                                         f"{self.cutoff_eli}; the trial stops with no MTD", None)
            return rec(first - 1, "de-escalate", f"dose {first} and above are eliminated "
                                                 f"(P(toxicity > {self.target}) > {self.cutoff_eli})")
        if nd == 0:
            return rec(d, "stay", f"no patient has been treated at dose {d} yet")
        if pd > nd * self.max_pending:
            return rec(d, "suspend", f"{pd} of {nd} patients at dose {d} are still pending "
                                     f"(more than {self.max_pending:g}); wait for follow-up")
        phat = yd / nd if pd == 0 else yd / (nd - pd + ft[d - 1] / self.window)
        state = f"{yd} DLTs at dose {d}, effective n {ess[d - 1]:.2f}, estimate {phat:.3f}"
        nxt, pending = d, False
        if phat <= lambda_e:
            if d != self.levels and not elim[d]:
                nxt = d + 1
        elif phat >= lambda_d:
            if d != 1:
                nxt = d - 1
            else:
                pending = pd > 0
        if nxt == d and nd >= self.n_earlystop:
            return rec(None, "stop", f"{state}: {nd} patients reached n.earlystop={self.n_earlystop} "
                                     "and the dose would not change; the trial stops")
        if pending:
            return rec(d, "suspend", f"{state} >= lambda_d {lambda_d:.4f} at the lowest dose with "
                                     f"{pd} patient(s) pending; wait for follow-up")
        if phat <= lambda_e:
            why = f"<= lambda_e {lambda_e:.4f}"
            if nxt == d:
                why += f" but dose {d} is the highest" if d == self.levels else f" but dose {d + 1} is eliminated"
        elif phat >= lambda_d:
            why = f">= lambda_d {lambda_d:.4f}" + (" but dose 1 is the lowest" if nxt == d else "")
        else:
            why = f"between lambda_e {lambda_e:.4f} and lambda_d {lambda_d:.4f}"
        return rec(nxt, decision_between(d, nxt), f"{state} {why}")
