"""`dosewatch demo`: the seed abstract's four patients, day by day, as the monitor would have seen them.

For every study day the monitor is run on what was known at the end of that day (``as_of``), so
each alert and dose action is shown on the first day the data supported it. Writes a timeline
picture per patient (PNG) and an HTML report.
"""
from __future__ import annotations

import base64
import datetime as dt
import html
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import polars as pl

from .io import read_any
from .monitor import Alert, Assessment, DoseAction, evaluate
from .protocols import builtin
from .protocols.model import Protocol
from .record import Cohort, study_day, study_day_expr

SEED_BUNDLE = "data/seed/seed-patients.json"
PROTOCOL = "lenalidomide-cll-25mg-2007"

# What the abstract reports, per patient, to set beside what dosewatch flags.
ABSTRACT = {
    "seed-1": "Omitted steroid prophylaxis on day 3; worsening lymphocytosis, node enlargement, acute renal failure "
              "with laboratory TLS; mechanical ventilation; died of hypoxemic respiratory failure on day 10.",
    "seed-2": "Did well, then on day 25 of course 1 gram-negative sepsis with neutropenia; recovered; progressed "
              "and went off study.",
    "seed-3": "Asymptomatic until day 8 (steroid taper): severe abdominal and back pain, rash, low-grade fever "
              "(tumor flare); resolved with cessation; flared again after each dose reduction.",
    "seed-4": "Did well through the taper; on day 25, in the off week, dramatic cervical and supraclavicular node "
              "enlargement and tonsillar hypertrophy obstructing the airway; lenalidomide discontinued.",
}

KEY_LABS = [  # (code, label, unit as printed, thresholds to draw: (value in canonical unit, label))
    ("K", "Potassium (mmol/L)", [(6.0, "Cairo-Bishop 6.0")]),
    ("CREAT", "Creatinine (umol/L)", []),
    ("URATE", "Uric acid (umol/L)", [(476, "Cairo-Bishop 476")]),
    ("PHOS", "Phosphate (mmol/L)", [(1.45, "Cairo-Bishop 1.45")]),
    ("NEUT", "ANC (10^9/L)", [(1.0, "grade 3 <1.0"), (0.5, "grade 4 <0.5")]),
    ("LYM", "ALC (10^9/L)", []),
    ("LNDIAM", "Largest node (cm)", []),
    ("TEMP", "Temperature (C)", [(38.0, "38.0"), (38.3, "38.3")]),
]


def seed_bundle_path() -> Path:
    """The shipped synthetic FHIR Bundle of the four seed patients (see dosewatch.seed)."""
    return Path(str(resources.files("dosewatch").joinpath(SEED_BUNDLE)))


@dataclass
class DayRow:
    day: int
    date: dt.date
    study_drug: str
    prophylaxis: str
    labs: str
    alerts: list[Alert] = field(default_factory=list)
    actions: list[DoseAction] = field(default_factory=list)


@dataclass
class Timeline:
    patient_id: str
    day1: dt.date
    rows: list[DayRow]
    final: Assessment


def timeline(record: Cohort, protocol: Protocol) -> Timeline:
    """Run the monitor as of each day of one patient's record; keep what is new each day."""
    pid = record.patient_ids[0]
    day1 = record.first_dose_dates(protocol.study_drug.drug)[pid]
    last = max(t["date"].max() for t in (record.observations, record.doses, record.events) if t.height)
    deceased = record.patients["deceased_date"][0]
    if deceased:
        last = max(last, deceased)
    seen_alerts: set = set()
    seen_actions: set = set()
    rows = []
    final = None
    date = day1
    while date <= last:
        final = evaluate(record, protocol, as_of=date)[0]
        new_alerts = [a for a in final.alerts if _alert_key(a) not in seen_alerts and a.severity != "info"]
        new_actions = [a for a in final.dose_actions if _action_key(a) not in seen_actions]
        seen_alerts |= {_alert_key(a) for a in final.alerts}
        seen_actions |= {_action_key(a) for a in final.dose_actions}
        rows.append(DayRow(study_day(date, day1), date, *_given(record, protocol, date), _labs(record, date),
                           new_alerts, new_actions))
        date += dt.timedelta(days=1)
    return Timeline(pid, day1, rows, final)


def _short(message: str) -> str:
    """The alert's finding without the protocol's advice (the HTML report keeps the whole text)."""
    head = message.split(": ")[0] if "): " in message else message
    return head.split(". Note")[0]


def _alert_key(a: Alert) -> tuple:
    return (a.rule, a.date, a.message.split("(")[0])


