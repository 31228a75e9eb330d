"""Reading any input: a FHIR R4 Bundle file or a folder of SDTM datasets, with a site's options
(local codes, which FHIR resources are doses, normal ranges), under the all-or-nothing rule."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, Problem
from ..record import Cohort


@dataclass
class ReadResult:
    """What a reader returns: the records it accepted and every problem it found."""

    cohort: Cohort
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


@dataclass(frozen=True)
class ReadOptions:
    """How a site's data are read: its own codes (``analytes.load_local_codes``), the FHIR resources
    read as doses (administration, request, statement), its normal ranges (``ranges.load_ranges``)."""

    codes: Path | None = None
    doses_from: tuple[str, ...] = ("administration",)
    ranges: Path | None = None


def unreadable(problems: list[Problem]) -> list[Problem]:
    """The errors that leave a whole file unread (malformed, empty, a duplicate or missing required
    column, no DM): skipping invalid records cannot apply to them, as their rows are not named."""
    return [p for p in problems if p.severity == "error" and (p.kind in ("file", "column")
                                                              or p.field in ("(file)", "(folder)"))]


def finish(result: ReadResult, *, skip_invalid: bool, collect: bool) -> ReadResult:
    """Apply the all-or-nothing rule: any error fails the whole read unless the caller asked to
    skip invalid records (they are then reported, never silently dropped) or only to collect problems.
    A file that cannot be read at all fails the read even when skipping: its rows would go unnamed."""
    if result.errors and not collect and (not skip_invalid or unreadable(result.problems)):
        raise InputError(result.errors)
    return result


def read_any(path: str | Path, *, skip_invalid: bool = False, collect: bool = False,
             options: ReadOptions | None = None) -> ReadResult:
    """Read a FHIR R4 Bundle file (.json) or a folder of SDTM datasets (.csv / .xpt)."""
    options = options or ReadOptions()
    path = Path(path)
    if not path.exists():
        raise InputError([Problem(str(path), "path", "no such file or folder", kind="file")])
    cat = None
    if options.codes is not None:
        from ..analytes import catalog, load_local_codes

        cat = catalog().with_local_codes(load_local_codes(options.codes))
    ranges = None
    if options.ranges is not None:
        from ..ranges import load_ranges

        ranges = load_ranges(options.ranges)  # a bad ranges file stops before any reading
    if path.is_dir():
        from .sdtm import read_sdtm

        result = read_sdtm(path, skip_invalid=skip_invalid, collect=collect, cat=cat)
    else:
        from .fhir import read_fhir

        result = read_fhir(path, skip_invalid=skip_invalid, collect=collect, cat=cat, doses_from=options.doses_from)
    if ranges is not None:
        from ..ranges import apply_ranges

        result = ReadResult(apply_ranges(result.cohort, ranges), result.problems)
    return result
