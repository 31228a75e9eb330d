"""Bounds a JSON text must keep before any parser sees it: size, nesting depth and number magnitude.

Parsers fail on such texts in ways that are not input errors (orjson: "number is infinity", the
json module: RecursionError, ValueError beyond 4,300 digits; Python code walking the result:
RecursionError), so the text is checked first and an excess is reported as a malformed file with
its line and column. The check is a few regular expressions and one numpy pass (~10 ms a MB).
"""
from __future__ import annotations

import re
from typing import NamedTuple

MAX_BYTES = 1024 * 1024 * 1024  # 1 GB: a bundle beyond that is split (bulk export's NDJSON pages)
MAX_DEPTH = 100  # arrays and objects nested; a FHIR bundle of bundles (8 deep) is under 60
MAX_DIGITS = 40  # digits in a row in one number (a double keeps 17 significant digits)
MAX_EXPONENT = 250  # |e|: with 40 digits still a finite double

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_LONG_DIGITS = re.compile(rb"\d{%d,}" % (MAX_DIGITS + 1))
_EXPONENT = re.compile(rb"[0-9.]*[eE][+-]?(\d+)")  # from the number's first digit


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
    bare = _STRING.sub(b'""', data).translate(None, b" \t\r\n")
    if _excess(bare) is None:
        return None
    # Again with every string blanked to its own length, for the offset in the file (slower; rare).
    found = _excess(_STRING.sub(lambda m: b'"' + b" " * (len(m.group()) - 2) + b'"', data))
    if found is None:  # digits joined by the blanks removed: not valid JSON, the parser says so
        return None
    return Excess(*_position(data, found[0]), found[1])


def _excess(bare: bytes) -> tuple[int, str] | None:
    m = _LONG_DIGITS.search(bare)
    if m:
        return m.start(), f"a number with more than {MAX_DIGITS} digits"
    for m in _EXPONENT.finditer(bare):
        digits = m.group(1).lstrip(b"0")
        if len(digits) > 3 or int(digits or 0) > MAX_EXPONENT:
            return m.start(), f"a number with an exponent beyond ±{MAX_EXPONENT}"
    if bare.count(b"[") + bare.count(b"{") > MAX_DEPTH:  # only then can the depth exceed the bound
        import numpy as np

        chars = np.frombuffer(bare, dtype=np.uint8)
        step = ((chars == ord("[")) | (chars == ord("{"))).astype(np.int16) \
            - ((chars == ord("]")) | (chars == ord("}"))).astype(np.int16)
        deep = np.flatnonzero(np.cumsum(step, dtype=np.int32) > MAX_DEPTH)
        if deep.size:
            return int(deep[0]), f"arrays and objects nested more than {MAX_DEPTH} deep"
    return None