def _action_key(a: DoseAction) -> tuple:
    return (a.rule, a.study_day, a.action)


def _given(record: Cohort, protocol: Protocol, date: dt.date) -> tuple[str, str]:
    today = record.doses.filter(pl.col("date") == date)
    study, other = [], []
    for drug, dose, unit, status in today.select("drug", "dose", "dose_unit", "status").iter_rows():
        text = f"{drug} {dose:g} {unit}" + (" NOT TAKEN" if status != "completed" else "")
        (study if drug == protocol.study_drug.drug else other).append(text if drug != protocol.study_drug.drug
                                                                       else f"{dose:g} {unit}")
    return ", ".join(study) or "-", ", ".join(o for o in other if not o.startswith("allopurinol")) or "-"


def _labs(record: Cohort, date: dt.date) -> str:
    obs = record.observations.filter(pl.col("date") == date)
    out = []
    for code, fmt in (("K", "K {:.1f}"), ("CREAT", "Cr {:.0f}"), ("URATE", "UA {:.0f}"), ("NEUT", "ANC {:.2f}"),
                      ("LYM", "ALC {:.0f}"), ("TEMP", "T {:.1f}")):
        v = obs.filter(pl.col("code") == code)["value"]
        if v.len():
            out.append(fmt.format(v.max() if code != "NEUT" else v.min()))
    node = obs.filter(pl.col("code") == "LNDIAM")["value"]
    if node.len():
        out.append(f"node {node.max():.1f}")
    return " ".join(out)


