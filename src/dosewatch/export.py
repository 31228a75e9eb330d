"""`dosewatch export`: the canonical record out again as FHIR, SDTM, graded ADLB, or AE datasets."""
from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from .errors import Problem
from .io import ReadOptions, read_any


def check_output(to: str, output: Path) -> None:
    """Refuse an output path the format cannot be written to before any work is done."""
    output = Path(output)
    if to in ("sdtm", "submission"):
        if output.exists() and not output.is_dir():
            raise ValueError(f"{output}: {to} writes a folder of datasets, and this is a file")
    elif to in ("adlb", "ae") and output.suffix.lower() not in (".csv", ".xpt"):
        raise ValueError(f"{output}: write {to} as .csv or .xpt")
    elif to in ("fhir", "fhir-ae") and output.suffix.lower() != ".json":
        raise ValueError(f"{output}: write {to} as .json")
    parent = output if to in ("sdtm", "submission") else output.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{output}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{output}: you may not write in {parent}")


def export_path(input: Path, to: str, output: Path, *, study_drug: str = "lenalidomide",
                criteria: str = "ctcae-5.0", tls_criteria: str = "cairo-bishop-2004",
                skip_invalid: bool = False, options: ReadOptions | None = None) -> list[Problem]:
    check_output(to, output)
    read = read_any(input, skip_invalid=skip_invalid, options=options)
    (Path(output) if to in ("sdtm", "submission") else Path(output).parent).mkdir(parents=True, exist_ok=True)
    cohort = read.cohort
    day1 = cohort.first_dose_dates(study_drug)
    if to == "fhir":
        from .io.fhir_write import cohort_to_bundle, write_json

        write_json(cohort_to_bundle(cohort), output)
    elif to == "sdtm":
        from .io.sdtm_write import write_sdtm

        write_sdtm(cohort, output)
    elif to == "adlb":
        write_adlb(cohort, day1, output, criteria)
    elif to == "submission":
        from .submission import build_package, study_of, write_package

        package = build_package(cohort, study_drug=study_drug, criteria=criteria, tls_criteria=tls_criteria)
        study = study_of(package)
        write_package(package, output, study_name=study, protocol_name=study,
                      description=f"{study}: {study_drug} (dosewatch export of {Path(input).name})")
    elif to in ("ae", "fhir-ae"):
        from .check import CheckSettings, check_cohort

        results = check_cohort(cohort, CheckSettings(study_drug=study_drug, tls_criteria=tls_criteria))
        events = [e for r in results for e in r.events if e.criteria != "reported"]
        if to == "ae":
            from .io.sdtm_write import ae_frame, write_frame

            write_frame(ae_frame(events, cohort, day1), output)
        else:
            from .io.fhir_write import adverse_events_bundle, write_json

            write_json(adverse_events_bundle(events, cohort), output)
    else:
        raise ValueError(f"unknown export format {to!r}")
    return read.problems


def write_adlb(cohort, day1, output: Path, criteria: str) -> None:
    """ADaM ADLB rows with ATOXGRL/ATOXGRH (``graded_adlb``) written as CSV or XPT."""
    from .io.sdtm_write import write_frame

    write_frame(graded_adlb(cohort, day1, criteria), output)


def graded_adlb(cohort, day1, criteria: str) -> pl.DataFrame:
    """ADaM ADLB rows (SDTM writer) with ATOXGRL/ATOXGRH from the grading engine, graded in the
    unit each value was reported in, joined on the observation id."""
    from .check import NOTHING_TO_GRADE, graded_labs
    from .io.sdtm_write import adlb_frame

    # Why a grade is empty where there was something to grade (no LLN/ULN, a unit the criteria do not grade):
    # ATOXRSNL / ATOXRSNH, as `dosewatch grade` writes it.
    why = lambda d: pl.when(~pl.col(f"reason_{d}").cast(pl.String).is_in(NOTHING_TO_GRADE)).then(  # noqa: E731
        pl.col(f"reason_{d}").cast(pl.String))
    grades = graded_labs(cohort.observations, day1, criteria).select(
        "obs_id",
        pl.col("term_low").alias("ATOXDSCL"),
        pl.col("term_high").alias("ATOXDSCH"),
        pl.col("grade_low").cast(pl.String).alias("ATOXGRL"),
        pl.col("grade_high").cast(pl.String).alias("ATOXGRH"),
        why("low").alias("ATOXRSNL"),
        why("high").alias("ATOXRSNH"),
    )
    return adlb_frame(cohort, day1).join(grades, on="obs_id", how="left")
