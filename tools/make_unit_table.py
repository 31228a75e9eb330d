"""Write src/dosewatch/data/unit-conversions.json: every conversion dosewatch meets, computed with pint.

    .venv/bin/python tools/make_unit_table.py

The pairs: every analyte's canonical unit against the units labs write (the aliases dosewatch reads,
the units CTCAE and iwCLL print, a list of common ones), both ways, with the analyte's molar mass and
valence; and every criterion's printed unit against the same units, as the graders ask. Only pairs
pint can convert are written; tests/test_units.py recomputes every row with pint.
"""
from __future__ import annotations

import csv
import json
from importlib import resources
from pathlib import Path

from dosewatch import units
from dosewatch.analytes import catalog
from dosewatch.criteria.ctcae import CRITERIA, load_terms
from dosewatch.errors import UnitError

COMMON = ["mg/dL", "g/dL", "g/L", "mg/L", "ug/dL", "ug/L", "ng/mL", "umol/L", "mmol/L", "nmol/L", "meq/L",
          "U/L", "ukat/L", "10*9/L", "10*3/uL", "10*6/uL", "/uL", "/mm3", "10*12/L", "%", "Cel", "[degF]",
          "mm[Hg]", "/min", "kg", "[lb_av]", "g", "cm", "mm", "m", "[in_i]", "1", "mL/min", "mg/mL", "/L"]


def candidates() -> list[str]:
    found = set(COMMON) | {a.unit for a in catalog().analytes.values()} | set(units._ALIASES.values())
    for criteria in CRITERIA:
        found |= {r.unit for t in load_terms(criteria).values() for r in t.rules if r.unit}
    text = resources.files("dosewatch.criteria").joinpath("data/iwcll-2018.csv").read_text()
    found |= {r["unit"] for r in csv.DictReader(text.splitlines()) if r["unit"]}
    return sorted({units.normalize_unit(u) for u in found if u is not None})


def rows() -> list[list]:
    out, seen = [], set()

    def add(src: str, dst: str, mm, val) -> None:
        src, dst = units.normalize_unit(src), units.normalize_unit(dst)
        key = (src, dst, mm, val)
        if src == dst or key in seen:
            return
        seen.add(key)
        try:
            scale, offset = units.pint_conversion(src, dst, mm, val)
        except UnitError:
            return
        out.append([src, dst, mm, val, scale, offset])

    every = candidates()
    for a in catalog().analytes.values():
        for u in every:
            add(u, a.unit, a.molar_mass, a.valence)
            add(a.unit, u, a.molar_mass, a.valence)
    for criteria in CRITERIA:
        for term in load_terms(criteria).values():
            analyte = catalog().analytes.get(term.codes[0])
            mm, val = (analyte.molar_mass, analyte.valence) if analyte else (None, None)
            for printed in {r.unit for r in term.rules if r.unit}:
                for u in every:
                    add(u, printed, mm, val)
    text = resources.files("dosewatch.criteria").joinpath("data/iwcll-2018.csv").read_text()
    for printed in {r["unit"] for r in csv.DictReader(text.splitlines()) if r["unit"]}:
        for u in every:
            add(u, printed, None, None)
    return sorted(out, key=lambda r: (r[0], r[1], r[2] or 0, r[3] or 0))


def main() -> None:
    path = Path(__file__).resolve().parents[1] / "src" / "dosewatch" / units.TABLE
    table = {"generator": "tools/make_unit_table.py (pint with ucumvert's UCUM registry)", "conversions": rows()}
    path.write_text(json.dumps(table, indent=0) + "\n")
    print(f"{len(table['conversions'])} conversions -> {path}")


if __name__ == "__main__":
    main()
