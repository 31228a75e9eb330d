"""The CTCAE grading loop (criteria/ctcae.py lays the thresholds out as arrays): one pass over the rows
in both directions. ``_grade_rows`` is compiled by numba for millions of rows; ``_grade_rows_numpy``
gives the same grades and reasons with whole-array operations, variant by variant, for fewer rows
(compiled.py says when; tests/test_kernels.py compares the two)."""
from __future__ import annotations

import numpy as np

from ..compiled import jit, use_compiled

_BLOCK = 1 << 14  # rows per block: a block's columns stay in cache while its variants are graded


def _grade_rows(vid, x, lo, hi, base, admiral, nslots, s_grade, s_ref, s_mult, s_add,
                has_reason, max_lim_grade, need_lim0, need_base0, grade, reason):  # pragma: no cover - compiled
    """Grade every row in both directions (d = 0 low, 1 high) with its variant's slots; writes grade
    (int8) and a reason code: 0 graded, 1 the variant's reason, 2 missing value, 3 no LLN/ULN,
    4 no baseline, 5 outside the range the term grades. A slot is met when the value is beyond
    mult x reference + add (the tolerance is already in mult and add; an absolute cut-off has mult 0
    and reference 1); the grade is the highest met. Low is tested as -value > -cut-off: the same
    comparison, negated exactly. A lim_base slot (above both the ULN and the baseline) with one of
    them missing is undecided unless the other already rules it out.

    Rows are taken in blocks and, within a block, variant by variant (a counting sort), so that the
    loop over a variant's slots runs the same number of times row after row."""
    n, n_var = vid.shape[0], nslots.shape[1]
    order = np.empty(_BLOCK, np.int64)
    start = np.empty(n_var + 1, np.int64)
    fill = np.empty(n_var, np.int64)
    for first in range(0, n, _BLOCK):
        last = min(n, first + _BLOCK)
        start[:] = 0
        for i in range(first, last):
            start[vid[i] + 1] += 1
        for j in range(n_var):
            start[j + 1] += start[j]
            fill[j] = start[j]
        for i in range(first, last):
            order[fill[vid[i]]] = i
            fill[vid[i]] += 1
        for j in range(n_var):
            for d in range(2):
                sign = 1.0 if d == 1 else -1.0
                for p in range(start[j], start[j + 1]):
                    i = order[p]
                    if has_reason[d, j]:
                        grade[d, i], reason[d, i] = 0, 1
                        continue
                    xv, b, uln, lln = x[i], base[i], hi[i], lo[i]
                    lim = lln if d == 0 else uln
                    base_high = b > uln  # rules conditional on the baseline being above the ULN
                    sx = sign * xv
                    g = 0
                    undecided = 0  # a lim_base slot that a missing reference leaves open
                    outside = False  # a NO_GRADE slot met
                    for k in range(nslots[d, j]):
                        r = s_ref[d, j, k]  # the same sequence on every row of the variant: predictable
                        m, a = s_mult[d, j, k], s_add[d, j, k]
                        if r == 0:
                            ref = 1.0
                        elif r == 1:
                            ref = lim
                        elif r == 2:
                            ref = b
                        elif r == 3:
                            ref = np.nan if base_high else uln
                        elif r == 4:
                            ref = b if base_high else np.nan
                        elif r == 5:
                            ref = b if b < lln else np.nan
                        elif r == 6:
                            ref = b if xv < lln else np.nan
                        else:
                            ref = np.nan if np.isnan(uln) or np.isnan(b) else max(uln, b)
                            if np.isnan(ref) and not np.isnan(xv):
                                known = b if np.isnan(uln) else uln
                                if np.isnan(known) or sx > sign * (m * known + a):
                                    undecided = 3 if np.isnan(uln) else 4
                        if sx > sign * (m * ref + a):
                            if s_grade[d, j, k] < 0:
                                outside = True
                            else:
                                g = max(g, s_grade[d, j, k])
                    code = 0
                    if undecided and g == 0:
                        code = undecided
                    if admiral:
                        if g == 0 and need_base0[d, j] and np.isnan(b):
                            code = 4
                        if g == 0 and need_lim0[d, j] and np.isnan(lim):
                            code = 3
                    elif g < max_lim_grade[d, j] and np.isnan(lim):
                        code = 3
                    if outside:
                        g, code = 0, 5
                    if np.isnan(xv):
                        code = 2
                    grade[d, i], reason[d, i] = g, code


