"""The ``dosewatch`` command. Heavy modules are imported inside each command so that
``dosewatch --help`` starts fast."""
from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    name="dosewatch",
    help="Start dangerous cancer drugs safely: grade labs, detect TLS, tumor flare and cytopenias, cite the rule.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Criteria(str, Enum):
    ctcae_5 = "ctcae-5.0"
    ctcae_4 = "ctcae-4.03"
    ctcae_6 = "ctcae-6.0"
    iwcll = "iwcll-2018"


# the CTCAE versions alone (check --criteria); --cytopenias takes any of Criteria
Ctcae = Enum("Ctcae", {m.name: m.value for m in Criteria if m.value.startswith("ctcae-")}, type=str)


class Reading(str, Enum):
    auto = "auto"
    literal = "literal"
    admiral = "admiral"


class OutputFormat(str, Enum):
    json = "json"
    table = "table"


class TlsCriteria(str, Enum):
    cairo_bishop = "cairo-bishop-2004"
    howard = "howard-2011"


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(code=2)


CodesOption = Annotated[Optional[Path], typer.Option(
    "--codes", help="A site's code map: CSV with system,code,analyte (FHIR code system URI, or SDTM:LB for a "
    "--TESTCD; a dosewatch analyte code), read beside the shipped LOINC and CDISC codes")]
DosesFromOption = Annotated[str, typer.Option(
    "--doses-from", help="FHIR resources read as doses, comma-separated: administration (the default), request "
    "(MedicationRequest), statement (MedicationStatement); the last two are assumptions, marked by their source")]
RangesOption = Annotated[Optional[Path], typer.Option(
    "--ranges", help="A site's normal ranges for values the source sends none for: CSV with "
    "code,sex,age_low,age_high,unit,low,high,source")]


def _read_options(codes: Path | None, doses_from: str, ranges: Path | None = None):
    from .io import ReadOptions
    from .io.fhir import DOSE_RESOURCES

    kinds = tuple(dict.fromkeys(k.strip().lower() for k in doses_from.split(",") if k.strip()))
    unknown = [k for k in kinds if k not in DOSE_RESOURCES]
    if unknown or not kinds:
        raise typer.BadParameter(f"{', '.join(unknown) or 'nothing'}: use administration, request or statement",
                                 param_hint="--doses-from")
    return ReadOptions(codes=codes, doses_from=kinds, ranges=ranges)


def _report_unused(problems) -> None:
    """On stderr: errors left out (only with --skip-invalid), and a short summary of what was not used."""
    from .errors import counts, summary_text

    if not problems:
        return
    c = counts(problems)
    typer.echo(f"read with {c['error']:,} errors left out, {c['warning']:,} warnings, {c['notice']:,} notices "
               "(dosewatch validate INPUT lists them):", err=True)
    for line in summary_text(problems):
        typer.echo(line, err=True)


