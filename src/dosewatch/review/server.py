"""The packet from the trial server: the viewer's patients as stored (``load_cohort``, scoped), the
trial's protocol in force, the store's today, and the trial's cohort decisions with their signatures."""
from __future__ import annotations

import datetime as dt
from typing import Any


def trial_packet(session, trial, viewer, *, as_of: dt.date, design: str, design_options: dict[str, Any],
                 cohort_sizes=(3, 3), oc_true_tox: list[float] | None = None,
                 oc_accrual: float | None = None) -> tuple[Any, Any]:
    """(ReviewContent, the cohort it was made from); with ``oc_true_tox``, the design's operating
    characteristics on that curve (2,000 trials, seed 1, 10 cohorts of 3)."""
    from ..store.assess import trial_protocol
    from ..store.records import load_cohort
    from ..store.signatures import cohort_decisions
    from .content import review_content

    protocol = trial_protocol(session, trial)
    oc = None
    if oc_true_tox:
        from .oc import operating_characteristics
        oc = operating_characteristics(protocol, design, design_options, oc_true_tox, accrual=oc_accrual)
    cohort = load_cohort(session, trial.id, viewer)
    decisions = [d for d in cohort_decisions(session, trial, limit=20) if d["design"] == design][:3]
    content = review_content(cohort, protocol, as_of=as_of, design=design,
                             design_options=design_options, cohort_sizes=cohort_sizes, trial=trial.code,
                             decisions=decisions, oc=oc)
    return content, cohort
