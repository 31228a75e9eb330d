"""Problems found in input, named by where they are and which field they concern."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where (file, row or resource) and what (field, message)."""

    source: str  # file name, with row or resource id: "LB.csv row 12", "bundle.json Observation/k-3"
    field: str  # the field or column: "LBORRESU", "valueQuantity.unit"
    message: str
    severity: str = "error"  # error | warning

    def __str__(self) -> str:
        return f"{self.source}: {self.field}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {"source": self.source, "field": self.field, "message": self.message, "severity": self.severity}


@dataclass
class InputError(Exception):
    """Raised when input cannot be read; carries every problem found, not only the first."""

    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        head = f"{len(self.problems)} problem(s) in the input"
        lines = [str(p) for p in self.problems[:50]]
        more = len(self.problems) - len(lines)
        if more > 0:
            lines.append(f"... and {more} more")
        return head + ":\n" + "\n".join("  " + line for line in lines)


class UnitError(ValueError):
    """A unit that is unknown, or that cannot be converted to the analyte's canonical unit."""
