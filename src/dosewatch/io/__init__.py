"""Readers and writers. Everything after io/ works on the canonical Cohort in canonical units."""
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


def finish(result: ReadResult, *, skip_invalid: bool, collect: bool) -> ReadResult:
    """Apply the all-or-nothing rule: any error fails the whole read unless the caller asked to
    skip invalid records (they are then reported, never silently dropped) or only to collect problems."""
    if result.errors and not (skip_invalid or collect):
        raise InputError(result.errors)
    return result


def read_any(path: str | Path, *, skip_invalid: bool = False, collect: bool = False) -> ReadResult:
    """Read a FHIR R4 Bundle file (.json) or a folder of SDTM datasets (.csv / .xpt)."""
    path = Path(path)
    if not path.exists():
        raise InputError([Problem(str(path), "path", "no such file or folder")])
    if path.is_dir():
        from .sdtm import read_sdtm

        return read_sdtm(path, skip_invalid=skip_invalid, collect=collect)
    from .fhir import read_fhir

    return read_fhir(path, skip_invalid=skip_invalid, collect=collect)
