"""Bounds a JSON text must keep before any parser sees it: size, nesting depth and number magnitude.

Parsers fail on such texts in ways that are not input errors (orjson: "number is infinity", the
json module: RecursionError, ValueError beyond 4,300 digits; Python code walking the result:
RecursionError), so the text is checked first and an excess is reported as a malformed file with
its line and column. The check is one numpy pass that finds the bytes outside strings, then regular expressions
on what remains.
"""
from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np

MAX_BYTES = 1024 * 1024 * 1024  # 1 GB: a bundle beyond that is split (bulk export's NDJSON pages)
MAX_DEPTH = 100  # arrays and objects nested; a FHIR bundle of bundles (8 deep) is under 60
MAX_DIGITS = 40  # digits in a row in one number (a double keeps 17 significant digits)
MAX_EXPONENT = 250  # |e|: with 40 digits still a finite double

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_EXPONENT = re.compile(rb"[eE][+-]?(\d+)")


class Excess(NamedTuple):
    """Where (1-based line and column) and what bound the text exceeds."""

    line: int
    column: int
    message: str


def _position(data: bytes, offset: int) -> tuple[int, int]:
    line = data.count(b"\n", 0, offset) + 1
    return line, offset - (data.rfind(b"\n", 0, offset) + 1) + 1


def json_excess(data: bytes) -> Excess | None:
    """The first bound ``data`` exceeds, else None. Strings are left out of the search (their
    contents are text, not structure); a string that never ends leaves its rest to the parser."""
    if len(data) > MAX_BYTES:
        return Excess(1, 1, f"file larger than {MAX_BYTES // (1024 * 1024)} MB")
    if len(data) < 4096:  # small texts: the regular expressions are fastest
        bare = _STRING.sub(b'""', data).translate(None, b" \t\r\n")
        if _excess(bare) is None:
            return None
        found = _excess(_STRING.sub(lambda m: b'"' + b" " * (len(m.group()) - 2) + b'"', data))
        return None if found is None else Excess(*_position(data, found[0]), found[1])
    outside = _outside_strings(data)  # one numpy pass
    found = _excess(np.frombuffer(data, dtype=np.uint8)[outside].tobytes())
    if found is None:
        return None
    return Excess(*_position(data, int(np.flatnonzero(outside)[found[0]])), found[1])


def _outside_strings(data: bytes) -> np.ndarray:
    """True for each byte that is not inside a string. A quote counts when an even number of
    backslashes precede it (few quotes have any: those are counted one by one); a string's own
    quotes count as outside (they are not digits or brackets)."""
    chars = np.frombuffer(data, dtype=np.uint8)
    quotes = np.flatnonzero(chars == 34)
    escaped = quotes[(quotes > 0) & (chars[np.maximum(quotes - 1, 0)] == 92)]
    odd = []
    for q in escaped.tolist():
        run = 0
        while q - run - 1 >= 0 and data[q - run - 1] == 92:
            run += 1
        if run % 2:
            odd.append(q)
    real = quotes[~np.isin(quotes, odd)] if odd else quotes
    edges = np.zeros(chars.size + 1, dtype=np.int8)
    edges[real[0::2] + 1] += 1  # inside from just after an opening quote ...
    edges[real[1::2]] -= 1  # ... to its closing quote (the same byte for "": strings never nest, the sum is 0 or 1)
    return np.cumsum(edges[:-1], dtype=np.int8) == 0


def _excess(bare: bytes) -> tuple[int, str] | None:
    chars = np.frombuffer(bare, dtype=np.uint8)
    digit = np.zeros(chars.size + 2, dtype=np.int8)
    digit[1:-1] = (chars >= 48) & (chars <= 57)
    change = np.flatnonzero(np.diff(digit))  # runs of digits: [starts[i], ends[i])
    starts, ends = change[0::2], change[1::2]
    long = np.flatnonzero(ends - starts > MAX_DIGITS)
    if long.size:
        return int(starts[long[0]]), f"a number with more than {MAX_DIGITS} digits"
    # an exponent: e or E right after a digit or a point (outside strings only numbers have one)
    marks = np.flatnonzero(((chars == 101) | (chars == 69))[1:] & (((chars >= 48) & (chars <= 57)) | (chars == 46))[:-1]) + 1
    for e in marks.tolist():
        m = _EXPONENT.match(bare, e)
        if m is None:
            continue
        digits = m.group(1).lstrip(b"0")
        if len(digits) > 3 or int(digits or 0) > MAX_EXPONENT:
            start = e
            while start > 0 and bare[start - 1] in b"0123456789.+-":  # back to the number's first character
                start -= 1
            return start, f"a number with an exponent beyond ±{MAX_EXPONENT}"
    if bare.count(b"[") + bare.count(b"{") > MAX_DEPTH:  # only then can the depth exceed the bound
        at = np.flatnonzero((chars == 91) | (chars == 93) | (chars == 123) | (chars == 125))  # the brackets only
        step = np.where((chars[at] == 91) | (chars[at] == 123), 1, -1)
        deep = np.flatnonzero(np.cumsum(step, dtype=np.int32) > MAX_DEPTH)
        if deep.size:
            return int(at[deep[0]]), f"arrays and objects nested more than {MAX_DEPTH} deep"
    return None
