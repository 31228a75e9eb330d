"""The one canonical record shape: every reader produces it, every evaluation reads it.

A ``Cohort`` holds one or many patients as four polars tables with fixed schemas. Values are in
the analyte's canonical unit (``analytes.yaml``); the value and unit as written are kept beside
them (``orig_value``, ``orig_unit``) so that nothing the source said is lost and writers can give
it back. Times are the wall-clock time written in the source (a UTC offset, when given, is kept in
``tz_offset_min`` and not applied), so that "the same calendar day" means the day the clinic saw.
Date-only sources get ``time_known = False`` and midnight.

A single patient's record is a ``Cohort`` of one (``cohort.patient(id)``).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field

import polars as pl

PATIENTS_SCHEMA = {
    "patient_id": pl.String,
    "sex": pl.String,  # "M" | "F" | "U"
    "birth_date": pl.Date,
    "deceased_date": pl.Date,
    "source": pl.String,  # where it was read: "bundle.json Patient/p1", "DM.csv row 3"
    "study_id": pl.String,  # SDTM STUDYID; written back by every export
    "age": pl.Float64,  # age in years as the source states it (SDTM DM.AGE), used when birth_date is unknown
    "age_date": pl.Date,  # the date that age refers to (DM.RFSTDTC, else DM.DMDTC)
}

OBSERVATIONS_SCHEMA = {
    "patient_id": pl.String,
    "obs_id": pl.String,  # resource id or SDTM sequence, unique within the cohort
    "code": pl.String,  # analyte code (analytes.yaml): K, CREAT, TEMP, LNDIAM, ...
    "time": pl.Datetime("us"),
    "date": pl.Date,
    "time_known": pl.Boolean,
    "value": pl.Float64,  # in the analyte's canonical unit
    "unit": pl.String,  # canonical unit (UCUM)
    "orig_value": pl.Float64,  # as written in the source
    "orig_unit": pl.String,  # as written in the source
    "ref_low": pl.Float64,  # reference range, canonical unit
    "ref_high": pl.Float64,
    "site": pl.String,  # body site for sited findings (lymph-node region); else null
    "tz_offset_min": pl.Int32,
    "source": pl.String,
    "comparator": pl.String,  # "<", "<=", ">", ">=" when the result was a bound ("<40"); value = the bound
    "qualifiers": pl.String,  # what else tells two findings apart: "POS=STANDING; TPTNUM=816; REPNUM=2"
    "ref_source": pl.String,  # where ref_low/ref_high came from when not from the record (site ranges file)
}

DOSES_SCHEMA = {
    "patient_id": pl.String,
    "dose_id": pl.String,
    "drug": pl.String,  # lower-case generic name: lenalidomide, dexamethasone, prednisone, ...
    "rxnorm": pl.String,
    "time": pl.Datetime("us"),
    "date": pl.Date,
    "time_known": pl.Boolean,
    "dose": pl.Float64,  # amount per administration
    "dose_unit": pl.String,
    "route": pl.String,
    "status": pl.String,  # FHIR MedicationAdministration.status: completed, not-done, ...
    "tz_offset_min": pl.Int32,
    "source": pl.String,
}

EVENTS_SCHEMA = {
    "patient_id": pl.String,
    "event_id": pl.String,
    "code": pl.String,  # event code (analytes.yaml events): SEPSIS, ARRHYTHMIA, DEATH, ...
    "term": pl.String,  # as written in the source
    "time": pl.Datetime("us"),
    "date": pl.Date,
    "time_known": pl.Boolean,
    "end_date": pl.Date,
    "grade": pl.Int32,  # grade given in the source, if any
    "tz_offset_min": pl.Int32,
    "source": pl.String,
    "codes": pl.String,  # the source's codes beyond the event catalog's own SNOMED CT code, "system|code"
    # separated by spaces (MedDRA PT and LLT, SNOMED CT of events outside the catalog)
    "grade_source": pl.String,  # where the grade came from: "AETOXGR", "AESEV MODERATE", "severity moderate"
    "imputed": pl.String,  # how a partial start/end date was completed, else null
}


PLACEBO = "placebo"  # the ``drug`` of placebo exposure


def empty(schema: dict) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def frame(rows: list[dict], schema: dict) -> pl.DataFrame:
    """Build a table with the canonical schema from row dicts (missing keys become null)."""
    if not rows:
        return empty(schema)
    return pl.DataFrame([{k: r.get(k) for k in schema} for r in rows], schema=schema, orient="row")


@dataclass(frozen=True)
class Cohort:
    """Patients, observations, doses and clinical events in the canonical shape."""

    patients: pl.DataFrame = field(default_factory=lambda: empty(PATIENTS_SCHEMA))
    observations: pl.DataFrame = field(default_factory=lambda: empty(OBSERVATIONS_SCHEMA))
    doses: pl.DataFrame = field(default_factory=lambda: empty(DOSES_SCHEMA))
    events: pl.DataFrame = field(default_factory=lambda: empty(EVENTS_SCHEMA))

    def __post_init__(self) -> None:
        for name, schema in (
            ("patients", PATIENTS_SCHEMA),
            ("observations", OBSERVATIONS_SCHEMA),
            ("doses", DOSES_SCHEMA),
            ("events", EVENTS_SCHEMA),
        ):
            table: pl.DataFrame = getattr(self, name)
            if dict(table.schema) != schema:
                object.__setattr__(self, name, Cohort.conform(table, schema))

    @staticmethod
    def conform(table: pl.DataFrame, schema: dict) -> pl.DataFrame:
        """``table`` in the schema's columns, order and types; columns it lacks (a producer that does
        not know of a column added to the shape later) are empty."""
        return table.select([pl.col(c).cast(t) if c in table.columns else pl.lit(None, t).alias(c)
                             for c, t in schema.items()])

    @property
    def patient_ids(self) -> list[str]:
        return self.patients["patient_id"].to_list()

    def patient(self, patient_id: str) -> "Cohort":
        """The record of one patient."""
        if patient_id not in self.patient_ids:
            raise KeyError(f"no patient {patient_id!r}")
        keep = pl.col("patient_id") == patient_id
        return Cohort(
            self.patients.filter(keep),
            self.observations.filter(keep),
            self.doses.filter(keep),
            self.events.filter(keep),
        )

    def first_dose_dates(self, drug: str) -> dict[str, dt.date]:
        """Day 1 per patient: the date of the first administered dose of ``drug`` or of placebo (in a
        blinded study the placebo stands for the study drug: CDISC RFXSTDTC, "first date/time of
        exposure to study treatment", counts it alike)."""
        given = self.doses.filter(pl.col("drug").is_in([drug.lower(), PLACEBO]) & (pl.col("status") == "completed"))
        first = given.group_by("patient_id").agg(pl.col("date").min())
        return dict(zip(first["patient_id"].to_list(), first["date"].to_list(), strict=True))

    def known_on(self, as_of: dt.date) -> "Cohort":
        """What was known at the end of ``as_of``: records dated after it are left out, and a death
        after it is not yet known."""
        on = pl.col("date") <= as_of
        patients = self.patients.with_columns(
            pl.when(pl.col("deceased_date") <= as_of).then(pl.col("deceased_date")).otherwise(None).alias("deceased_date")
        )
        return Cohort(patients, self.observations.filter(on), self.doses.filter(on), self.events.filter(on))

    def batches(self, size: int) -> Iterator["Cohort"]:
        """The cohort in parts of at most ``size`` patients, every record of a patient in one part, in
        the order of the patients table. Records of a patient id missing from the patients table go
        with the last part, so that none is left out."""
        ids = self.patients["patient_id"].unique(maintain_order=True)
        if ids.len() <= size:
            yield self
            return
        last = (ids.len() - 1) // size
        numbers = pl.int_range(ids.len(), dtype=pl.Int32, eager=True) // size
        tables = (self.patients, self.observations, self.doses, self.events)
        # One small integer column per table, then one filter per part: no copy of a whole table.
        part_of = [t["patient_id"].replace_strict(ids, numbers, default=last, return_dtype=pl.Int32) for t in tables]
        for k in range(last + 1):
            yield Cohort(*(t.filter(part == k) for t, part in zip(tables, part_of, strict=True)))

    @staticmethod
    def concat(parts: list["Cohort"]) -> "Cohort":
        return Cohort(
            pl.concat([p.patients for p in parts]),
            pl.concat([p.observations for p in parts]),
            pl.concat([p.doses for p in parts]),
            pl.concat([p.events for p in parts]),
        )


def day1_frame(day1: dict[str, dt.date], name: str = "day1") -> pl.DataFrame:
    """Day 1 per patient (``Cohort.first_dose_dates``) as a table to join on ``patient_id``."""
    return pl.DataFrame({"patient_id": list(day1), name: list(day1.values())},
                        schema={"patient_id": pl.String, name: pl.Date})


def age_on(person: dict, on: dt.date) -> int | None:
    """A patient's age in completed years on a date: from the birth date, else from the age the source
    states (SDTM DM.AGE, at ``age_date``) plus the whole years since; None when neither is known."""
    birth = person.get("birth_date")
    if birth is not None:
        return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    age = person.get("age")
    if age is None:
        return None
    since = person.get("age_date")
    if since is None or on <= since:
        return int(age)
    return int(age + (on - since).days // 365.25)


def study_day(date: dt.date, day1: dt.date) -> int:
    """CDISC study day: day 1 is the first dose, the day before is -1, there is no day 0."""
    delta = (date - day1).days
    return delta + 1 if delta >= 0 else delta


def study_day_expr(date_col: str, day1_col: str) -> pl.Expr:
    """Study day as a polars expression over two date columns (no day 0)."""
    delta = (pl.col(date_col) - pl.col(day1_col)).dt.total_days()
    return pl.when(delta >= 0).then(delta + 1).otherwise(delta).cast(pl.Int32)
