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

``variant="escalation"`` gives brockk/escalation's ``three_plus_three`` instead: it decides only
on complete cohorts (n = 3 or 6), stops at once at the top dose with 0/3 and at d with 0/3 when
d + 1 already has six patients or two DLTs (so its MTD may have only three patients), and
escalates whenever d + 1 is neither full nor too toxic. ``deescalate=False`` is escalation's
``allow_deescalate = FALSE``: two DLTs stop the trial with MTD d - 1 (none at dose 1)."""
from __future__ import annotations

from .base import Design, Outcomes, Recommendation

VARIANTS = ("korn", "escalation")


class ThreePlusThree(Design):
    def __init__(self, n_levels: int, *, variant: str = "korn", deescalate: bool = True):
        if variant not in VARIANTS:
            raise ValueError(f"unknown 3+3 variant {variant!r}: use {' or '.join(VARIANTS)}")
        self.levels = n_levels
        self.variant = variant
        self.deescalate = deescalate

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
        extra = {"n": n.tolist(), "dlt": y.tolist()}
        korn = self.variant == "korn"
        if yd >= 2 and (korn or nd in (3, 6)):
            return self._too_toxic(d, n, y, state, extra)
        if not korn and nd in (3, 6) and (yd == 0 or nd == 6):
            return self._escalate_or_accept(d, n, y, state, extra)
        above_untested = d < self.levels and n[d] == 0
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

    def _too_toxic(self, d, n, y, state, extra) -> Recommendation:
        if d == 1:
            return Recommendation(None, "stop", f"{state}: dose 1 is too toxic; no MTD", None, extra)
        if not self.deescalate:
            return Recommendation(None, "stop", f"{state}: too toxic; dose {d - 1} is the MTD", d - 1, extra)
        if n[d - 2] < 6:
            below = int(n[d - 2])
            what = ("no patient was treated there yet" if below == 0 else f"expand it from {below} to six" if below == 3
                    else f"complete its cohort, {below} treated so far")
            return Recommendation(d - 1, "de-escalate", f"{state}: too toxic; de-escalate to dose {d - 1} ({what})",
                                  None, extra)
        # Korn et al.: the MTD is the highest dose where six patients had at most one DLT
        ok = [k + 1 for k in range(self.levels) if n[k] >= 6 and y[k] <= 1]
        mtd = ok[-1] if ok else None
        why = f"dose {mtd} had {int(y[mtd - 1])}/6, so it is the MTD" if mtd else "no dose had <= 1/6; no MTD"
        return Recommendation(None, "stop", f"{state}: too toxic; {why}", mtd, extra)

    def _escalate_or_accept(self, d, n, y, state, extra) -> Recommendation:
        """escalation's rule after 0/3 or <= 1/6: escalate unless d is the top dose or d + 1 is
        full (six) or too toxic (two DLTs); then stop with MTD d."""
        if d == self.levels:
            return Recommendation(None, "stop", f"{state} at the highest dose: dose {d} is the MTD", d, extra)
        if n[d] >= 6 or y[d] >= 2:
            return Recommendation(None, "stop", f"{state} and dose {d + 1} was too toxic or full: "
                                                f"dose {d} is the MTD", d, extra)
        return Recommendation(d + 1, "escalate", f"{state}: escalate to dose {d + 1}", None, extra)

    def select_mtd(self, outcomes: Outcomes) -> Recommendation:
        """The MTD is only declared when the 3+3 rules stop the trial; None while it goes on."""
        rec = self.fit(outcomes)
        if rec.decision == "stop":
            return rec
        return Recommendation(None, "stop", f"the 3+3 has not finished ({rec.reason})", None, rec.extra)
