"""Operating characteristics by simulation, vectorised across trials.

Every engine simulates a whole batch of trials at once: the state is a set of numpy arrays of
shape (trials, doses) and each loop step is one cohort (or one wait) for every trial still running,
never one Python loop per trial. The loops copy the R packages' simulation functions:

* BOIN: ``get.oc`` of BOIN 2.7.2 (cohorts of C, elimination checked at the current dose, n.earlystop,
  no decision after the last cohort, ``select.mtd`` at the end);
* CRM: ``crmsim`` of dfcrm 0.2-2.1 (first cohort at the start dose, then the model dose of a Bayesian
  fit on all data with no skipping on escalation and no escalation right after a cohort whose DLT
  rate reached the target; no early stop unless ``safety_stop`` is given; the final selection is the
  unrestricted model dose). The posterior mean of beta comes from a fixed composite Gauss-Legendre
  rule evaluated for all trials at once (:class:`CrmPosterior`), checked against :func:`~.crm.fit_crm`;
* TITE-BOIN and TITE-CRM: ``get_oc_TITE_QuasiBOIN`` of TITEgBOIN 0.4.0 (exponential inter-arrival at
  ``accrual`` patients per day; Weibull DLT times with ``late_fraction`` of the DLTs in the second
  half of the window; a decision at each next arrival, waiting while accrual is suspended);
* 3+3: the variant of :mod:`.three_plus_three`, whose exact characteristics
  :func:`three_plus_three_exact` gives by enumerating every outcome path.

Reproducibility: trials are cut into batches of a fixed size (independent of the number of
workers), batch ``k`` of grid cell ``c`` draws from ``SeedSequence(seed, spawn_key=(c, k))``, and
batch totals are integer counts (durations summed in batch order), so the same seed gives the same
result in process or on any number of Dask workers.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .sim_crm import CrmPosterior, crm_batch
from .sim_rules import boin_batch, select_mtd_batch, three_plus_three_batch, three_plus_three_exact
from .sim_settings import SIM_DESIGNS, BatchOutcome, SimSettings, make_settings
from .sim_tite import tite_boin_batch, tite_crm_batch

# Trials per batch (one task on a cluster). Fixed per design, never derived from the number of
# workers, so that the random streams -- and the results -- do not depend on how the work is spread.
DEFAULT_BATCH = {"boin": 50_000, "3+3": 50_000, "tite-boin": 5_000, "crm": 10_000, "tite-crm": 1_000}


# ----------------------------------------------------------------------------------------------
# per-batch outcome and totals


@dataclass
class Totals:
    """Additive totals of a batch: integer counts (exact whatever the order of addition) and the
    duration sum (added in batch order)."""

    trials: int
    selected: np.ndarray  # length levels + 1; index 0 counts trials with no dose selected
    patients: np.ndarray
    dlts: np.ndarray
    duration_sum: float | None = None

    @classmethod
    def of(cls, out: BatchOutcome, levels: int) -> "Totals":
        return cls(int(out.mtd.size), np.bincount(out.mtd, minlength=levels + 1).astype(np.int64),
                   out.n.sum(axis=0).astype(np.int64), out.y.sum(axis=0).astype(np.int64),
                   None if out.duration is None else float(out.duration.sum()))

    def __add__(self, other: "Totals") -> "Totals":
        dur = None if self.duration_sum is None else self.duration_sum + other.duration_sum
        return Totals(self.trials + other.trials, self.selected + other.selected, self.patients + other.patients,
                      self.dlts + other.dlts, dur)


@dataclass
class SimResult:
    """Operating characteristics of one design on one scenario."""

    settings: SimSettings
    totals: Totals
    elapsed_s: float
    scenario: str = ""
    label: str = ""

    def to_dict(self) -> dict[str, Any]:
        t = self.totals
        n = t.trials
        out: dict[str, Any] = {
            "design": self.label or self.settings.design,
            "scenario": self.scenario,
            "true_tox": list(self.settings.true_tox),
            "target": self.settings.target,
            "trials": n,
            "selection_pct": (100.0 * t.selected[1:] / n).tolist(),
            "stop_pct": 100.0 * float(t.selected[0]) / n,
            "mean_patients": (t.patients / n).tolist(),
            "mean_dlts": (t.dlts / n).tolist(),
            "mean_n": float(t.patients.sum()) / n,
            "mean_total_dlts": float(t.dlts.sum()) / n,
        }
        if t.duration_sum is not None:
            out["mean_duration_days"] = t.duration_sum / n
        out["elapsed_s"] = self.elapsed_s
        return out


ENGINES: dict[str, Callable[[SimSettings, np.random.Generator, int], BatchOutcome]] = {
    "boin": boin_batch, "crm": crm_batch, "3+3": three_plus_three_batch,
    "tite-boin": tite_boin_batch, "tite-crm": tite_crm_batch,
}


# ----------------------------------------------------------------------------------------------
# batches, seeds and the public calls


@dataclass(frozen=True)
class Task:
    """One batch: ``size`` trials of ``settings`` drawn from SeedSequence(seed, spawn_key=(cell, batch))."""

    settings: SimSettings
    size: int
    seed: int
    cell: int
    batch: int


def run_task(task: Task) -> Totals:
    """Run one batch (in process or on a Dask worker)."""
    rng = np.random.default_rng(np.random.SeedSequence(task.seed, spawn_key=(task.cell, task.batch)))
    out = ENGINES[task.settings.design](task.settings, rng, task.size)
    return Totals.of(out, task.settings.levels)


def plan_tasks(settings: SimSettings, trials: int, seed: int, cell: int = 0, batch_size: int | None = None) -> list[Task]:
    if trials < 1:
        raise ValueError("the number of trials must be at least 1")
    if seed < 0:
        raise ValueError("the seed must be a non-negative integer")
    size = batch_size or DEFAULT_BATCH[settings.design]
    return [Task(settings, min(size, trials - start), seed, cell, k) for k, start in enumerate(range(0, trials, size))]


@dataclass
class Cell:
    """One (scenario, design) cell of a grid."""

    settings: SimSettings
    scenario: str = ""
    label: str = ""
    tasks: list[Task] = field(default_factory=list)


def run_cells(cells: list[Cell], *, client: Any = None, workers: int | None = None, scheduler: str | None = None,
              progress: Callable[[int, int], None] | None = None) -> list[SimResult]:
    """Run every task of every cell (in process, or on Dask: ``client``, a local cluster of
    ``workers`` processes, or the scheduler at ``scheduler``) and total them per cell in batch order."""
    tasks = [t for c in cells for t in c.tasks]
    start = time.perf_counter()
    if progress:
        progress(0, len(tasks))
    if client is None and workers is None and scheduler is None:
        results = []
        for i, task in enumerate(tasks):
            results.append(run_task(task))
            if progress:
                progress(i + 1, len(tasks))
    else:
        from .distributed import run_on_dask

        results = run_on_dask(tasks, client=client, workers=workers, scheduler=scheduler, progress=progress)
    elapsed = time.perf_counter() - start
    out, k = [], 0
    for c in cells:
        part = results[k:k + len(c.tasks)]
        k += len(c.tasks)
        total = part[0]
        for t in part[1:]:
            total = total + t
        out.append(SimResult(c.settings, total, elapsed, c.scenario, c.label))
    return out


def simulate(design: str, true_tox: Sequence[float], *, target: float | None = None, cohort_size: int = 3,
             max_cohorts: int = 10, trials: int = 10_000, seed: int = 1, start_dose: int = 1,
             accrual: float | None = None, window: float | None = None, late_fraction: float = 0.5,
             batch_size: int | None = None, client: Any = None, workers: int | None = None,
             scheduler: str | None = None, progress: Callable[[int, int], None] | None = None,
             **options: Any) -> SimResult:
    """Operating characteristics of one design on one true dose-toxicity curve.

    ``options`` are the design's (``skeleton``, ``model``, ``safety_stop``, ``extrasafe``, ...).
    The same ``seed`` (and ``batch_size``) gives the same result in process or on any cluster."""
    settings = make_settings(design, true_tox, target=target, cohort_size=cohort_size, max_cohorts=max_cohorts,
                             start_dose=start_dose, accrual=accrual, window=window, late_fraction=late_fraction,
                             **options)
    cell = Cell(settings, label=design, tasks=plan_tasks(settings, trials, seed, 0, batch_size))
    return run_cells([cell], client=client, workers=workers, scheduler=scheduler, progress=progress)[0]


def simulate_grid(scenarios: dict[str, Sequence[float]] | Iterable[Sequence[float]],
                  designs: dict[str, dict[str, Any]], *, target: float | None = None, cohort_size: int = 3,
                  max_cohorts: int = 10, trials: int = 10_000, seed: int = 1, start_dose: int = 1,
                  accrual: float | None = None, window: float | None = None, late_fraction: float = 0.5,
                  batch_size: int | None = None, client: Any = None, workers: int | None = None,
                  scheduler: str | None = None, progress: Callable[[int, int], None] | None = None
                  ) -> list[SimResult]:
    """Every scenario x design, all batches at once (one Dask task per batch on a cluster).

    ``scenarios``: name -> true toxicity per dose (or a list; names become S1, S2, ...).
    ``designs``: label -> options with a ``design`` key, e.g.
    ``{"BOIN": {"design": "boin"}, "CRM": {"design": "crm", "skeleton": [...]}}``; an option given
    there overrides the shared ones (target, cohort_size, window, ...). Cell ``c`` (scenario-major)
    uses spawn key ``(c, batch)`` so that each cell's numbers do not depend on the rest of the grid's
    size only through its position. Results come in scenario-major order."""
    if not isinstance(scenarios, dict):
        scenarios = {f"S{i + 1}": tox for i, tox in enumerate(scenarios)}
    shared = dict(target=target, cohort_size=cohort_size, max_cohorts=max_cohorts, start_dose=start_dose,
                  accrual=accrual, window=window, late_fraction=late_fraction)
    cells = []
    for name, tox in scenarios.items():
        for label, opts in designs.items():
            opts = dict(opts)
            design = opts.pop("design")
            kw = {**shared, **{k: opts.pop(k) for k in list(opts) if k in shared}}
            settings = make_settings(design, tox, **kw, **opts)
            cells.append(Cell(settings, name, label, plan_tasks(settings, trials, seed, len(cells), batch_size)))
    return run_cells(cells, client=client, workers=workers, scheduler=scheduler, progress=progress)


__all__ = ["SIM_DESIGNS", "BatchOutcome", "CrmPosterior", "SimResult", "SimSettings", "Totals", "make_settings",
           "run_task", "select_mtd_batch", "simulate", "simulate_grid", "three_plus_three_exact"]
