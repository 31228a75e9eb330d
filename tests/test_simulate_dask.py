"""Distributed simulation: the same seed gives the same result in process, on one worker and on a
local Dask cluster of two worker processes (apart from elapsed_s)."""
from __future__ import annotations

import pytest

pytest.importorskip("distributed")

from distributed import Client, LocalCluster  # noqa: E402

from dosewatch.escalation.crm import get_prior  # noqa: E402
from dosewatch.escalation.simulate import simulate_grid  # noqa: E402

SCENARIOS = {"S1": [0.05, 0.10, 0.20, 0.30, 0.45], "toxic": [0.3, 0.45, 0.6, 0.7, 0.8]}
DESIGNS = {"boin": {"design": "boin"}, "crm": {"design": "crm", "skeleton": get_prior(0.05, 0.25, 3, 5)},
           "tite-boin": {"design": "tite-boin", "window": 28, "accrual": 0.25}, "3+3": {"design": "3+3"}}


def _run(**where):
    res = simulate_grid(SCENARIOS, DESIGNS, target=0.25, trials=700, seed=12, batch_size=200, **where)
    return [{k: v for k, v in r.to_dict().items() if k != "elapsed_s"} for r in res]


def test_same_result_in_process_one_and_two_workers():
    here = _run()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        two = _run(client=client)
    one = _run(workers=1)
    assert here == two == one
    assert len(here) == 8 and all(r["trials"] == 700 for r in here)
