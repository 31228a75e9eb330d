"""Number the distinct combinations of a few key columns, fast: the rows of a 10-million-row lab
table have a few dozen distinct (code, unit) pairs, and each pair is looked up once, not per row."""
from __future__ import annotations

import numpy as np
import polars as pl

from .compiled import jit, use_compiled

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio: mixes keys (Fibonacci hashing)


def _ids_of_keys(hashes, bits):  # pragma: no cover - compiled (compiled.jit); tested through factorize
    """One pass with an open-addressing table of 2^bits slots: each row's combined key gets a small
    id (in order of first appearance) and each id its first row. Returns count -1 when the table
    is half full, so that the caller retries with a larger one."""
    n = hashes[0].shape[0]
    size = 1 << bits
    shift = np.uint64(64 - bits)
    slot_key = np.zeros(size, np.uint64)
    slot_id = np.full(size, -1, np.int64)
    first = np.empty(size // 2, np.int64)
    ids = np.empty(n, np.uint32)
    count = 0
    for i in range(n):
        key = np.uint64(0)
        for h in hashes:
            key = key * _GOLDEN + h[i]
        b = np.int64((key * _GOLDEN) >> shift)
        while True:
            j = slot_id[b]
            if j < 0:
                if count == size // 2:
                    return ids, first, -1
                slot_id[b], slot_key[b], first[count], ids[i] = count, key, i, count
                count += 1
                break
            if slot_key[b] == key:
                ids[i] = j
                break
            b = (b + 1) & (size - 1)
    return ids, first, count


def _ids_of_keys_numpy(hashes):
    """``_ids_of_keys`` without compiling: the same combined keys, numbered by a polars hash group-by
    (no sort), ids in order of first appearance."""
    key = np.zeros(hashes[0].shape[0], np.uint64)
    for h in hashes:
        key = key * _GOLDEN + h  # wraps modulo 2^64, as the compiled loop does
    rows = pl.DataFrame({"key": key}).with_row_index("row")
    firsts = rows.group_by("key", maintain_order=True).agg(pl.col("row").first()).with_row_index("id")
    ids = rows.join(firsts.select("key", "id"), on="key", how="left", maintain_order="left")["id"]
    first = firsts["row"].to_numpy().astype(np.int64)
    return ids.to_numpy().astype(np.uint32), first, first.shape[0]


def readonly(a: np.ndarray, dtype) -> np.ndarray:
    """A contiguous read-only view (copied only when needed) of ``a`` as ``dtype``: compiled
    functions then see one array type, whatever the source, and are compiled once."""
    view = np.ascontiguousarray(a, dtype=dtype).view()
    view.flags.writeable = False
    return view


def factorize(*columns: pl.Series) -> tuple[np.ndarray, list[tuple]]:
    """Small integer ids (uint32, in order of first appearance) for the distinct combinations of
    the columns, and the values of each combination. Strings are hashed once by polars (64 bits
    per column); the combined keys are numbered in one compiled pass (or one numpy sort: compiled.py)."""
    hashes = tuple(readonly(col.hash(seed=7).to_numpy(), np.uint64) for col in columns)
    if use_compiled(hashes[0].shape[0]):
        bits = 8
        while True:
            ids, first, count = jit(_ids_of_keys)(hashes, bits)
            if count >= 0:
                break
            bits += 4
    else:
        ids, first, count = _ids_of_keys_numpy(hashes)
    rows = first[:count].tolist()
    return ids, [tuple(col[i] for col in columns) for i in rows]
