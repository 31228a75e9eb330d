"""`dosewatch export`: the canonical record out again as FHIR, SDTM, graded ADLB, or AE datasets."""
from __future__ import annotations

from pathlib import Path

import polars as pl

from .errors import Problem
from .io import read_any


def export_path(input: Path, to: str, output: Path, *, study_drug: str = "lenalidomide",
                criteria: str = "ctcae-5.0", tls_criteria: str = "cairo-bishop-2004",
                skip_invalid: bool = False) -> list[Problem]:
    read = read_any(input, skip_invalid=skip_invalid)
    cohort = read.cohort
    day1 = cohort.first_dose_dates(study_drug)
    if to == "fhir":
        from .io.fhir import cohort_to_bundle, write_json

        write_json(cohort_to_bundle(cohort), output)
    elif to == "sdtm":
        from .io.sdtm import write_sdtm

        write_sdtm(cohort, output)
    elif to == "adlb":
        write_adlb(cohort, day1, output, criteria)
    elif to in ("ae", "fhir-ae"):
        from .check import CheckSettings, check_cohort

        results = check_cohort(cohort, CheckSettings(study_drug=study_drug, tls_criteria=tls_criteria))
        events = [e for r in results for e in r.events if e.criteria != "reported"]
        if to == "ae":
            from .io.sdtm import ae_frame, write_frame

            write_frame(ae_frame(events, cohort, day1), output)
        else:
            from .io.fhir import adverse_events_bundle, write_json

            write_json(adverse_events_bundle(events, cohort), output)
    else:
        raise ValueError(f"unknown export format {to!r}")
    return read.problems


def write_adlb(cohort, day1, output: Path, criteria: str) -> None:
    """ADaM ADLB rows (SDTM writer) with ATOXGRL/ATOXGRH from the grading engine, graded in the
    unit each value was reported in, joined on the observation id."""
    from .check import graded_labs
    from .io.sdtm import adlb_frame, write_frame

    grades = graded_labs(cohort.observations, day1, criteria).select(
        "obs_id",
        pl.col("term_low").alias("ATOXDSCL"),
        pl.col("term_high").alias("ATOXDSCH"),
        pl.col("grade_low").cast(pl.String).alias("ATOXGRL"),
        pl.col("grade_high").cast(pl.String).alias("ATOXGRH"),
    )
    adlb = adlb_frame(cohort, day1).join(grades, on="obs_id", how="left")
    write_frame(adlb, output)
