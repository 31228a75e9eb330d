"""The analyte catalog: what dosewatch reads, its codes (LOINC, SDTM) and its canonical unit."""
from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from . import units
from .yaml_load import safe_load


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
    sdtm_synonyms: tuple[str, ...] = ()  # other --TESTCD values CDISC CT gives the same quantity (VS PULSE = HR)
    molar_mass: float | None = None
    valence: int | None = None
    sited: bool = False  # carries a body site (lymph node region)
    counts_as: str | None = None  # satisfies a protocol's requirement for this analyte (PAINNRS for PAIN)
    conventional: str | None = None  # US conventional unit for display, where it differs from the canonical (SI) one
    assume_unit: bool = False  # a value without a unit is read in the canonical unit (a warning): vitals
    # measured in one unit only (mm[Hg], /min, %), never labs (mg/dL or umol/L?)

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
    # Acting on its own (data/analytes.yaml): the alert's severity, the grade dose rules read it at when
    # none is reported (and the lowest it can have), and what the clinician is asked to do.
    severity: str | None = None
    grade: int | None = None
    min_grade: int = 1
    grade_source: str | None = None
    ask: str | None = None


LOINC = "http://loinc.org"
FINDING = "https://dosewatch.org/fhir/CodeSystem/finding"  # dosewatch's own codes (exam findings, symptoms)


class Catalog:
    """The analytes and events dosewatch reads, looked up by the codes sources use for them: LOINC
    and dosewatch's finding codes (FHIR), SDTM domain and --TESTCD, and a site's local codes
    (``with_local_codes``)."""

    def __init__(self, analytes: list[Analyte], events: list[EventKind],
                 local: dict[tuple[str, str], str] | None = None):
        self.analytes = {a.code: a for a in analytes}
        self.events = {e.code: e for e in events}
        self.by_loinc = {code: a for a in analytes for code in a.loinc}
        self.by_sdtm = {(a.sdtm_domain, t): a for a in analytes for t in (a.sdtm_testcd, *a.sdtm_synonyms)}
        self.by_coding = {**{(LOINC, c): a for c, a in self.by_loinc.items()},
                          **{(FINDING, a.code): a for a in analytes}}
        self.local = dict(local or {})
        for (system, code), analyte in self.local.items():
            if system.startswith("SDTM:"):
                self.by_sdtm[(system[5:], code)] = self.analytes[analyte]
            else:
                self.by_coding[(system, code)] = self.analytes[analyte]
        self.event_by_snomed = {c: e for e in events for c in e.snomed}
        self.event_by_text = {s.lower(): e for e in events for s in (*e.synonyms, e.term, e.code)}

    def sdtm_codes(self, domain: str) -> dict[str, str]:
        """--TESTCD -> analyte code for one SDTM domain (synonyms and local codes included)."""
        return {testcd: a.code for (dom, testcd), a in self.by_sdtm.items() if dom == domain}

    def for_coding(self, system: str | None, code: str | None) -> Analyte | None:
        return self.by_coding.get((system, code)) if system and code else None

    def with_local_codes(self, local: dict[tuple[str, str], str]) -> "Catalog":
        """This catalog, also reading a site's own codes: (system, code) -> analyte code, where system
        is a FHIR code system URI or ``SDTM:<domain>`` for a --TESTCD (see ``load_local_codes``)."""
        return Catalog(list(self.analytes.values()), list(self.events.values()), {**self.local, **local})

    def __getitem__(self, code: str) -> Analyte:
        return self.analytes[code]

    def __contains__(self, code: str) -> bool:
        return code in self.analytes

    def event_for_text(self, text: str | None) -> EventKind | None:
        if not text:
            return None
        return self.event_by_text.get(" ".join(text.lower().replace("_", " ").split()))


def load_local_codes(path: str | Path) -> dict[tuple[str, str], str]:
    """A site's code map: a CSV with the header ``system,code,analyte`` (one row per local code; system
    is the FHIR coding system URI, or ``SDTM:LB`` / ``SDTM:VS`` ... for a --TESTCD; analyte is a
    dosewatch analyte code from data/analytes.yaml). Raises InputError naming every bad row."""
    import csv

    from .errors import InputError, Problem

    path = Path(path)
    name = path.name
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError([Problem(name, "(file)", f"cannot read the code map: {exc}", kind="file")]) from None
    rows = list(csv.reader(text.splitlines()))
    header = [h.strip().lower() for h in rows[0]] if rows else []
    if header[:3] != ["system", "code", "analyte"]:
        raise InputError([Problem(name, "(header)", "a code map's header is: system,code,analyte", kind="column")])
    known = catalog().analytes
    out: dict[tuple[str, str], str] = {}
    problems = []
    for n, row in enumerate(rows[1:], start=1):
        if not any(x.strip() for x in row):
            continue
        if len(row) < 3:
            problems.append(Problem(f"{name} row {n}", "(row)", "expected system, code, analyte", kind="value"))
            continue
        system, code, analyte = (x.strip() for x in row[:3])
        if analyte not in known:
            problems.append(Problem(f"{name} row {n}", "analyte", f"unknown analyte {analyte!r} (one of "
                                    f"{', '.join(sorted(known))})", kind="value"))
        elif not system or not code:
            problems.append(Problem(f"{name} row {n}", "system" if not system else "code", "empty", kind="value"))
        elif (system, code) in out and out[system, code] != analyte:
            problems.append(Problem(f"{name} row {n}", "code", f"{system}|{code} is mapped twice", kind="duplicate"))
        else:
            out[system, code] = analyte
    if problems:
        raise InputError(problems)
    return out


@cache
def catalog() -> Catalog:
    """The catalog shipped with dosewatch (data/analytes.yaml)."""
    raw = safe_load(resources.files("dosewatch").joinpath("data/analytes.yaml").read_text())
    analytes = []
    for kind_key, kind in (("labs", "lab"), ("vitals", "vital"), ("exam", "exam"), ("symptoms", "symptom")):
        for row in raw[kind_key]:
            domain, testcd = row.pop("sdtm")
            analytes.append(Analyte(kind=kind, sdtm_domain=domain, sdtm_testcd=testcd, **row))
    events = [EventKind(**row) for row in raw["events"]]
    return Catalog(analytes, events)
