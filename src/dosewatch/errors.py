"""Problems found in input, named by where they are and which field they concern.

Three severities (DESIGN.md, "scope is not validity"):

- ``error``: a record dosewatch would use but cannot trust (an impossible unit, an unparseable value,
  a missing date, a true duplicate, a malformed file); any error fails a strict read;
- ``warning``: an assumption dosewatch made to use a record (a partial date imputed, a ``<40``
  read with its comparator, placebo, a unit text guessed);
- ``notice``: something dosewatch does not use (a test code it does not grade, a resource type it
  does not read), counted, never an obstacle.

Problems are grouped for people (``group_problems``): one line per (severity, file, field, kind,
message) with a count and the first rows or resources, so that 1,828 rows of a test dosewatch does
not grade are one line, not 1,828.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple

SEVERITIES = ("error", "warning", "notice")
_ROW = re.compile(r"^(?P<file>.+?) (?:data )?row (?P<row>\d+)$")


class Problem(NamedTuple):
    """One thing found in the input: where (file, row or resource) and what (field, message).

    ``message`` says what is wrong in words that hold for every row of its group; ``detail`` holds
    this row's own particulars ("first at row 4", "'POSITIVE'"); ``kind`` is a short machine name of
    the check ("not-used", "unit", "duplicate", ...). A named tuple: an EHR export gives tens of
    thousands of notices, and a tuple is made several times faster than a frozen dataclass."""

    source: str  # file name, with row or resource id: "LB.csv row 12", "bundle.json Observation/k-3"
    field: str  # the field or column: "LBORRESU", "valueQuantity.unit"
    message: str
    severity: str = "error"  # error | warning | notice
    kind: str = ""
    detail: str = ""
    file: str = ""  # the file part of ``source`` when the reader knows it

    def __str__(self) -> str:
        text = f"{self.source}: {self.field}: {self.message}"
        return f"{text} ({self.detail})" if self.detail else text

    def location(self) -> tuple[str, int | None, str | None]:
        """(file, row, resource): the row of a dataset or the resource of a bundle, where known."""
        file = self.file
        if file and self.source.startswith(file + " "):
            rest = self.source[len(file) + 1:]
            m = re.fullmatch(r"(?:data )?row (\d+)", rest)
            return (file, int(m.group(1)), None) if m else (file, None, rest)
        if file:
            return file, None, None
        m = _ROW.match(self.source)
        if m:
            return m.group("file"), int(m.group("row")), None
        return self.source, None, None

    def as_dict(self) -> dict[str, str]:
        out = {"source": self.source, "field": self.field, "message": self.message, "severity": self.severity}
        if self.kind:
            out["code"] = self.kind
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass
class ProblemGroup:
    """Problems alike but for where they are: one line of a report."""

    severity: str
    file: str
    field: str
    kind: str
    message: str
    count: int = 0
    rows: list[int] = field(default_factory=list)  # the first rows (datasets)
    resources: list[str] = field(default_factory=list)  # the first resources (bundles)
    details: list[str] = field(default_factory=list)  # the first rows' particulars

    def as_dict(self) -> dict:
        out: dict = {"severity": self.severity, "file": self.file}
        if self.rows:
            out["row"] = self.rows[0]
        elif self.resources:
            out["resource"] = self.resources[0]
        out.update(field=self.field, code=self.kind, message=self.message, count=self.count)
        if self.rows:
            out["rows"] = self.rows
        if self.resources:
            out["resources"] = self.resources
        if self.details:
            out["details"] = self.details
        return out

    def where(self) -> str:
        """'12 rows: 3, 7, 9, ...' / 'Observation/a, Observation/b' for a text report."""
        shown = [str(r) for r in self.rows] or self.resources
        more = ", ..." if self.count > len(shown) else ""
        if not shown:
            return ""
        noun = "row" if self.rows else "resource"
        head = f"{self.count:,} {noun}s: " if self.count > 1 else f"{noun} "
        return head + ", ".join(shown) + more


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


def group_problems(problems: list[Problem], keep: int = 5) -> list[ProblemGroup]:
    """Group problems by (severity, file, field, kind, message), most severe first; each group keeps
    its count and its first ``keep`` rows or resources. No problem is lost: the counts add up."""
    groups: dict[tuple, ProblemGroup] = {}
    for p in problems:
        file, row, resource = p.location()
        key = (p.severity, file, p.field, p.kind, p.message)
        group = groups.get(key)
        if group is None:
            group = groups[key] = ProblemGroup(p.severity, file, p.field, p.kind, p.message)
        group.count += 1
        if group.count <= keep:
            if row is not None:
                group.rows.append(row)
            elif resource is not None:
                group.resources.append(resource)
        if p.detail and len(group.details) < keep and p.detail not in group.details:
            group.details.append(p.detail)  # the first distinct particulars
    return sorted(groups.values(), key=lambda g: (severity_rank(g.severity), g.file, g.field, g.kind, g.message))


def counts(problems: list[Problem]) -> dict[str, int]:
    out = dict.fromkeys(SEVERITIES, 0)
    for p in problems:
        out[p.severity] = out.get(p.severity, 0) + 1
    return out


@dataclass
class InputError(Exception):
    """Raised when input cannot be read; carries every problem found, not only the first."""

    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        errors = [p for p in self.problems if p.severity == "error"] or self.problems
        head = f"{len(errors)} problem(s) in the input"
        if len(errors) <= 50:
            return head + ":\n" + "\n".join("  " + str(p) for p in errors)
        groups = group_problems(errors)
        lines = []
        for g in groups[:50]:
            where = g.where()
            lines.append(f"{g.file}: {g.field}: {g.message}" + (f" [{where}]" if where else "")
                         + (f" ({'; '.join(g.details)})" if g.details and g.count == 1 else ""))
        more = len(groups) - len(lines)
        if more > 0:
            lines.append(f"... and {more} more kinds of problem")
        return head + ":\n" + "\n".join("  " + line for line in lines)


class UnitError(ValueError):
    """A unit that is unknown, or that cannot be converted to the analyte's canonical unit."""


