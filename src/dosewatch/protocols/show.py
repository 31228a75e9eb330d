"""`dosewatch protocol show`: a protocol's calendar as a Rich table."""
from __future__ import annotations

import datetime as dt

import polars as pl

from .model import Protocol
from .schedule import expand


def print_calendar(protocol: Protocol, day1: dt.date, cycles: int = 2) -> None:
    from rich.console import Console
    from rich.table import Table

    n_days = cycles * protocol.study_drug.cycle_days
    doses, assessments = expand(protocol, day1, n_days)
    console = Console()
    console.print(f"[bold]{protocol.id}[/bold] v{protocol.version}: {protocol.title}")
    table = Table(show_lines=False)
    for col in ("day", "date", "cycle/day", protocol.study_drug.drug, "prophylaxis", "assessments"):
        table.add_column(col, overflow="fold")
    by_day_doses = doses.group_by("study_day").agg(pl.all())
    by_day_assess = assessments.group_by("study_day").agg(pl.col("assessment").unique(maintain_order=True))
    assess = dict(zip(by_day_assess["study_day"], by_day_assess["assessment"], strict=True))
    for row in by_day_doses.sort("study_day").iter_rows(named=True):
        day = row["study_day"]
        study = [(d, s, lv) for d, r, s, lv in zip(row["dose"], row["role"], row["state"], row["level"], strict=True) if r == "study"]
        other = [f"{drug} {dose:g} {unit}" for drug, r, dose, unit in zip(row["drug"], row["role"], row["dose"], row["unit"], strict=True) if r != "study"]
        drug_cell = ""
        if study:
            dose, state, level = study[0]
            drug_cell = f"{dose:g} {protocol.study_drug.unit} (level {level})" if dose else state
        cycle_cell = f"C{row['cycle'][0]}D{row['cycle_day'][0]}" if row["cycle"][0] else "before"
        table.add_row(str(day), row["date"][0].isoformat(), cycle_cell, drug_cell, ", ".join(other),
                      ", ".join(assess.get(day, [])))
    console.print(table)
    console.print("Sources:")
    for key, text in protocol.sources.items():
        console.print(f"  [bold]{key}[/bold]: {text}")
