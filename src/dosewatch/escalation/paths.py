"""Dose-transition pathways: the design's recommendation after every outcome of the next cohorts.

Starting from the data so far, the tree has one node per partial future:

* the root: the recommendation now (a TITE design counts patients still inside their DLT window
  with their follow-up weight; the other designs leave them out, as ``cohort next`` does);
* when patients are still pending (no DLT, follow-up shorter than the window), one node per way
  they can all still turn out (each a DLT or a completed window without one), in the order of the
  data, before any new cohort;
* then, for each of the next ``cohort_sizes`` cohorts, one node per number of DLTs in the cohort
  (0..size), treated at its parent's recommended dose; a path ends where the design stops (or
  suspends accrual).

Patients of future cohorts, and pending patients once resolved, count as fully followed. Paths are
spelled as brockk/escalation's ``get_dose_paths`` spells them (``"2NNT 1NNN"``: a cohort at dose 2
with one DLT, then one at dose 1 with none), with the pending patients' resolution first as
``P:NT`` (one letter per pending patient in data order). The cohort outcomes within a node are
ordered N before T, as escalation orders them; dtpcrm's ``calculate_dtps`` table is :meth:`DosePaths.table`.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .base import Design, Outcomes, Recommendation

MAX_NODES = 20_000
MAX_PENDING = 10


@dataclass(frozen=True)
class PendingPatient:
    """A patient without DLT whose DLT window is still open."""

    row: int  # position in the outcomes
    patient_id: str
    dose: int
    followup: float
    weight: float  # follow-up / window (linear)


@dataclass
class PathNode:
    node_id: int
    parent_id: int | None
    depth: int
    kind: str  # now | pending | cohort
    path: str  # escalation-style path from the root ("" for the root)
    outcomes: str  # this node's letters (N / T): the cohort's, or one per pending patient
    dose: int | None  # dose given to this node's cohort (cohort nodes)
    rec: Recommendation
    children: list[int] = field(default_factory=list)

    @property
    def continues(self) -> bool:
        return self.rec.decision not in ("stop", "suspend")

    def to_dict(self) -> dict[str, Any]:
        rec = self.rec
        return {"node": self.node_id, "parent": self.parent_id, "depth": self.depth, "kind": self.kind,
                "path": self.path, "outcomes": self.outcomes, "dose": self.dose, "dlts": self.outcomes.count("T"),
                "next_dose": rec.next_dose, "decision": rec.decision, "mtd": rec.mtd, "reason": rec.reason}


@dataclass
class DosePaths:
    nodes: list[PathNode]
    cohort_sizes: list[int]
    pending: list[PendingPatient]
    window: float | None

    @property
    def root(self) -> PathNode:
        return self.nodes[0]

    def by_path(self) -> dict[str, PathNode]:
        return {n.path: n for n in self.nodes}

    def leaves(self) -> list[PathNode]:
        return [n for n in self.nodes if not n.children]

    def table(self) -> list[dict[str, Any]]:
        """dtpcrm's ``calculate_dtps`` layout: one row per path to a leaf, ``D0`` the dose of the
        first cohort, then ``T1`` (its DLTs) and ``D1`` (the next dose), and so on; ``pending`` and
        ``P`` (the recommendation once they are resolved) first when patients are pending. Columns
        after a stop are null; ``stop`` says where the path ended early."""
        rows = []
        for leaf in self.leaves():
            chain = []
            node: PathNode | None = leaf
            while node is not None:
                chain.append(node)
                node = self.nodes[node.parent_id] if node.parent_id is not None else None
            chain.reverse()
            row: dict[str, Any] = {"path": leaf.path}
            first_cohort = 1
            if self.pending:
                row["pending"] = chain[1].outcomes if len(chain) > 1 else None
                row["P"] = chain[1].rec.next_dose if len(chain) > 1 else None
                first_cohort = 2
            cohorts = chain[first_cohort:]
            start = chain[first_cohort - 1]
            row["D0"] = start.rec.next_dose
            for i in range(len(self.cohort_sizes)):
                node = cohorts[i] if i < len(cohorts) else None
                row[f"T{i + 1}"] = node.outcomes.count("T") if node else None
                row[f"D{i + 1}"] = node.rec.next_dose if node else None
            row["stop"] = not leaf.continues
            row["decision"] = leaf.rec.decision
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {"cohort_sizes": self.cohort_sizes, "window": self.window,
                "pending": [vars(p) for p in self.pending],
                "now": self.root.rec.to_dict(),
                "nodes": [n.to_dict() for n in self.nodes], "table": self.table()}


def pending_patients(outcomes: Outcomes, window: float | None, ids: Sequence[str] | None = None) -> list[PendingPatient]:
    """Patients without DLT whose follow-up is shorter than the window (none without a window or
    follow-up)."""
    if window is None or outcomes.followup is None:
        return []
    ids = list(ids) if ids is not None else [f"row {i + 1}" for i in range(len(outcomes))]
    rows = np.flatnonzero((outcomes.dlt == 0) & (outcomes.followup < window))
    return [PendingPatient(int(i), str(ids[i]), int(outcomes.dose[i]), float(outcomes.followup[i]),
                           float(outcomes.followup[i] / window)) for i in rows]


def _uses_followup(design: Design) -> bool:
    return getattr(design, "window", None) is not None


def _append(outcomes: Outcomes, dose: int, letters: str, window: float | None) -> Outcomes:
    dlt = [1 if c == "T" else 0 for c in letters]
    fu = None
    if outcomes.followup is not None:
        fu = np.concatenate([outcomes.followup, np.full(len(dlt), window if window is not None else 0.0)])
    return Outcomes(np.concatenate([outcomes.dose, np.full(len(dlt), dose, dtype=np.int64)]),
                    np.concatenate([outcomes.dlt, np.asarray(dlt, dtype=np.int64)]), fu)


def _resolve(outcomes: Outcomes, pending: list[PendingPatient], letters: str, window: float) -> Outcomes:
    """Every pending patient resolved: a DLT (counts fully) or the whole window without one."""
    dlt = outcomes.dlt.copy()
    fu = outcomes.followup.copy()
    for p, letter in zip(pending, letters, strict=True):
        if letter == "T":
            dlt[p.row] = 1
        else:
            fu[p.row] = window
    return Outcomes(outcomes.dose, dlt, fu)


def cohort_outcomes(size: int) -> list[str]:
    """One cohort's outcomes by number of DLTs, N before T (escalation's order)."""
    return ["N" * (size - t) + "T" * t for t in range(size + 1)]


def dose_paths(design: Design, outcomes: Outcomes, cohort_sizes: Sequence[int], *, window: float | None = None,
               patient_ids: Sequence[str] | None = None, next_dose: int | None = None,
               current_dose: int | None = None, max_nodes: int = MAX_NODES) -> DosePaths:
    """The pathway tree of ``design`` from ``outcomes`` over the next ``cohort_sizes`` cohorts.

    ``window`` (days) marks pending patients (no DLT, follow-up below it); ``next_dose`` overrides
    the root's recommendation as the first cohort's dose (escalation's ``next_dose``), allowed only
    when nobody is pending; ``current_dose`` defaults to the dose of the last patient."""
    sizes = [int(s) for s in cohort_sizes]
    if any(s < 1 for s in sizes) or any(s != c for s, c in zip(sizes, cohort_sizes)):
        raise ValueError("cohort sizes must be whole numbers >= 1")
    pending = pending_patients(outcomes, window, patient_ids)
    if len(pending) > MAX_PENDING:
        raise ValueError(f"{len(pending)} patients are pending; pathways enumerate at most {MAX_PENDING} "
                         "(2^n resolutions)")
    if next_dose is not None and pending:
        raise ValueError("--next-dose overrides the first cohort's dose, which follows the pending patients' "
                         "outcomes here; leave it out while patients are pending")
    if next_dose is not None and not 1 <= next_dose <= design.n_levels:
        raise ValueError(f"next dose {next_dose} is not one of the levels 1..{design.n_levels}")
    total = (2 ** len(pending)) * (1 + sum(int(np.prod([s + 1 for s in sizes[:i + 1]])) for i in range(len(sizes))))
    if total > max_nodes:
        raise ValueError(f"{total} pathway nodes requested (at most {max_nodes}): use fewer or smaller cohorts")
    current = current_dose if current_dose is not None else outcomes.last_dose()
    nodes: list[PathNode] = []

    def add(parent: PathNode | None, kind, path, letters, dose, rec) -> PathNode:
        node = PathNode(len(nodes), None if parent is None else parent.node_id,
                        0 if parent is None else parent.depth + 1, kind, path, letters, dose, rec)
        nodes.append(node)
        if parent is not None:
            parent.children.append(node.node_id)
        return node

    def grow(parent: PathNode, data: Outcomes, level: int, first_dose: int | None) -> None:
        if level >= len(sizes) or (first_dose is None and not parent.continues):
            return
        dose = first_dose if first_dose is not None else parent.rec.next_dose
        for letters in cohort_outcomes(sizes[level]):
            extended = _append(data, dose, letters, window)
            rec = design.fit(extended, dose)
            token = f"{dose}{letters}"
            child = add(parent, "cohort", f"{parent.path} {token}".strip(), letters, dose, rec)
            grow(child, extended, level + 1, None)

    # the root: TITE designs count pending patients with their weight, the others leave them out
    if pending and not _uses_followup(design):
        keep = np.ones(len(outcomes), dtype=bool)
        keep[[p.row for p in pending]] = False
        counted = Outcomes(outcomes.dose[keep], outcomes.dlt[keep],
                           None if outcomes.followup is None else outcomes.followup[keep])
    else:
        counted = outcomes
    root_rec = design.fit(counted, current)
    if next_dose is not None:
        root_rec = Recommendation(next_dose, root_rec.decision, f"{root_rec.reason}; next cohort set to dose "
                                  f"{next_dose}", root_rec.mtd, root_rec.extra)
    root = add(None, "now", "", "", None, root_rec)
    if not pending:
        grow(root, outcomes, 0, next_dose)
        return DosePaths(nodes, sizes, pending, window)
    for combo in itertools.product("NT", repeat=len(pending)):
        letters = "".join(combo)
        resolved = _resolve(outcomes, pending, letters, float(window))
        rec = design.fit(resolved, current)
        child = add(root, "pending", f"P:{letters}", letters, None, rec)
        grow(child, resolved, 0, None)
    return DosePaths(nodes, sizes, pending, window)
