"""The analyte catalog: what dosewatch reads, its codes (LOINC, SDTM) and its canonical unit."""
from __future__ import annotations

from functools import cache
from importlib import resources

import yaml
from pydantic import BaseModel, ConfigDict

from . import units


class Analyte(BaseModel):
    """A measured quantity: a lab, a vital sign, an exam finding or a symptom score."""

    model_config = ConfigDict(frozen=True)

    code: str
    name: str
    kind: str  # lab | vital | exam | symptom
    sdtm_domain: str
    sdtm_testcd: str
    unit: str  # canonical UCUM unit
    plausible: tuple[float, float]
    loinc: tuple[str, ...] = ()
    molar_mass: float | None = None
    valence: int | None = None
    sited: bool = False  # carries a body site (lymph node region)

    def to_canonical(self, value, unit: str):
        """Convert a number or array from ``unit`` to this analyte's canonical unit."""
        return units.convert(value, unit, self.unit, self.molar_mass, self.valence)

    def from_canonical(self, value, unit: str):
        return units.convert(value, self.unit, unit, self.molar_mass, self.valence)

    def conversion(self, unit: str) -> tuple[float, float]:
        """(scale, offset) from ``unit`` to the canonical unit; raises UnitError if impossible."""
        return units.linear_conversion(unit, self.unit, self.molar_mass, self.valence)


class EventKind(BaseModel):
    """A clinical event dosewatch recognises (arrhythmia, seizure, sepsis, ...)."""

    model_config = ConfigDict(frozen=True)

    code: str
    term: str
    snomed: tuple[str, ...] = ()
    synonyms: tuple[str, ...] = ()


class Catalog:
    def __init__(self, analytes: list[Analyte], events: list[EventKind]):
        self.analytes = {a.code: a for a in analytes}
        self.events = {e.code: e for e in events}
        self.by_loinc = {code: a for a in analytes for code in a.loinc}
        self.by_sdtm = {(a.sdtm_domain, a.sdtm_testcd): a for a in analytes}
        self.event_by_snomed = {c: e for e in events for c in e.snomed}
        self.event_by_text = {s.lower(): e for e in events for s in (*e.synonyms, e.term, e.code)}

    def __getitem__(self, code: str) -> Analyte:
        return self.analytes[code]

    def __contains__(self, code: str) -> bool:
        return code in self.analytes

    def event_for_text(self, text: str | None) -> EventKind | None:
        if not text:
            return None
        return self.event_by_text.get(" ".join(text.lower().replace("_", " ").split()))


@cache
def catalog() -> Catalog:
    """The catalog shipped with dosewatch (data/analytes.yaml)."""
    raw = yaml.safe_load(resources.files("dosewatch").joinpath("data/analytes.yaml").read_text())
    analytes = []
    for kind_key, kind in (("labs", "lab"), ("vitals", "vital"), ("exam", "exam"), ("symptoms", "symptom")):
        for row in raw[kind_key]:
            domain, testcd = row.pop("sdtm")
            analytes.append(Analyte(kind=kind, sdtm_domain=domain, sdtm_testcd=testcd, **row))
    events = [EventKind(**row) for row in raw["events"]]
    return Catalog(analytes, events)