def plot_timeline(record: Cohort, protocol: Protocol, tl: Timeline, path: Path) -> Path:
    """Doses and prophylaxis as bars, key labs against their thresholds, alerts marked on their day."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    day = study_day_expr("date", "day1").alias("day")
    obs = record.observations.with_columns(pl.lit(tl.day1).alias("day1")).with_columns(day)
    panels = [(c, label, th) for c, label, th in KEY_LABS if obs.filter(pl.col("code") == c).height]
    fig, axes = plt.subplots(len(panels) + 1, 1, figsize=(11, 1.6 * (len(panels) + 1) + 0.6), sharex=True)
    ax = axes[0]
    doses = record.doses.with_columns(pl.lit(tl.day1).alias("day1")).with_columns(day)
    lanes = [protocol.study_drug.drug] + sorted(set(doses["drug"].to_list()) - {protocol.study_drug.drug})
    for i, drug in enumerate(lanes):
        d = doses.filter(pl.col("drug") == drug)
        done = d.filter(pl.col("status") == "completed")
        missed = d.filter(pl.col("status") != "completed")
        ax.bar(done["day"].to_list(), [0.8] * done.height, bottom=i, width=0.9, color="#2b6cb0" if i == 0 else "#718096")
        ax.scatter(missed["day"].to_list(), [i + 0.4] * missed.height, marker="x", color="#c53030", s=40, zorder=3)
    ax.set_yticks([i + 0.4 for i in range(len(lanes))], lanes, fontsize=8)
    ax.set_title(f"{tl.patient_id}: doses (x = not taken), key labs and alerts by study day", fontsize=10, loc="left")
    for ax, (code, label, thresholds) in zip(axes[1:], panels, strict=True):
        series = obs.filter(pl.col("code") == code).group_by("day").agg(pl.col("value").max()).sort("day")
        ax.plot(series["day"].to_list(), series["value"].to_list(), marker="o", ms=3, color="#2d3748")
        for value, text in thresholds:
            ax.axhline(value, color="#dd6b20", lw=0.8, ls="--")
            ax.text(1.0, value, f" {text}", color="#dd6b20", fontsize=7, va="bottom", transform=ax.get_yaxis_transform())
        ax.set_ylabel(label, fontsize=7)
        ax.tick_params(labelsize=7)
    colours = {"critical": "#c53030", "urgent": "#dd6b20", "warning": "#d69e2e"}
    for row in tl.rows:
        for a in row.alerts:
            if a.severity in ("critical", "urgent"):
                for ax in axes:
                    ax.axvline(row.day, color=colours[a.severity], lw=0.6, alpha=0.5)
                axes[0].text(row.day, len(lanes) + 0.1, a.message.split(":")[0][:28], rotation=60, fontsize=6,
                             color=colours[a.severity], va="bottom")
                break
    axes[-1].set_xlabel("study day (day 1 = first lenalidomide dose)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_demo(out: Path | None = None) -> list[Timeline]:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    out = out or Path("dosewatch-demo")
    out.mkdir(parents=True, exist_ok=True)
    protocol = builtin(PROTOCOL)
    cohort = read_any(seed_bundle_path()).cohort
    console.print(f"[bold]dosewatch demo[/bold]: the four patients of the seed abstract, synthetic FHIR "
                  f"({seed_bundle_path().name}), monitored under [bold]{protocol.id}[/bold]: {protocol.title}.")
    console.print("Each day the monitor sees only what was known that day; alerts appear on the first day the data "
                  "support them.\n")
    timelines = []
    for pid in cohort.patient_ids:
        record = cohort.patient(pid)
        tl = timeline(record, protocol)
        timelines.append(tl)
        table = Table(title=f"{pid}: {ABSTRACT[pid]}", title_justify="left", show_lines=False)
        for col in ("day", "lenalidomide", "prophylaxis", "labs and exam", "dosewatch flags and recommends"):
            table.add_column(col, overflow="fold")
        for row in tl.rows:
            flags = [f"[{'bold red' if a.severity == 'critical' else 'red' if a.severity == 'urgent' else 'yellow'}]"
                     f"{a.severity.upper()}[/] {_short(a.message)} [dim]({a.rule.split(':')[-1]})[/]" for a in row.alerts]
            flags += [f"[bold]ACTION[/] {a.action} {a.drug}" + (f" {a.dose:g} mg" if a.action == "resume" else "")
                      + f" [dim]({a.rule.split(':')[-1]})[/]" for a in row.actions]
            if flags or row.day in (1,) or row.study_drug != "-" and row.day % 7 == 1:
                table.add_row(str(row.day), row.study_drug, row.prophylaxis, row.labs, "\n".join(flags))
        console.print(table)
        final = tl.final
        console.print(f"  state on day {tl.rows[-1].day}: [bold]{final.state}[/bold]; DLT: {final.dlt.get('status')}"
                      + (f" ({final.dlt.get('event')}, day {final.dlt.get('study_day')})" if final.dlt.get("event") else ""))
        png = plot_timeline(record, protocol, tl, out / f"{pid}-timeline.png")
        console.print(f"  timeline picture: {png}\n")
    report = write_html(timelines, protocol, out / "report.html")
    console.print(f"HTML report: {report}")
    return timelines


def write_html(timelines: list[Timeline], protocol: Protocol, path: Path) -> Path:
    """One self-contained page: per patient the abstract's story, the timeline picture and the day table."""
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>dosewatch demo</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#1a202c}"
        "table{border-collapse:collapse;font-size:13px;width:100%}td,th{border-bottom:1px solid #e2e8f0;"
        "padding:4px 6px;text-align:left;vertical-align:top}.critical{color:#c53030;font-weight:600}"
        ".urgent{color:#c05621}.warning{color:#975a16}img{max-width:100%}</style></head><body>",
        f"<h1>dosewatch demo: {html.escape(protocol.title)}</h1>",
        "<p>Synthetic data written to match the four patients of the seed abstract (Andritsos et al., ASH 2007 "
        "abstract 4727). Each day the monitor saw only what was known that day.</p>",
    ]
    for tl in timelines:
        png = path.parent / f"{tl.patient_id}-timeline.png"
        img = base64.b64encode(png.read_bytes()).decode() if png.exists() else ""
        parts.append(f"<h2>{tl.patient_id}</h2><p><b>Abstract:</b> {html.escape(ABSTRACT[tl.patient_id])}</p>")
        parts.append(f"<p><b>State:</b> {tl.final.state}; <b>DLT:</b> {html.escape(str(tl.final.dlt.get('status')))}</p>")
        if img:
            parts.append(f"<img alt='timeline of {tl.patient_id}' src='data:image/png;base64,{img}'>")
        parts.append("<table><tr><th>day</th><th>lenalidomide</th><th>prophylaxis</th><th>labs</th><th>flags</th></tr>")
        for row in tl.rows:
            if not (row.alerts or row.actions):
                continue
            flags = "<br>".join(
                [f"<span class='{a.severity}'>{a.severity.upper()}</span> {html.escape(a.message)} <i>({html.escape(a.rule)})</i>"
                 for a in row.alerts]
                + [f"<b>ACTION</b> {a.action} {a.drug} <i>({html.escape(a.rule)})</i>" for a in row.actions]
            )
            parts.append(f"<tr><td>{row.day}</td><td>{row.study_drug}</td><td>{html.escape(row.prophylaxis)}</td>"
                         f"<td>{html.escape(row.labs)}</td><td>{flags}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts))
    return path