def report_text(problems: list[Problem], keep: int = 5) -> list[str]:
    """A data manager's report: the counts, then one entry per group, most severe first, each with the
    file, field and kind, how many rows or resources and the first of them, and the message."""
    c = counts(problems)
    lines = [", ".join(f"{c[s]:,} {s}{'s' if c[s] != 1 else ''}" for s in SEVERITIES)]
    severity = None
    for g in group_problems(problems, keep):
        if g.severity != severity:
            severity = g.severity
            lines += ["", f"{severity}s".upper()]
        lines.append(f"  {g.file}  {g.field}  [{g.kind or '-'}]  {g.where() or '1'}")
        lines.append(f"      {g.message}")
        if g.details:
            lines.append(f"      e.g. {'; '.join(g.details[:3])}")
    return lines


def summary_text(problems: list[Problem], limit: int = 8) -> list[str]:
    """A few lines on what a read did not use or assumed (for ``check`` on stderr): per severity, file,
    field and kind, the rows and the number of distinct messages."""
    totals: dict[tuple, list] = {}
    for g in group_problems(problems, keep=0):
        key = (g.severity, g.file, g.field, g.kind)
        t = totals.setdefault(key, [0, 0, g.message])
        t[0] += g.count
        t[1] += 1
    rows = sorted(totals.items(), key=lambda kv: (severity_rank(kv[0][0]), -kv[1][0]))
    lines = []
    for (sev, file, fld, kind), (n, kinds, example) in rows[:limit]:
        what = example if kinds == 1 else f"{kinds} different, e.g. {example}"
        lines.append(f"  {sev}: {n:,} in {file} {fld} [{kind or '-'}]: {what}")
    if len(rows) > limit:
        lines.append(f"  ... and {len(rows) - limit} more")
    return lines
