"""The 3+3 design in the variant of Korn et al. (Stat Med 1994;13:1799) with de-escalation, so that
the MTD is always a dose where six patients were treated with at most one DLT.

At the current dose d with n patients and y DLTs:

* n < 3, or 3 < n < 6: stay (complete the cohort).
* n = 3, y = 0: escalate to d + 1 if it is untested; if d is the top dose or d + 1 was already
  found too toxic, stay and expand d to six.
* n = 3, y = 1: stay (expand to six).
* n = 6, y <= 1: escalate to d + 1 if it is untested, otherwise stop with MTD d.
* y >= 2 (n = 3 or 6): if d = 1, stop with no MTD. Otherwise de-escalate to d - 1 when it has fewer
  than six patients (expand it), or stop with MTD d - 1 when it already has six.
* n > 6 is not a 3+3 path and is an error.

brockk/escalation's ``three_plus_three`` stops at once at the top dose with 0/3 and recommends a
dose with three patients when the dose above was too toxic; this variant expands to six instead."""
from __future__ import annotations

from .base import Design, Outcomes, Recommendation


class ThreePlusThree(Design):
    def __init__(self, n_levels: int):
        self.levels = n_levels

    @property
    def n_levels(self) -> int:
        return self.levels

    def fit(self, outcomes: Outcomes, current_dose: int | None = None) -> Recommendation:
        n, y = outcomes.counts(self.levels)
        d = self._current(outcomes, current_dose)
        nd, yd = int(n[d - 1]), int(y[d - 1])
        state = f"{yd}/{nd} DLTs at dose {d}"
        if nd > 6:
            raise ValueError(f"{nd} patients at dose {d}: a 3+3 design treats at most six per dose")
        above_untested = d < self.levels and n[d] == 0
        extra = {"n": n.tolist(), "dlt": y.tolist()}
        if yd >= 2:
            if d == 1:
                return Recommendation(None, "stop", f"{state}: dose 1 is too toxic; no MTD", None, extra)
            if n[d - 2] < 6:
                return Recommendation(d - 1, "de-escalate", f"{state}: too toxic; expand dose {d - 1} to six",
                                      None, extra)
            return Recommendation(None, "stop", f"{state}: too toxic; dose {d - 1} had "
                                                f"{int(y[d - 2])}/6, so it is the MTD", d - 1, extra)
        if nd in (3, 6) and (yd == 0 or nd == 6) and above_untested:
            return Recommendation(d + 1, "escalate", f"{state}: escalate to dose {d + 1}", None, extra)
        if nd == 6:
            why = "dose {} is the highest".format(d) if d == self.levels else f"dose {d + 1} was too toxic"
            return Recommendation(None, "stop", f"{state} and {why}: dose {d} is the MTD", d, extra)
        if nd == 0:
            return Recommendation(d, "stay", f"no patient has been treated at dose {d} yet", None, extra)
        if nd == 3:
            return Recommendation(d, "stay", f"{state}: expand dose {d} to six", None, extra)
        return Recommendation(d, "stay", f"{state}: complete the cohort at dose {d}", None, extra)

    def select_mtd(self, outcomes: Outcomes) -> Recommendation:
        """The MTD is only declared when the 3+3 rules stop the trial; None while it goes on."""
        rec = self.fit(outcomes)
        if rec.decision == "stop":
            return rec
        return Recommendation(None, "stop", f"the 3+3 has not finished ({rec.reason})", None, rec.extra)
