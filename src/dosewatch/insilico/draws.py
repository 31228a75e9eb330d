"""What the clinic records about virtual patients: lab draws and examinations with measurement
noise, doses given or not, clinical events, all in the canonical record's shape (``record.Cohort``)
so that dosewatch's own monitor reads them exactly as it reads a site's data."""
from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from ..record import DOSES_SCHEMA, EVENTS_SCHEMA, OBSERVATIONS_SCHEMA, PATIENTS_SCHEMA, Cohort
from .params import table
from .physiology import Patients

DAY1 = dt.date(2026, 1, 5)  # the virtual calendar: every patient's day 1
SOURCE = "insilico"
LAB_CODES = ("WBC", "NEUT", "LYM", "PLAT", "HGB", "CREAT", "K", "PHOS", "CA", "ALB", "URATE", "LDH")
EXAM_CODES = ("LNDIAM", "LNTENDER", "TEMP", "PAIN", "RASH")
UNITS = {"WBC": "10*9/L", "NEUT": "10*9/L", "LYM": "10*9/L", "PLAT": "10*9/L", "HGB": "g/L", "CREAT": "umol/L",
         "K": "mmol/L", "PHOS": "mmol/L", "CA": "mmol/L", "ALB": "g/L", "URATE": "umol/L", "LDH": "U/L",
         "LNDIAM": "cm", "LNTENDER": "1", "TEMP": "Cel", "PAIN": "1", "RASH": "1"}
SITED = {"LNDIAM": "largest node", "LNTENDER": "largest node"}
EVENT_TERMS = {"AIRWAY": "Airway obstruction", "SEPSIS": "Sepsis", "HOSPITAL": "Hospitalization", "DEATH": "Death"}


def date_of(day: int) -> dt.date:
    return DAY1 + dt.timedelta(days=day - 1 if day >= 1 else day)


# Each drawn code's true value now, before measurement noise (a function of the patients' state).
_TRUE = {
    "NEUT": lambda p: p.neut.circ,
    "PLAT": lambda p: p.plat.circ,
    "LYM": lambda p: p.alc,
    "WBC": lambda p: p.alc + p.neut.circ + 0.5,
    "HGB": lambda p: p.pop.hgb,
    "ALB": lambda p: p.pop.alb,
    "LNDIAM": lambda p: p.node_cm,
    "LNTENDER": lambda p: (p.flare_grade >= 1).astype(float),
    "PAIN": lambda p: p.pain_grade.astype(float),
    "RASH": lambda p: (p.flare_index >= p.v.flare_rash_index).astype(float),
    "TEMP": lambda p: p.temp,
    "LDH": lambda p: p.ldh,
    "CREAT": lambda p: p.creat,
    "K": lambda p: p.k,
    "PHOS": lambda p: p.phos,
    "CA": lambda p: p.ca,
    "URATE": lambda p: p.urate,
}


def true_values(p: Patients, code: str) -> np.ndarray:
    """The patient's value of ``code`` now, before measurement noise."""
    return _TRUE[code](p)


def measure(p: Patients, code: str, idx: np.ndarray, z: np.ndarray) -> np.ndarray:
    """A measurement of ``code`` for patients ``idx``: truth plus the noise of ``care.yaml`` (``z``:
    standard normal deviates for these patients)."""
    v = p.v
    x = true_values(p, code)[idx]
    noise = v.noise.get(code)
    if noise and "cv" in noise:
        x = x * np.exp(noise["cv"] * z)
    elif noise and "sd" in noise:
        x = x + noise["sd"] * z
    if code == "K":  # CLL cells leak potassium in the tube (criteria.md decision 10)
        wbc = true_values(p, "WBC")[idx]
        x = x + v.pseudohyperkalemia * np.maximum(wbc - 100.0, 0.0) / 100.0
    if code in ("LNDIAM",):
        x = np.maximum(x, 0.5)
    return np.round(x, 3)


