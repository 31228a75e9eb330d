"""`dosewatch check --protocol`: the monitor's assessments as JSON or as tables."""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Problem
from ..io import ReadOptions, read_any
from ..protocols import load_protocol
from ..protocols.loading import checked
from . import Assessment, evaluate


@dataclass
class MonitorResult:
    assessments: list[Assessment]
    problems: list[Problem] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps([a.as_dict() for a in self.assessments], indent=2)


def monitor_path(path: str | Path, protocol: str, *, as_of: dt.date | None = None, tls_criteria: str | None = None,
                 ctcae: str | None = None, cytopenias: str | None = None, skip_invalid: bool = False,
                 options: ReadOptions | None = None) -> MonitorResult:
    proto = load_protocol(protocol)
    overrides = {k: v for k, v in (("tls", tls_criteria), ("ctcae", ctcae), ("cytopenias", cytopenias)) if v}
    if overrides:  # validated as the protocol file is
        surveillance = type(proto.surveillance).model_validate({**proto.surveillance.model_dump(), **overrides})
        # checked again: a trigger naming iwcll-2018 never fires once cytopenias are graded by CTCAE
        proto = checked(proto.model_copy(update={"surveillance": surveillance}), f"{protocol} with {overrides}")
    read = read_any(path, skip_invalid=skip_invalid, options=options)
    return MonitorResult(evaluate(read.cohort, proto, as_of), read.problems)


def print_assessments(result: MonitorResult) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    colour = {"critical": "bold red", "urgent": "red", "warning": "yellow", "info": "dim"}
    for a in result.assessments:
        d = a.as_dict()
        console.rule(f"[bold]{a.patient_id}[/bold]  day {d['study_day']}  state: {a.state}  DLT: {a.dlt.get('status')}")
        table = Table(show_header=True)
        for col in ("day", "severity", "alert", "rule"):
            table.add_column(col, overflow="fold")
        for alert in a.alerts:
            if alert.severity == "info":
                continue
            table.add_row(str(alert.study_day), f"[{colour[alert.severity]}]{alert.severity}[/]", alert.message, alert.rule)
        console.print(table)
        for act in a.dose_actions:
            dose = f" {act.dose:g} mg" if act.dose else ""
            console.print(f"  day {act.study_day}: [bold]{act.action}[/bold] {act.drug}{dose} (level {act.level}) "
                          f"- {act.reason} [{act.rule}]")