@app.command()
def grade(
    input: Annotated[Path, typer.Argument(help="ADLB-style CSV: USUBJID, PARAMCD or LBTESTCD, AVAL, AVALU, ANRLO, ANRHI, BASE, ADT or ADY")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the graded CSV")],
    criteria: Annotated[Criteria, typer.Option(help="Grading criteria")] = Criteria.ctcae_5,
    reading: Annotated[
        Reading,
        typer.Option(
            help="literal: grade from the numbers, in the unit reported; admiral: pharmaverse admiral's "
            "worst-case reading and unit check; auto: admiral when the file carries ATOXDSCL/ATOXDSCH, else literal"
        ),
    ] = Reading.auto,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Report invalid rows and grade the rest")] = False,
) -> None:
    """Add ATOXGRL / ATOXGRH (grade in the low and high direction) to an ADLB file."""
    from .errors import InputError
    from .io.adlb import grade_file

    try:
        report = grade_file(input, output, criteria=criteria.value, reading=reading.value, skip_invalid=skip_invalid)
    except (InputError, OSError, ValueError) as exc:
        _fail(exc)
    for problem in report.problems:
        typer.echo(f"skipped: {problem}", err=True)
    typer.echo(f"graded {report.rows} rows with {criteria.value} -> {output}", err=True)


@app.command()
def check(
    input: Annotated[Path, typer.Argument(help="A FHIR R4 Bundle (.json) or a folder of SDTM datasets (CSV or XPT)")],
    study_drug: Annotated[str, typer.Option(help="Study drug: its first dose is study day 1")] = "lenalidomide",
    protocol: Annotated[Optional[str], typer.Option(help="A built-in protocol id or a protocol YAML file: adds "
                                                   "alerts, dose actions, DLT status and state")] = None,
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="Evaluate as of the end of this date (YYYY-MM-DD); "
                                                 "later records are ignored")] = None,
    format: Annotated[OutputFormat, typer.Option("--format", help="json or table")] = OutputFormat.table,
    tls: Annotated[Optional[TlsCriteria], typer.Option(help="Tumor lysis syndrome definition (default: the "
                                                       "protocol's, else cairo-bishop-2004)")] = None,
    criteria: Annotated[Optional[Ctcae], typer.Option(help="CTCAE version for lab terms (default: the "
                                                      "protocol's, else ctcae-5.0)")] = None,
    cytopenias: Annotated[Optional[Criteria], typer.Option(help="iwcll-2018 or a CTCAE version for ANC, platelets, "
                                                             "Hb (default: the protocol's, else the CTCAE version)")] = None,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Report invalid records and check the rest")] = False,
    ranges: RangesOption = None,
    codes: CodesOption = None,
    doses_from: DosesFromOption = "administration",
) -> None:
    """Grade and detect toxicities in patients' records; print the events with their evidence and, with a
    protocol, the alerts, dose actions, DLT status and state it gives. Runs whenever the input has no
    error; what it did not use is summarised on stderr."""
    import datetime as dt

    from .check import check_path, print_table
    from .errors import InputError

    options = _read_options(codes, doses_from, ranges)
    try:
        when = dt.date.fromisoformat(as_of) if as_of else None
        if protocol:
            from .monitor.report import monitor_path, print_assessments

            result = monitor_path(input, protocol, as_of=when, tls_criteria=tls.value if tls else None,
                                  ctcae=criteria.value if criteria else None,
                                  cytopenias=cytopenias.value if cytopenias else None, skip_invalid=skip_invalid,
                                  options=options)
        else:
            ctcae = criteria.value if criteria else "ctcae-5.0"
            result = check_path(input, study_drug=study_drug, tls_criteria=tls.value if tls else "cairo-bishop-2004",
                                ctcae=ctcae, cytopenias=cytopenias.value if cytopenias else ctcae,
                                skip_invalid=skip_invalid, as_of=when, options=options)
    except (InputError, OSError, ValueError) as exc:
        _fail(exc)
    _report_unused(result.problems)
    if format is OutputFormat.json:
        sys.stdout.write(result.to_json() + "\n")
    elif protocol:
        print_assessments(result)
    else:
        print_table(result)


class ExportFormat(str, Enum):
    fhir = "fhir"
    sdtm = "sdtm"
    adlb = "adlb"
    ae = "ae"
    fhir_ae = "fhir-ae"
    submission = "submission"


@app.command()
def export(
    input: Annotated[Path, typer.Argument(help="A FHIR R4 Bundle (.json) or a folder of SDTM datasets")],
    to: Annotated[ExportFormat, typer.Option("--to", help="fhir: Bundle; sdtm: folder of datasets; adlb: graded "
                                             "ADaM ADLB; ae: SDTM AE of detected events; fhir-ae: AdverseEvent Bundle; "
                                             "submission: SDTM + ADaM as Dataset-JSON v1.1 with Define-XML 2.1 and XPT")],
    output: Annotated[Path, typer.Option("--output", "-o", help="File (or folder for sdtm, submission) to write")],
    study_drug: Annotated[str, typer.Option(help="Study drug: its first dose is study day 1")] = "lenalidomide",
    criteria: Annotated[Criteria, typer.Option(help="Grading criteria for adlb")] = Criteria.ctcae_5,
    tls: Annotated[TlsCriteria, typer.Option(help="Tumor lysis syndrome definition for ae / fhir-ae")] = TlsCriteria.cairo_bishop,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Report invalid records and export the rest")] = False,
    ranges: RangesOption = None,
    codes: CodesOption = None,
    doses_from: DosesFromOption = "administration",
) -> None:
    """Write records as FHIR or SDTM, labs as graded ADLB, detected events as SDTM AE / FHIR AdverseEvent,
    or a submission package (Dataset-JSON v1.1, Define-XML 2.1, XPT)."""
    from .errors import InputError
    from .export import check_output, export_path

    options = _read_options(codes, doses_from, ranges)
    try:
        check_output(to.value, output)
        problems = export_path(input, to.value, output, study_drug=study_drug.lower(), criteria=criteria.value,
                               tls_criteria=tls.value, skip_invalid=skip_invalid, options=options)
    except (InputError, OSError, ValueError) as exc:
        _fail(exc)
    _report_unused(problems)
    typer.echo(f"wrote {output}", err=True)