class Recorder:
    """The growing record of every virtual patient, kept as chunks of canonical tables."""

    def __init__(self, pids: np.ndarray, p: Patients, seed: int = 0):
        self.pids = pids
        self.seed = seed
        self.obs: list[pl.DataFrame] = []
        self.doses: list[pl.DataFrame] = []
        self.events: list[pl.DataFrame] = []
        self.deceased: list[dt.date | None] = [None] * len(pids)
        self.ranges = table("population")["reference_ranges"]
        pop = p.pop
        self.patients = pl.DataFrame({
            "patient_id": pids.tolist(), "sex": np.where(pop.male, "M", "F").tolist(),
            "age": np.floor(pop.age).tolist(), "age_date": [DAY1] * len(pids), "source": [SOURCE] * len(pids),
            "study_id": ["INSILICO"] * len(pids)}).pipe(lambda f: Cohort.conform(f, PATIENTS_SCHEMA))
        self._cache: Cohort | None = None

    def draw(self, p: Patients, day: int, idx: np.ndarray, codes: list[str], hour: int = 8) -> dict[str, np.ndarray]:
        """Measure ``codes`` for patients ``idx`` on study day ``day``; returns the measured values.

        The noise of a draw depends only on (seed, day, hour, code, patient), not on who else was drawn
        or on which other days: a denser schedule sees the same values on the days both draw."""
        if not len(idx) or not codes:
            return {}
        when = dt.datetime.combine(date_of(day), dt.time(hour))
        parts, measured = [], {}
        for code in codes:
            key = [self.seed, day + 1000, hour, (LAB_CODES + EXAM_CODES).index(code)]
            x = measure(p, code, idx, np.random.default_rng(key).standard_normal(len(self.pids))[idx])
            measured[code] = x
            lo, hi = self.ranges.get(code, (None, None))
            parts.append(pl.DataFrame({
                "patient_id": self.pids[idx], "code": code, "value": x, "ref_low": lo, "ref_high": hi,
                "site": SITED.get(code)}, schema_overrides={"ref_low": pl.Float64, "ref_high": pl.Float64,
                                                            "site": pl.String}))
        frame = pl.concat(parts).with_columns(
            pl.concat_str([pl.col("patient_id"), pl.lit(f"-d{day}h{hour}-"), pl.col("code")]).alias("obs_id"),
            pl.lit(when).alias("time"), pl.lit(date_of(day)).alias("date"), pl.lit(True).alias("time_known"),
            pl.col("code").replace_strict(UNITS, default=None).alias("unit"),
            pl.col("value").alias("orig_value"), pl.lit(SOURCE).alias("source"))
        self.obs.append(frame.with_columns(pl.col("unit").alias("orig_unit")).pipe(
            lambda f: Cohort.conform(f, OBSERVATIONS_SCHEMA)))
        self._cache = None
        return measured

    def dose(self, day: int, idx: np.ndarray, drug: str, amount: np.ndarray, unit: str, status: str, hour: int = 9) -> None:
        if not len(idx):
            return
        when = dt.datetime.combine(date_of(day), dt.time(hour))
        frame = pl.DataFrame({"patient_id": self.pids[idx], "dose": np.asarray(amount, dtype=float)}).with_columns(
            pl.concat_str([pl.col("patient_id"), pl.lit(f"-d{day}-{drug}-{status}")]).alias("dose_id"),
            pl.lit(drug).alias("drug"), pl.lit(when).alias("time"), pl.lit(date_of(day)).alias("date"),
            pl.lit(True).alias("time_known"), pl.lit(unit).alias("dose_unit"), pl.lit("oral").alias("route"),
            pl.lit(status).alias("status"), pl.lit(SOURCE).alias("source"))
        self.doses.append(Cohort.conform(frame, DOSES_SCHEMA))
        self._cache = None

    def event(self, day: int, idx: np.ndarray, code: str, hour: int = 12) -> None:
        if not len(idx):
            return
        when = dt.datetime.combine(date_of(day), dt.time(hour))
        frame = pl.DataFrame({"patient_id": self.pids[idx]}).with_columns(
            pl.concat_str([pl.col("patient_id"), pl.lit(f"-d{day}-{code}")]).alias("event_id"),
            pl.lit(code).alias("code"), pl.lit(EVENT_TERMS[code]).alias("term"), pl.lit(when).alias("time"),
            pl.lit(date_of(day)).alias("date"), pl.lit(True).alias("time_known"), pl.lit(SOURCE).alias("source"))
        self.events.append(Cohort.conform(frame, EVENTS_SCHEMA))
        if code == "DEATH":
            for i in idx:
                self.deceased[int(i)] = date_of(day)
        self._cache = None

    def cohort(self) -> Cohort:
        """The whole record so far."""
        if self._cache is None:
            patients = self.patients.with_columns(pl.Series("deceased_date", self.deceased, dtype=pl.Date))
            self.obs = [pl.concat(self.obs)] if len(self.obs) > 1 else self.obs
            self.doses = [pl.concat(self.doses)] if len(self.doses) > 1 else self.doses
            self.events = [pl.concat(self.events)] if len(self.events) > 1 else self.events
            self._cache = Cohort(patients,
                                 self.obs[0] if self.obs else pl.DataFrame(schema=OBSERVATIONS_SCHEMA),
                                 self.doses[0] if self.doses else pl.DataFrame(schema=DOSES_SCHEMA),
                                 self.events[0] if self.events else pl.DataFrame(schema=EVENTS_SCHEMA))
        return self._cache

    def of(self, idx: np.ndarray) -> Cohort:
        """The record of patients ``idx`` only (what the monitor reads on a day they have new data)."""
        whole = self.cohort()
        if len(idx) == len(self.pids):
            return whole
        keep = pl.col("patient_id").is_in(self.pids[idx].tolist())
        return Cohort(whole.patients.filter(keep), whole.observations.filter(keep), whole.doses.filter(keep),
                      whole.events.filter(keep))




class NoRecord:
    """A recorder that keeps nothing: the model alone, without the clinic's record or the monitor
    (sensitivity analyses over many parameter values)."""

    def draw(self, *args, **kwargs) -> dict[str, np.ndarray]:
        return {}

    def dose(self, *args, **kwargs) -> None:
        return None

    def event(self, *args, **kwargs) -> None:
        return None
