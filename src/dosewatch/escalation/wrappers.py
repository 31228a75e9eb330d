"""Rules that wrap a parent design and edit its recommendation (brockk/escalation style)."""
from __future__ import annotations

from .base import Design, Outcomes, Recommendation, decision_between
from .boin import prob_above


class Wrapper(Design):
    def __init__(self, parent: Design):
        self.parent = parent

    @property
    def n_levels(self) -> int:
        return self.parent.n_levels

    def select_mtd(self, outcomes: Outcomes) -> Recommendation:
        return self.parent.select_mtd(outcomes)

    def __getattr__(self, name):
        # model-specific helpers (prob_above, fit_model, target) come from the wrapped design
        if name == "parent":
            raise AttributeError(name)
        return getattr(self.parent, name)


def _moved(rec: Recommendation, current: int, nxt: int, note: str) -> Recommendation:
    return Recommendation(nxt, decision_between(current, nxt), f"{rec.reason}; {note}", rec.mtd, rec.extra)


class DontSkip(Wrapper):
    """Never escalate more than one level above the current dose (dfcrm crmsim's restriction and
    brockk/escalation's ``dont_skip_doses``); with ``when_deescalating`` never more than one level
    below either. ``relative_to="tried"`` is dtpcrm's ``applied_crm`` instead: at most one level
    above the highest dose given so far, and at most one below the lowest."""

    def __init__(self, parent: Design, when_escalating: bool = True, when_deescalating: bool = False,
                 relative_to: str = "last"):
        super().__init__(parent)
        if relative_to not in ("last", "tried"):
            raise ValueError(f"relative_to is 'last' or 'tried', not {relative_to!r}")
        self.when_escalating = when_escalating
        self.when_deescalating = when_deescalating
        self.relative_to = relative_to

    def fit(self, outcomes: Outcomes, current_dose: int | None = None) -> Recommendation:
        rec = self.parent.fit(outcomes, current_dose)
        d = self._current(outcomes, current_dose)
        if rec.next_dose is None or rec.decision == "suspend":
            return rec
        tried = self.relative_to == "tried" and len(outcomes) > 0
        high = int(outcomes.dose.max()) if tried else d
        low = int(outcomes.dose.min()) if tried else d
        where = "the highest dose given" if tried else "the current dose"
        if self.when_escalating and rec.next_dose > high + 1:
            return _moved(rec, d, high + 1, f"no skipping: at most one level above {where} (dose {high + 1})")
        if self.when_deescalating and rec.next_dose < low - 1:
            where = "the lowest dose given" if tried else "the current dose"
            return _moved(rec, d, low - 1, f"no skipping: at most one level below {where} (dose {low - 1})")
        return rec


class Coherent(Wrapper):
    """No escalation right after a cohort whose DLT rate reached the target (dfcrm crmsim's
    coherence restriction). The last cohort is the last ``cohort_size`` patients."""

    def __init__(self, parent: Design, target: float, cohort_size: int = 3):
        super().__init__(parent)
        self.target = target
        self.cohort_size = cohort_size

    def fit(self, outcomes: Outcomes, current_dose: int | None = None) -> Recommendation:
        rec = self.parent.fit(outcomes, current_dose)
        d = self._current(outcomes, current_dose)
        last = outcomes.dlt[-self.cohort_size:]
        if (rec.next_dose is not None and rec.next_dose > d and last.size
                and last.sum() / self.cohort_size >= self.target):
            return _moved(rec, d, d, f"the last cohort had {int(last.sum())}/{self.cohort_size} DLTs "
                                     f"(rate >= target {self.target}): no escalation")
        return rec


class StopWhenTooToxic(Wrapper):
    """Stop the trial when P(toxicity at ``level`` > ``threshold`` | data) > ``confidence``. Uses the
    parent's model when it has one (CRM: ``prob_above``), else a Beta(1, 1) posterior on the level's
    own counts."""

    def __init__(self, parent: Design, level: int = 1, threshold: float = 0.25, confidence: float = 0.9):
        super().__init__(parent)
        self.level = level
        self.threshold = threshold
        self.confidence = confidence

    def prob_too_toxic(self, outcomes: Outcomes) -> float:
        model_prob = getattr(self.parent, "prob_above", None)
        if callable(model_prob):
            return float(model_prob(outcomes, self.level, self.threshold))
        n, y = outcomes.counts(self.n_levels)
        return float(prob_above(self.threshold, y[self.level - 1], n[self.level - 1]))

    def fit(self, outcomes: Outcomes, current_dose: int | None = None) -> Recommendation:
        rec = self.parent.fit(outcomes, current_dose)
        if len(outcomes) == 0:
            return rec
        prob = self.prob_too_toxic(outcomes)
        if prob > self.confidence:
            extra = {**rec.extra, "prob_too_toxic": prob}
            return Recommendation(None, "stop", f"safety stop: P(toxicity at dose {self.level} > {self.threshold}) "
                                                f"= {prob:.3f} > {self.confidence}", None, extra)
        return rec


class CoherentAtDose(Wrapper):
    """No escalation from a dose whose observed DLT rate (every patient treated there) exceeds the
    target (dtpcrm ``applied_crm``'s ``global_coherent_esc``)."""

    def __init__(self, parent: Design, target: float):
        super().__init__(parent)
        self.target = target

    def fit(self, outcomes: Outcomes, current_dose: int | None = None) -> Recommendation:
        rec = self.parent.fit(outcomes, current_dose)
        d = self._current(outcomes, current_dose)
        at = outcomes.dose == d
        if rec.next_dose is not None and rec.next_dose > d and at.any():
            rate = float(outcomes.dlt[at].mean())
            if rate > self.target:
                return _moved(rec, d, d, f"{int(outcomes.dlt[at].sum())}/{int(at.sum())} DLTs at dose {d} "
                                         f"(rate > target {self.target}): no escalation")
        return rec


CRM_RULES = ("crmsim", "dtpcrm", "none")


def make_crm(skeleton, target: float, *, cohort_size: int = 3, restrict: bool = True, rules: str = "crmsim",
             safety_stop: float | None = None, **crm_options) -> Design:
    """CRM or TITE-CRM (pass ``window``) with escalation restrictions and, optionally, a safety stop
    when P(toxicity at dose 1 > target) exceeds ``safety_stop``. ``rules``: ``crmsim`` (dfcrm's
    simulator: no skipping on escalation, no escalation after a cohort at or above the target),
    ``dtpcrm`` (dtpcrm's ``applied_crm``: no skipping beyond the doses tried in either direction,
    no escalation from a dose whose DLT rate exceeds the target) or ``none`` (dfcrm's bare
    recommendation; ``restrict=False`` means the same)."""
    from .crm import CRM

    if rules not in CRM_RULES:
        raise ValueError(f"unknown CRM rules {rules!r}: use one of {', '.join(CRM_RULES)}")
    design: Design = CRM(skeleton, target, **crm_options)
    if restrict and rules == "crmsim":
        design = Coherent(DontSkip(design), target, cohort_size)
    elif restrict and rules == "dtpcrm":
        design = CoherentAtDose(DontSkip(design, True, True, relative_to="tried"), target)
    if safety_stop is not None:
        design = StopWhenTooToxic(design, 1, target, safety_stop)
    return design


__all__ = ["CRM_RULES", "Coherent", "CoherentAtDose", "DontSkip", "StopWhenTooToxic", "Wrapper", "make_crm"]