def _grade_rows_numpy(vid, x, lo, hi, base, admiral, nslots, s_grade, s_ref, s_mult, s_add,
                      has_reason, max_lim_grade, need_lim0, need_base0, grade, reason):
    """``_grade_rows`` on whole arrays: the rows of each variant gathered once, each slot one comparison
    (the same floating-point operations in the same order, so the same results)."""
    n_var = nslots.shape[1]
    small = vid.astype(np.uint16) if n_var <= 1 << 16 else vid  # 16 bits: numpy sorts by radix
    order = np.argsort(small, kind="stable")
    bounds = np.searchsorted(small[order], np.arange(n_var + 1))
    nan = np.nan
    with np.errstate(invalid="ignore"):
        for j in range(n_var):
            rows = order[bounds[j]:bounds[j + 1]]
            if rows.shape[0] == 0:
                continue
            xv, b, uln, lln = x[rows], base[rows], hi[rows], lo[rows]
            base_high = b > uln
            no_x, no_b, no_uln = np.isnan(xv), np.isnan(b), np.isnan(uln)
            for d in range(2):
                if has_reason[d, j]:
                    grade[d, rows], reason[d, rows] = 0, 1
                    continue
                sign = 1.0 if d == 1 else -1.0
                lim = lln if d == 0 else uln
                sx = sign * xv
                g = np.zeros(rows.shape[0], np.int8)
                undecided = np.zeros(rows.shape[0], np.int8)
                outside = np.zeros(rows.shape[0], np.bool_)
                for k in range(nslots[d, j]):
                    r = s_ref[d, j, k]
                    m, a = s_mult[d, j, k], s_add[d, j, k]
                    if r == 0:
                        ref = np.ones(rows.shape[0])
                    elif r == 1:
                        ref = lim
                    elif r == 2:
                        ref = b
                    elif r == 3:
                        ref = np.where(base_high, nan, uln)
                    elif r == 4:
                        ref = np.where(base_high, b, nan)
                    elif r == 5:
                        ref = np.where(b < lln, b, nan)
                    elif r == 6:
                        ref = np.where(xv < lln, b, nan)
                    else:
                        ref = np.where(no_uln | no_b, nan, np.maximum(uln, b))
                        known = np.where(no_uln, b, uln)
                        open_ = np.isnan(ref) & ~no_x & (np.isnan(known) | (sx > sign * (m * known + a)))
                        undecided = np.where(open_, np.where(no_uln, 3, 4), undecided).astype(np.int8)
                    met = sx > sign * (m * ref + a)
                    if s_grade[d, j, k] < 0:
                        outside |= met
                    else:
                        g = np.where(met, np.maximum(g, s_grade[d, j, k]), g).astype(np.int8)
                code = np.where((undecided > 0) & (g == 0), undecided, 0).astype(np.int8)
                if admiral:
                    if need_base0[d, j]:
                        code[(g == 0) & no_b] = 4
                    if need_lim0[d, j]:
                        code[(g == 0) & np.isnan(lim)] = 3
                else:
                    code[(g < max_lim_grade[d, j]) & np.isnan(lim)] = 3
                g[outside], code[outside] = 0, 5
                code[no_x] = 2
                grade[d, rows], reason[d, rows] = g, code


def grade_rows(vid, *args) -> None:
    """Fill ``grade`` and ``reason`` (the last two arguments) for every row: see ``_grade_rows``."""
    if use_compiled(vid.shape[0]):
        jit(_grade_rows)(vid, *args)
    else:
        _grade_rows_numpy(vid, *args)
