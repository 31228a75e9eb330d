"""Simulation batches on a Dask cluster: an existing ``client``, a local cluster of ``workers``
processes, or the scheduler at ``scheduler`` (``tcp://host:8786``). One task per batch; results
come back in task order, so totals are added in the same order as in process."""
from __future__ import annotations

from typing import Any, Callable


def run_on_dask(tasks: list, *, client: Any = None, workers: int | None = None, scheduler: str | None = None,
                progress: Callable[[int, int], None] | None = None) -> list:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as exc:  # dask is an optional extra
        raise RuntimeError("distributed simulation needs dask: pip install 'dosewatch[dask]'") from exc
    from .simulate import run_task

    own_cluster = own_client = None
    try:
        if client is None:
            if scheduler is not None:
                client = own_client = Client(scheduler)
            else:
                if workers is None or workers < 1:
                    raise ValueError("--workers must be at least 1")
                own_cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
                client = own_client = Client(own_cluster)
        futures = client.map(run_task, tasks, pure=False)
        if progress:
            for done, _ in enumerate(as_completed(futures), start=1):
                progress(done, len(futures))
        return client.gather(futures)
    finally:
        if own_client is not None:
            own_client.close()
        if own_cluster is not None:
            own_cluster.close()
