"""Units: parse what labs write (UCUM and common variants), convert to canonical units with pint.

Every conversion is linear (value * scale + offset; only temperatures have an offset), so it is
computed once per (unit, analyte) and then applied to whole columns.
Mass <-> substance uses the analyte's molar mass through pint's "chemistry" context;
mEq <-> mmol uses the analyte's valence.

Building pint's UCUM registry takes most of a second, so the conversions dosewatch meets (every
analyte's and criterion's unit against the units labs write) are computed with pint once, by
``tools/make_unit_table.py``, and shipped in ``data/unit-conversions.json``; a test recomputes every
row with pint. A pair outside the table is computed with pint, as before.
"""
from __future__ import annotations

import json
import re
from functools import cache, lru_cache
from importlib import resources

from .errors import UnitError

# Common non-UCUM spellings seen in lab systems and SDTM --ORRESU, mapped to UCUM.
# Keys are compared after lower-casing and removing spaces.
_ALIASES = {
    "10^9/l": "10*9/L", "x10^9/l": "10*9/L", "x10e9/l": "10*9/L", "10e9/l": "10*9/L", "gi/l": "10*9/L",
    "g/l_cells": "10*9/L", "10*9/l": "10*9/L", "x10*9/l": "10*9/L", "10^3/ul": "10*3/uL",
    "x10^3/ul": "10*3/uL", "x10e3/ul": "10*3/uL", "10e3/ul": "10*3/uL", "k/ul": "10*3/uL",
    "10*3/ul": "10*3/uL", "thou/ul": "10*3/uL", "/ul": "/uL", "cells/ul": "/uL", "/mm3": "/mm3",
    "cells/mm3": "/mm3", "/mm^3": "/mm3", "/µl": "/uL", "/cmm": "/mm3",
    "10^12/l": "10*12/L", "ti/l": "10*12/L",
    "meq/l": "meq/L", "mmol/l": "mmol/L", "umol/l": "umol/L", "µmol/l": "umol/L", "μmol/l": "umol/L",
    "mg/dl": "mg/dL", "g/dl": "g/dL", "g/l": "g/L", "mg/l": "mg/L",
    "u/l": "U/L", "iu/l": "U/L", "ukat/l": "ukat/L", "µkat/l": "ukat/L",
    "c": "Cel", "°c": "Cel", "degc": "Cel", "cel": "Cel", "f": "[degF]", "°f": "[degF]", "degf": "[degF]",
    "[degf]": "[degF]",
    "mmhg": "mm[Hg]", "mm[hg]": "mm[Hg]", "beats/min": "/min", "bpm": "/min", "breaths/min": "/min",
    "/min": "/min", "min-1": "/min", "{beats}/min": "/min", "{breaths}/min": "/min",
    "%": "%", "percent": "%", "kg": "kg", "lb": "[lb_av]", "lbs": "[lb_av]", "[lb_av]": "[lb_av]",
    "cm": "cm", "mm": "mm", "m": "m", "in": "[in_i]", "[in_i]": "[in_i]",
    "1": "1", "": "1", "{score}": "1", "{grade}": "1",
}


def normalize_unit(text: str | None) -> str:
    """Return the UCUM spelling dosewatch uses for a unit as written (``'mEq/L'`` -> ``'meq/L'``)."""
    raw = (text or "").strip()
    key = re.sub(r"\s+", "", raw).lower()
    if key in _ALIASES:
        return _ALIASES[key]
    return raw


@cache
def registry():
    """The pint registry that understands UCUM (loaded once, lazily: it takes ~0.7 s)."""
    from ucumvert import PintUcumRegistry

    return PintUcumRegistry()


@lru_cache(maxsize=4096)
def _units(ucum: str):
    ureg = registry()
    if ucum == "1":
        return ureg.dimensionless
    try:
        return ureg.from_ucum(ucum).units
    except Exception as exc:  # ucumvert raises its own parse errors
        raise UnitError(f"unknown unit {ucum!r}") from exc


def _is_equivalents(ucum: str) -> bool:
    return "eq" in ucum and "eq" in str(_units(ucum))


TABLE = "data/unit-conversions.json"


@cache
def _table() -> dict[tuple, tuple[float, float]]:
    """The shipped conversions: (from, to, molar mass, valence) -> (scale, offset), units normalized."""
    rows = json.loads(resources.files("dosewatch").joinpath(TABLE).read_text())["conversions"]
    return {(src, dst, mm, val): (scale, offset) for src, dst, mm, val, scale, offset in rows}


@lru_cache(maxsize=4096)
def linear_conversion(
    from_unit: str, to_unit: str, molar_mass: float | None = None, valence: int | None = None
) -> tuple[float, float]:
    """(scale, offset) such that value_in_to_unit = value_in_from_unit * scale + offset.

    Raises UnitError naming both units when they cannot be converted for this analyte.
    """
    src, dst = normalize_unit(from_unit), normalize_unit(to_unit)
    if src == dst:
        return 1.0, 0.0
    shipped = _table().get((src, dst, molar_mass, valence))
    if shipped is not None:
        return shipped
    return pint_conversion(from_unit, to_unit, molar_mass, valence)


def pint_conversion(from_unit: str, to_unit: str, molar_mass: float | None = None, valence: int | None = None
                    ) -> tuple[float, float]:
    """``linear_conversion`` computed with pint, never from the shipped table."""
    src, dst = normalize_unit(from_unit), normalize_unit(to_unit)
    if src == dst:
        return 1.0, 0.0
    ureg = registry()
    u_src, u_dst = _units(src), _units(dst)
    factor = 1.0
    # UCUM counts an equivalent as one mole of charge: mmol = meq / valence.
    if _is_equivalents(src):
        if not valence:
            raise UnitError(f"cannot convert {from_unit!r} to {to_unit!r}: no valence known for this analyte")
        u_src = _units(src.replace("eq", "mol"))
        factor /= valence
    if _is_equivalents(dst):
        if not valence:
            raise UnitError(f"cannot convert {from_unit!r} to {to_unit!r}: no valence known for this analyte")
        u_dst = _units(dst.replace("eq", "mol"))
        factor *= valence
    try:
        q0 = ureg.Quantity(0.0, u_src)
        q1 = ureg.Quantity(1.0, u_src)
        if molar_mass and u_src.dimensionality != u_dst.dimensionality:
            mw = molar_mass * ureg("g/mol")
            y0 = q0.to(u_dst, "chemistry", mw=mw).magnitude
            y1 = q1.to(u_dst, "chemistry", mw=mw).magnitude
        else:
            y0 = q0.to(u_dst).magnitude
            y1 = q1.to(u_dst).magnitude
    except Exception as exc:
        raise UnitError(f"cannot convert {from_unit!r} to {to_unit!r}") from exc
    scale = float(y1 - y0) * factor
    offset = float(y0) * factor
    return scale, offset


def is_known_ucum(unit: str) -> bool:
    """True when the shipped table names ``unit`` (every unit there is a UCUM code that reads back)."""
    return unit in _known_units()


@cache
def _known_units() -> frozenset[str]:
    return frozenset(u for key in _table() for u in key[:2])


def convert(value, from_unit: str, to_unit: str, molar_mass: float | None = None, valence: int | None = None):
    """Convert a number or a numpy array between units (see linear_conversion)."""
    scale, offset = linear_conversion(from_unit, to_unit, molar_mass, valence)
    return value * scale + offset
