"""The model's parameters, read from ``data/insilico/*.yaml``: each with its value, uncertainty range,
unit, source and status (seen / seen-range / unverified / assumption)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import yaml

FILES = ("population", "disease", "marrow", "care")
STATUSES = ("seen", "seen-range", "unverified", "assumption")


@dataclass(frozen=True)
class Param:
    name: str
    file: str
    value: Any
    range: Any
    unit: str
    source: str
    status: str


@cache
def table(name: str) -> dict:
    """One file of ``data/insilico`` as written (parameters, or ``targets``)."""
    text = resources.files("dosewatch").joinpath(f"data/insilico/{name}.yaml").read_text()
    return yaml.safe_load(text)


@cache
def catalog() -> dict[str, Param]:
    """Every parameter by name (names are unique across the files)."""
    out: dict[str, Param] = {}
    for f in FILES:
        for name, p in table(f)["parameters"].items():
            if name in out:
                raise ValueError(f"parameter {name!r} defined twice ({out[name].file}, {f})")
            out[name] = Param(name, f, p["value"], p.get("range"), str(p.get("unit", "")), p["source"], p["status"])
    return out


class Values(dict):
    """Parameter values by name, as used in one run (the central values, or one draw from the ranges)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc


def central() -> Values:
    return Values({name: p.value for name, p in catalog().items()})


def uncertain() -> list[str]:
    """Scalar parameters with a range (the ones a sensitivity analysis varies)."""
    return [n for n, p in catalog().items() if isinstance(p.value, (int, float)) and isinstance(p.range, list)
            and len(p.range) == 2 and all(isinstance(x, (int, float)) for x in p.range)]


def drawn(rng: np.random.Generator, names: list[str] | None = None) -> Values:
    """Central values with the named (default: every uncertain) parameters drawn uniformly from their
    ranges; log-uniformly when the range spans more than a factor of three."""
    values = central()
    for name in names if names is not None else uncertain():
        lo, hi = catalog()[name].range
        if lo > 0 and hi / lo > 3:
            values[name] = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        else:
            values[name] = float(rng.uniform(lo, hi))
    return values


def with_overrides(values: Values, overrides: dict[str, Any]) -> Values:
    """``values`` with some replaced; an unknown name or a value of another shape than the parameter's
    (a number for a number, a list of numbers of the same length for a list) is an error."""
    unknown = [k for k in overrides if k not in values]
    if unknown:
        raise KeyError(f"unknown model parameter(s): {', '.join(unknown)}")

    def number(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    for name, new in overrides.items():
        old = values[name]
        ok = (number(old) and number(new)) or (
            isinstance(old, list) and isinstance(new, list) and len(old) == len(new) and all(map(number, new)))
        if not ok:
            raise ValueError(f"parameter {name}: {new!r} does not have the shape of its value {old!r}")
    return Values({**values, **overrides})
