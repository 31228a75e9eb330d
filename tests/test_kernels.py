"""The numpy loops give what the compiled (numba) loops give, row for row (compiled.py: numpy below
COMPILED_FROM rows, numba above), and the switch between them follows the row count and the override."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dosewatch import compiled
from dosewatch.compiled import jit
from dosewatch.criteria.ctcae import grade_frame
from dosewatch.criteria.ctcae_kernel import _grade_rows, _grade_rows_numpy
from dosewatch.keys import _ids_of_keys, _ids_of_keys_numpy, factorize, readonly

NUMBERS = st.one_of(st.just(float("nan")), st.sampled_from([0.0, 1.0, 2.5, 3.5, 5.1, 10.0, 150.0]),
                    st.floats(-5, 500, allow_nan=False))


def test_use_compiled_follows_rows_and_override(monkeypatch):
    monkeypatch.delenv("DOSEWATCH_COMPILED", raising=False)
    assert not compiled.use_compiled(compiled.COMPILED_FROM - 1)
    assert compiled.use_compiled(compiled.COMPILED_FROM)
    monkeypatch.setenv("DOSEWATCH_COMPILED", "never")
    assert not compiled.use_compiled(10 ** 9)
    monkeypatch.setenv("DOSEWATCH_COMPILED", "always")
    assert compiled.use_compiled(1)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3)), min_size=1, max_size=300),
       st.sampled_from([np.uint64(0), np.uint64(2 ** 63 + 12345)]))
def test_ids_of_keys_numpy_equals_compiled(pairs, offset):
    # hash-like values, some past 2^63: the combined key wraps the same way in both
    table = np.random.default_rng(3).integers(0, 2 ** 63, 6, dtype=np.uint64)
    a = table[[p[0] for p in pairs]] + offset
    b = table[[p[1] for p in pairs]]
    hashes = (readonly(a, np.uint64), readonly(b, np.uint64))
    ids, first, count = _ids_of_keys_numpy(hashes)
    c_ids, c_first, c_count = jit(_ids_of_keys)(hashes, 12)
    assert count == c_count == len(set(pairs))
    assert ids.dtype == c_ids.dtype
    assert np.array_equal(ids, c_ids) and np.array_equal(first, c_first[:c_count])


def test_factorize_numbers_in_order_of_first_appearance(monkeypatch):
    monkeypatch.setenv("DOSEWATCH_COMPILED", "never")
    ids, reps = factorize(pl.Series(["K", "NA", "K", "CA", "NA"]), pl.Series(["mmol/L"] * 5))
    assert ids.tolist() == [0, 1, 0, 2, 1]
    assert reps == [("K", "mmol/L"), ("NA", "mmol/L"), ("CA", "mmol/L")]


@st.composite
def kernel_inputs(draw):
    n_var = draw(st.integers(1, 4))
    width = draw(st.integers(1, 4))
    n = draw(st.integers(1, 60))
    vid = np.array(draw(st.lists(st.integers(0, n_var - 1), min_size=n, max_size=n)), np.uint32)
    cols = [np.array(draw(st.lists(NUMBERS, min_size=n, max_size=n))) for _ in range(4)]
    nslots = np.array(draw(st.lists(st.integers(0, width), min_size=2 * n_var, max_size=2 * n_var))).reshape(2, n_var)
    size = 2 * n_var * width
    s_grade = np.array(draw(st.lists(st.integers(-1, 5), min_size=size, max_size=size)), np.int8).reshape(2, n_var, width)
    s_ref = np.array(draw(st.lists(st.integers(0, 7), min_size=size, max_size=size)), np.int8).reshape(2, n_var, width)
    s_mult = np.array(draw(st.lists(st.sampled_from([0.0, 1.0, 1.5, 3.0, 1.000000001]), min_size=size,
                                    max_size=size))).reshape(2, n_var, width)
    s_add = np.array(draw(st.lists(st.sampled_from([0.0, 2.0, -0.5, 150.0]), min_size=size, max_size=size))
                     ).reshape(2, n_var, width)
    flags = [np.array(draw(st.lists(st.booleans(), min_size=2 * n_var, max_size=2 * n_var))).reshape(2, n_var)
             for _ in range(3)]
    max_lim = np.array(draw(st.lists(st.integers(0, 4), min_size=2 * n_var, max_size=2 * n_var)), np.int8
                       ).reshape(2, n_var)
    has_reason, need_lim0, need_base0 = flags
    return (vid, *(readonly(c, np.float64) for c in cols), draw(st.booleans()), nslots, s_grade, s_ref, s_mult, s_add,
            has_reason, max_lim, need_lim0, need_base0)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kernel_inputs())
def test_grade_rows_numpy_equals_compiled(args):
    n = args[0].shape[0]
    out_np = np.full((2, n), 9, np.int8), np.full((2, n), 9, np.int8)
    out_nb = np.full((2, n), 9, np.int8), np.full((2, n), 9, np.int8)
    _grade_rows_numpy(*args, *out_np)
    jit(_grade_rows)(*args, *out_nb)
    assert np.array_equal(out_np[0], out_nb[0]), "grades differ"
    assert np.array_equal(out_np[1], out_nb[1]), "reasons differ"
    assert (out_np[0] != 9).all()  # every row written


@pytest.mark.parametrize("criteria", ["ctcae-4.03", "ctcae-5.0", "ctcae-6.0"])
@pytest.mark.parametrize("reading", ["literal", "admiral"])
def test_grade_frame_same_both_ways_on_the_admiral_file(criteria, reading, monkeypatch):
    """The pharmaverse ADLB (32,662 rows) graded by numpy and by numba: the same frame."""
    from pathlib import Path

    from dosewatch.io.adlb import read_lab_rows

    path = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "admiral-adlb" / "adlb_graded.csv"
    if not path.exists():
        pytest.skip("../shared/conformance is not beside the project")
    lab, _ = read_lab_rows(pl.read_csv(path, infer_schema=False), path.name)
    monkeypatch.setenv("DOSEWATCH_COMPILED", "never")
    by_numpy = grade_frame(lab, criteria=criteria, reading=reading)
    monkeypatch.setenv("DOSEWATCH_COMPILED", "always")
    by_numba = grade_frame(lab, criteria=criteria, reading=reading)
    assert by_numpy.equals(by_numba)
    assert by_numpy["grade_low"].drop_nulls().len() > 10_000  # most rows graded: the comparison says something