class ReportFormat(str, Enum):
    text = "text"
    json = "json"


@app.command()
def validate(
    input: Annotated[Path, typer.Argument(help="A FHIR R4 Bundle (.json) or a folder of SDTM datasets")],
    format: Annotated[ReportFormat, typer.Option("--format", help="text (a report) or json")] = ReportFormat.text,
    codes: CodesOption = None,
    doses_from: DosesFromOption = "administration",
) -> None:
    """Report every problem in the input, grouped: errors (records dosewatch would use but cannot trust),
    warnings (assumptions it made), notices (what it does not use), each with file, field, how many rows
    or resources and the first of them. Exit 1 if there is an error, else 0."""
    import json

    from .errors import InputError, counts, group_problems, report_text
    from .io import read_any

    try:
        problems = read_any(input, collect=True, options=_read_options(codes, doses_from)).problems
    except (InputError, OSError, ValueError) as exc:  # an unreadable code map or path
        _fail(exc)
    if format is ReportFormat.json:
        sys.stdout.write(json.dumps({"problems": [g.as_dict() for g in group_problems(problems, keep=20)],
                                     "counts": counts(problems)}, indent=1) + "\n")
    elif problems:
        typer.echo(f"{input}: " + "\n".join(report_text(problems)))
    else:
        typer.echo(f"{input}: no problems found")
    if counts(problems)["error"]:
        raise typer.Exit(code=1)


@app.command()
def demo(
    out: Annotated[Optional[Path], typer.Option(help="Folder for the demo's outputs")] = None,
) -> None:
    """Run the seed abstract's patients through dosewatch and show what it flags, day by day."""
    from .demo import run_demo

    run_demo(out)


from .escalation.cli import design_app  # noqa: E402  (light: heavy imports happen inside its commands)

app.add_typer(design_app, name="design")

from .escalation.cohort_cli import cohort_app  # noqa: E402

app.add_typer(cohort_app, name="cohort")

from .review.cli import report_app  # noqa: E402  (light: heavy imports happen inside its command)

app.add_typer(report_app, name="report")

from .insilico.cli import insilico_app  # noqa: E402  (light: heavy imports happen inside its command)

app.add_typer(insilico_app, name="insilico")

protocol_app = typer.Typer(help="Protocols as data: show a protocol's calendar, validate a protocol file.", no_args_is_help=True)
app.add_typer(protocol_app, name="protocol")


@protocol_app.command("show")
def protocol_show(
    protocol: Annotated[str, typer.Argument(help="A built-in protocol id or a protocol YAML file")],
    cycles: Annotated[int, typer.Option(help="How many cycles to print")] = 2,
    start: Annotated[Optional[str], typer.Option(help="Day 1 as YYYY-MM-DD (default: today)")] = None,
) -> None:
    """Print a protocol's calendar for the first cycles: study drug, prophylaxis, assessments per day."""
    import datetime as dt

    from .errors import InputError
    from .protocols import load_protocol
    from .protocols.show import print_calendar

    try:
        proto = load_protocol(protocol)
        day1 = dt.date.fromisoformat(start) if start else dt.date.today()
    except (InputError, ValueError) as exc:
        _fail(exc)
    print_calendar(proto, day1, cycles)


@protocol_app.command("validate")
def protocol_validate(
    file: Annotated[Path, typer.Argument(help="A protocol YAML file")],
) -> None:
    """Check a protocol file; every problem names its field. Exit 1 if any."""
    from .errors import InputError
    from .protocols import load_protocol

    try:
        proto = load_protocol(file)
    except InputError as exc:
        for p in exc.problems:
            typer.echo(str(p))
        raise typer.Exit(code=1)
    typer.echo(f"{file}: valid protocol {proto.id} version {proto.version}")


@protocol_app.command("schema")
def protocol_schema() -> None:
    """Print the protocol file's JSON schema."""
    import json

    from .protocols import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


from .server_cli import audit_app, db_app, notify_app, serve, sites_app, trials_app, users_app  # noqa: E402

app.command()(serve)
app.add_typer(db_app, name="db")
app.add_typer(sites_app, name="sites")
app.add_typer(users_app, name="users")
app.add_typer(trials_app, name="trials")
app.add_typer(audit_app, name="audit")
app.add_typer(notify_app, name="notify")


def main() -> None:
    try:
        app()
    except Exception as error:  # a database the server commands cannot open: one line, no traceback
        db = sys.modules.get("dosewatch.store.db")
        if db is None or not isinstance(error, db.DatabaseUnavailable):
            raise
        typer.echo(f"error: {error}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
