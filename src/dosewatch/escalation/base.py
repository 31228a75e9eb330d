"""The small design interface shared by every dose-finding design.

A design is configured in ``__init__`` (parameters only, no logic, scikit-learn style) and turns
the outcomes so far into a :class:`Recommendation` with :meth:`Design.fit`. Extra rules (no
skipping, safety stop) wrap a parent design and edit its recommendation, as brockk/escalation does.
Doses are 1-based levels throughout.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DECISIONS = ("escalate", "stay", "de-escalate", "suspend", "stop")


@dataclass(frozen=True)
class Outcomes:
    """Patients in the order they were treated: dose level (1-based), DLT (0/1) and, for TITE
    designs, days of follow-up so far (``None`` when not recorded)."""

    dose: np.ndarray
    dlt: np.ndarray
    followup: np.ndarray | None = None

    @classmethod
    def from_lists(cls, dose, dlt, followup=None) -> "Outcomes":
        dose_a = np.asarray(dose, dtype=np.int64).reshape(-1)
        dlt_a = np.asarray(dlt, dtype=np.int64).reshape(-1)
        if dose_a.shape != dlt_a.shape:
            raise ValueError("dose and dlt have different lengths")
        if dose_a.size and dose_a.min() < 1:
            raise ValueError("dose levels are 1-based")
        if not np.isin(dlt_a, (0, 1)).all():
            raise ValueError("dlt must be 0 or 1")
        fu = None
        if followup is not None:
            fu = np.asarray(followup, dtype=np.float64).reshape(-1)
            if fu.shape != dose_a.shape:
                raise ValueError("followup has a different length from dose")
            if (fu < 0).any() or not np.isfinite(fu).all():
                raise ValueError("followup must be a finite number of days >= 0")
        return cls(dose_a, dlt_a, fu)

    def __len__(self) -> int:
        return int(self.dose.size)

    def counts(self, n_levels: int) -> tuple[np.ndarray, np.ndarray]:
        """Patients and DLTs per dose level, length ``n_levels``."""
        if self.dose.size and self.dose.max() > n_levels:
            raise ValueError(f"dose level {int(self.dose.max())} is above the {n_levels} levels of the design")
        n = np.bincount(self.dose - 1, minlength=n_levels).astype(np.int64)
        y = np.bincount(self.dose - 1, weights=self.dlt, minlength=n_levels).astype(np.int64)
        return n, y

    def last_dose(self) -> int | None:
        return int(self.dose[-1]) if self.dose.size else None


_COHORT = re.compile(r"^(\d+)([NT]+)$")


def parse_outcomes(text: str) -> Outcomes:
    """Parse brockk/escalation's outcome strings: cohorts separated by spaces, each a dose level
    followed by one letter per patient, N (no DLT) or T (DLT); e.g. ``"1NNN 2NTN"``."""
    dose: list[int] = []
    dlt: list[int] = []
    for token in text.split():
        match = _COHORT.match(token.upper())
        if not match:
            raise ValueError(f"cannot read cohort {token!r}: expected a dose level then N/T letters, e.g. 2NTN")
        level = int(match.group(1))
        if level < 1:
            raise ValueError(f"cohort {token!r}: dose levels are 1-based")
        for letter in match.group(2):
            dose.append(level)
            dlt.append(1 if letter == "T" else 0)
    return Outcomes.from_lists(dose, dlt)


@dataclass
class Recommendation:
    """What a design says after seeing the outcomes. ``next_dose`` is None when the trial stops;
    ``mtd`` is the dose the design would select now (None when none is acceptable)."""

    next_dose: int | None
    decision: str
    reason: str
    mtd: int | None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"next_dose": self.next_dose, "decision": self.decision, "reason": self.reason,
                "mtd": self.mtd, **self.extra}


def decision_between(current: int, nxt: int) -> str:
    if nxt > current:
        return "escalate"
    if nxt < current:
        return "de-escalate"
    return "stay"


class Design:
    """Base class: subclasses set parameters in ``__init__`` and implement :meth:`fit`."""

    def fit(self, outcomes: Outcomes, current_dose: int | None = None) -> Recommendation:
        raise NotImplementedError

    def select_mtd(self, outcomes: Outcomes) -> Recommendation:
        """The MTD selection on the data so far; by default the ``mtd`` of :meth:`fit`."""
        return self.fit(outcomes)

    @property
    def n_levels(self) -> int:
        raise NotImplementedError

    def _current(self, outcomes: Outcomes, current_dose: int | None) -> int:
        cur = current_dose if current_dose is not None else outcomes.last_dose()
        if cur is None:
            cur = 1
        if not 1 <= cur <= self.n_levels:
            raise ValueError(f"current dose {cur} is not one of the levels 1..{self.n_levels}")
        return int(cur)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"
