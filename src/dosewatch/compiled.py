"""When dosewatch's loops run compiled (numba) and when as numpy.

Importing numba and loading its cached machine code costs 0.5-0.9 s per process (numba also imports
scipy.linalg), and compiling on a new installation's first run costs several seconds per kernel:
more than numpy needs for a million rows. So the kernels run as numpy below ``COMPILED_FROM`` rows
and compiled above, where the compiled loop's 2x pays for loading it. Both give identical results
(tests/test_kernels.py compares them). ``python run.py setup`` compiles every kernel once at
installation (``warm``), so a first large run does not compile either.

``DOSEWATCH_COMPILED`` overrides the choice: ``always`` or ``never`` (tests, benchmarks).
"""
from __future__ import annotations

import os
from functools import cache

COMPILED_FROM = 5_000_000  # rows: numpy grades 1M rows in ~0.25 s; numba ~0.1 s plus ~1 s to load (docs/performance.md)


def use_compiled(rows: int) -> bool:
    """True when a loop over ``rows`` rows should run compiled."""
    forced = os.environ.get("DOSEWATCH_COMPILED", "").strip().lower()
    if forced in ("always", "never"):
        return forced == "always"
    return rows >= COMPILED_FROM


@cache
def jit(fn):
    """``fn`` compiled by numba (imported here, only when a kernel is first needed), cached on disk."""
    import numba

    return numba.njit(cache=True, nogil=True)(fn)


def warm() -> None:
    """Compile every kernel for every signature dosewatch calls it with (run once at installation)."""
    import numpy as np
    import polars as pl

    from .criteria.ctcae import grade_frame
    from .keys import factorize

    before = os.environ.get("DOSEWATCH_COMPILED")
    os.environ["DOSEWATCH_COMPILED"] = "always"
    try:
        for width in range(1, 5):  # factorize compiles once per number of key columns
            factorize(*[pl.Series(["a", "b"])] * width)
        frame = pl.DataFrame({"code": ["K", "K"], "value": [4.0, 6.5], "unit": ["mmol/L"] * 2,
                              "ref_low": [3.5, 3.5], "ref_high": [5.1, 5.1], "base": [4.0, np.nan]})
        for reading in ("literal", "admiral"):
            grade_frame(frame, reading=reading)
    finally:
        if before is None:
            del os.environ["DOSEWATCH_COMPILED"]
        else:
            os.environ["DOSEWATCH_COMPILED"] = before


if __name__ == "__main__":
    warm()
