"""A self-contained HTML report of simulated operating characteristics: the scenario, one table
and one chart (selection %, patients and DLTs per dose) per design, charts as inline SVG drawn by
matplotlib, no scripts, styles or fonts from the network."""
from __future__ import annotations

import html
import io
from pathlib import Path
from typing import Sequence


def _chart(result: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    doses = np.arange(1, len(result["true_tox"]) + 1)
    fig, axes = plt.subplots(1, 3, figsize=(10, 2.8))
    panels = (("selected (%)", result["selection_pct"]), ("patients per trial", result["mean_patients"]),
              ("DLTs per trial", result["mean_dlts"]))
    for ax, (title, values) in zip(axes, panels):
        ax.bar(doses, values, color="#4472a8")
        ax.set_title(title, fontsize=10)
        ax.set_xticks(doses)
        ax.set_xlabel("dose level")
    fig.suptitle(f"{result['design']} - {result['scenario']}", fontsize=11)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]


def _table(result: dict) -> str:
    rows = []
    for i, p in enumerate(result["true_tox"]):
        rows.append(f"<tr><td>{i + 1}</td><td>{p:.3f}</td><td>{result['selection_pct'][i]:.2f}</td>"
                    f"<td>{result['mean_patients'][i]:.2f}</td><td>{result['mean_dlts'][i]:.2f}</td></tr>")
    rows.append(f"<tr><td colspan=2>no MTD (stopped)</td><td>{result['stop_pct']:.2f}</td>"
                f"<td>{result['mean_n']:.2f}</td><td>{result['mean_total_dlts']:.2f}</td></tr>")
    return ("<table><tr><th>dose</th><th>true DLT probability</th><th>selected %</th><th>patients</th>"
            "<th>DLTs</th></tr>" + "".join(rows) + "</table>")


def render_report(results: Sequence) -> str:
    """The report as one HTML string (``results``: SimResult objects)."""
    dicts = [r.to_dict() for r in results]
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>dosewatch simulation</title><style>",
             "body{font-family:sans-serif;margin:2em;max-width:70em} table{border-collapse:collapse;margin:.5em 0}",
             "td,th{border:1px solid #bbb;padding:.2em .6em;text-align:right} svg{max-width:100%;height:auto}",
             "</style></head><body><h1>Operating characteristics</h1>"]
    for r, d in zip(results, dicts):
        s = r.settings
        setting = (f"target {s.target}, {s.max_cohorts} cohorts of {s.cohort_size}, start dose {s.start_dose}, "
                   f"{d['trials']} trials")
        if s.window is not None:
            setting += f", DLT window {s.window:g} days, accrual {s.accrual:g}/day, late fraction {s.late_fraction:g}"
        options = ", ".join(f"{k}={v}" for k, v in s.options) or "defaults"
        extra = f"; mean duration {d['mean_duration_days']:.1f} days" if "mean_duration_days" in d else ""
        parts.append(f"<h2>{html.escape(d['design'])} on scenario {html.escape(d['scenario'])}</h2>"
                     f"<p>True DLT probabilities {', '.join(f'{p:g}' for p in s.true_tox)}; {html.escape(setting)}; "
                     f"options: {html.escape(options)}{extra}; {d['elapsed_s']:.2f} s.</p>")
        parts.append(_table(d))
        parts.append(_chart(d))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(path: str | Path, results: Sequence) -> Path:
    path = Path(path)
    path.write_text(render_report(results), encoding="utf-8")
    return path
