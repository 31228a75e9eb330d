"""The patient's course on one picture, as inline SVG drawn on the server.

Rows from the top: study days, one row of bars per drug (study drug, then prophylaxis, then
others; a dose not taken is an open red box with a cross), events, alerts (a triangle on the day
the alert fired, with a faint line down through the labs), then one small panel per key lab with
its values (dots coloured by the grade they reached) against the grade cut-offs (dashed lines).
Every mark has a ``<title>`` (read by screen readers and shown on hover); the tables below the
picture hold the same facts.

No script and no style attribute: the page's Content-Security-Policy allows neither.
"""
from __future__ import annotations

import datetime as dt
import re
from html import escape
from typing import Any

import polars as pl

from ..record import study_day
from .display import unit_text

WIDTH = 960
LEFT, RIGHT = 196, 190
NAME_X = LEFT - 46  # names and units right-aligned here; the value ticks between them and the panel
ROW, PANEL, GAP = 18, 64, 10
GRADE_COLOURS = {0: "#3f4a5a", 1: "#7a6200", 2: "#b34a00", 3: "#c81e1e", 4: "#6e0b0b", 5: "#000000"}
SEVERITY_COLOURS = {"critical": "#a50e0e", "urgent": "#b34a00", "warning": "#7a6200", "info": "#3f4a5a"}
DRUG_COLOURS = {"study": "#1f4e99", "prophylaxis": "#1d6b3a", "other": "#56606e"}


def _t(text: Any) -> str:
    return escape(str(text), quote=True)


def timeline_svg(cohort, day1: dt.date | None, protocol, alerts: list[dict], events: list[dict],
                 thresholds: dict[str, list[dict]], worst: dict[str, int], units: str = "reported") -> str:
    """The SVG (a string of markup) for one patient's record."""
    from ..analytes import catalog

    obs, doses = cohort.observations, cohort.doses
    dates = [*obs["date"].drop_nulls().to_list(), *doses["date"].drop_nulls().to_list(),
             *[a["date"] for a in alerts]]
    if not dates:
        return '<p class="muted">No records to draw.</p>'
    start, end = min(dates), max(dates)
    n_days = (end - start).days + 1
    day_w = (WIDTH - LEFT - RIGHT) / n_days
    anchor = day1 or start

    def x(date: dt.date) -> float:
        return LEFT + (date - start).days * day_w

    def label(date: dt.date) -> str:
        return f"day {study_day(date, anchor)} ({date.isoformat()})" if day1 else date.isoformat()

    parts: list[str] = []
    y = 28
    parts.append(_axis(start, n_days, day_w, anchor, day1 is not None))
    # Drugs: study drug, prophylaxis (and its alternatives), then the rest.
    study = protocol.study_drug.drug
    proph = [d for p in protocol.prophylaxis for d in (p.drug, *p.alternatives)]
    present = doses["drug"].drop_nulls().unique().to_list()
    order = [d for d in [study, *proph] if d in present] + sorted(d for d in present if d not in [study, *proph])
    for drug in order:
        kind = "study" if drug == study else "prophylaxis" if drug in proph else "other"
        parts.append(f'<text x="{LEFT - 8}" y="{y + 13}" text-anchor="end" class="tl-label">{_t(drug)}</text>')
        for r in doses.filter(pl.col("drug") == drug).sort("date").iter_rows(named=True):
            if r["date"] is None:
                continue
            taken = r["status"] == "completed"
            dose = f'{r["dose"]:g} {r["dose_unit"] or ""}' if r["dose"] is not None else ""
            tip = f"{label(r['date'])}: {drug} {dose} {r['status'] or ''}".strip()
            bx, bw = x(r["date"]) + day_w * 0.1, max(day_w * 0.8, 1.5)
            if taken:
                parts.append(f'<rect x="{bx:.1f}" y="{y + 2}" width="{bw:.1f}" height="{ROW - 4}" '
                             f'fill="{DRUG_COLOURS[kind]}"><title>{_t(tip)}</title></rect>')
            else:
                parts.append(f'<g class="tl-missed"><title>{_t(tip)}</title>'
                             f'<rect x="{bx:.1f}" y="{y + 2}" width="{bw:.1f}" height="{ROW - 4}" fill="#ffffff" '
                             f'stroke="#c81e1e" stroke-width="1.5"/>'
                             f'<path d="M{bx:.1f} {y + 2}l{bw:.1f} {ROW - 4}M{bx + bw:.1f} {y + 2}l{-bw:.1f} {ROW - 4}" '
                             f'stroke="#c81e1e" stroke-width="1.5"/></g>')
        parts.extend(_dose_labels(doses.filter(pl.col("drug") == drug).sort("date"), y, x, day_w))  # over the bars
        y += ROW
    # Events (syndromes, grade >= 3, reported clinical events).
    parts.append(f'<text x="{LEFT - 8}" y="{y + 13}" text-anchor="end" class="tl-label">events</text>')
    for e in events:
        if e.get("grade") is not None and e["grade"] < 3:
            continue
        d = dt.date.fromisoformat(str(e["onset"]))
        cx, cy = x(d) + day_w / 2, y + ROW / 2
        grade = f" grade {e['grade']}" if e.get("grade") is not None else ""
        parts.append(f'<path d="M{cx:.1f} {cy - 6}l6 6l-6 6l-6 -6z" fill="{GRADE_COLOURS.get(e.get("grade") or 3)}">'
                     f'<title>{_t(label(d))}: {_t(e["term"])}{grade} ({_t(e["criteria"])})</title></path>')
    y += ROW
    # Alerts: a triangle on the day each fired.
    parts.append(f'<text x="{LEFT - 8}" y="{y + 13}" text-anchor="end" class="tl-label">alerts</text>')
    alert_y = y
    y += ROW + GAP
    cat = catalog()
    for code, lines in thresholds.items():
        parts.append(_lab_panel(obs.filter(pl.col("code") == code).sort("time"), code, cat[code], lines, worst,
                                y, x, day_w, label, units))
        y += PANEL + GAP
    # Most severe drawn last (on top); critical alerts are labelled with their rule.
    labelled: set[dt.date] = set()
    for a in sorted(alerts, key=lambda a: (-_rank(a["severity"]), a["date"], a["id"])):
        cx = x(a["date"]) + day_w / 2
        colour = SEVERITY_COLOURS.get(a["severity"], "#3f4a5a")
        size = 8 if a["severity"] == "critical" else 6
        parts.append(f'<line x1="{cx:.1f}" y1="{alert_y + ROW}" x2="{cx:.1f}" y2="{y - GAP}" stroke="{colour}" '
                     f'stroke-opacity="0.35" stroke-dasharray="2 3"/>')
        parts.append(f'<g class="tl-alert" data-alert-id="{a["id"]}" data-rule="{_t(a["rule"])}" '
                     f'data-date="{a["date"].isoformat()}" data-study-day="{_t(a.get("study_day"))}">'
                     f'<title>{_t(label(a["date"]))}: {_t(a["severity"])} alert {_t(a["rule"])} ({_t(a["status"])})'
                     f'</title><path d="M{cx:.1f} {alert_y + 16 - 2 * size}l{size} {2 * size - 1}h{-2 * size}z" '
                     f'fill="{colour}" stroke="#ffffff" stroke-width="0.8"/></g>')
    free_from = 0.0
    for a in sorted((a for a in alerts if a["severity"] == "critical"), key=lambda a: a["date"]):
        cx = x(a["date"]) + day_w / 2
        name = a["rule"].split(":", 1)[-1]
        if a["date"] not in labelled and cx + 9 >= free_from:  # labels never overlap; the title has them all
            labelled.add(a["date"])
            free_from = cx + 9 + 6.5 * len(name) + 6
            parts.append(f'<text x="{cx + 9:.1f}" y="{alert_y + 13}" class="tl-tag" '
                         f'fill="{SEVERITY_COLOURS[a["severity"]]}">{_t(name)}</text>')
    height = y + 4
    return (f'<svg class="timeline" viewBox="0 0 {WIDTH} {height}" role="img" aria-labelledby="tl-title" '
            f'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif">'
            f'<title id="tl-title">Timeline: doses, events, alerts and key labs by study day</title>'
            + "".join(parts) + "</svg>")


def _line_colour(line: dict) -> str:
    return GRADE_COLOURS.get(line["grade"], "#5a3e99") if line["grade"] is not None else "#5a3e99"


def _rank(severity: str) -> int:
    from ..monitor import SEVERITY_ORDER

    return SEVERITY_ORDER.get(severity, len(SEVERITY_ORDER))


def _dose_labels(rows: pl.DataFrame, top: float, x, day_w: float) -> list[str]:
    """The dose written on the bars where it changes (25 mg, then 10, then 5: a reduction is seen),
    when the run of days at that dose is wide enough for the text; every bar's title has its dose."""
    given = [r for r in rows.iter_rows(named=True) if r["date"] is not None and r["status"] == "completed"
             and r["dose"] is not None]
    runs: list[list[dict]] = []
    for r in given:
        if runs and runs[-1][-1]["dose"] == r["dose"] and (r["date"] - runs[-1][-1]["date"]).days <= 7:
            runs[-1].append(r)
        else:
            runs.append([r])
    if len({r["dose"] for r in given}) <= 1 and len(runs) <= 1:
        return []  # one dose throughout: the title says it, the row needs no text
    out, free_from = [], 0.0
    for run in runs:
        text = f'{run[0]["dose"]:g} {run[0]["dose_unit"] or ""}'.strip()
        x0, x1 = x(run[0]["date"]) + day_w * 0.1, x(run[-1]["date"]) + day_w * 0.9
        if x1 - x0 >= 6.2 * len(text) + 4 and x0 >= free_from:
            out.append(f'<text x="{x0 + 2:.1f}" y="{top + 13}" class="tl-dose" fill="#ffffff">{_t(text)}</text>')
            free_from = x0 + 6.2 * len(text) + 6
    return out


def _ticks(lo: float, hi: float) -> list[float]:
    """Two to four round values inside [lo, hi] for a panel's axis."""
    import math

    span = hi - lo
    if span <= 0:
        return [lo]
    step = 10 ** math.floor(math.log10(span / 2))
    for m in (1, 2, 5, 10):
        if span / (m * step) <= 4:
            step *= m
            break
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step) + 1)]


def _axis(start: dt.date, n_days: int, day_w: float, anchor: dt.date, has_day1: bool) -> str:
    step = next(s for s in (1, 2, 7, 14, 28, 56, 84, 168, 364) if n_days / s <= 16)
    out = [f'<line x1="{LEFT}" y1="24" x2="{LEFT + n_days * day_w:.1f}" y2="24" stroke="#8a94a3"/>']
    for i in range(n_days):
        d = start + dt.timedelta(days=i)
        sd = study_day(d, anchor)
        if (sd - 1) % step and i:
            continue
        px = LEFT + i * day_w + day_w / 2
        text = f"D{sd}" if has_day1 else d.strftime("%d %b")
        out.append(f'<line x1="{px:.1f}" y1="20" x2="{px:.1f}" y2="24" stroke="#8a94a3"/>'
                   f'<text x="{px:.1f}" y="16" text-anchor="middle" class="tl-small">{text}</text>')
    out.append(f'<text x="{LEFT - 8}" y="16" text-anchor="end" class="tl-label">study day</text>')
    return "".join(out)


def _lab_panel(rows: pl.DataFrame, code: str, analyte, lines: list[dict], worst: dict[str, int], top: float,
               x, day_w: float, label, units: str = "reported") -> str:
    unit, to_shown = _shown_unit(rows, analyte, units)
    rows = rows.with_columns(pl.col("value").map_elements(to_shown, return_dtype=pl.Float64))
    lines = [{**ln, "value": to_shown(ln["value"]),
              # a criterion's label names its cut-off: in the chart's unit, as the line is drawn
              "label": re.sub(r"([<>≤≥]=?)\s*[-\d.]+.*$", lambda m: f"{m.group(1)}{to_shown(ln['value']):.3g}",
                              ln["label"]) if ln["grade"] is None else ln["label"]} for ln in lines]
    values = [v for v in rows["value"].to_list() if v is not None]
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = (hi - lo) or abs(hi) or 1.0
    near = [ln for ln in lines if lo - 0.6 * span <= ln["value"] <= hi + 0.6 * span]
    if not near and lines:  # always show the mildest cut-off, so the panel says how far the values are from it
        near = [min(lines, key=lambda ln: min(abs(ln["value"] - lo), abs(ln["value"] - hi)))]
    lo = min([lo, *(ln["value"] for ln in near)])
    hi = max([hi, *(ln["value"] for ln in near)])
    pad = (hi - lo) * 0.08 or 1.0
    lo, hi = lo - pad, hi + pad

    def y(v: float) -> float:
        return top + PANEL - (v - lo) / (hi - lo) * PANEL

    right = LEFT + (WIDTH - LEFT - RIGHT)
    out = [f'<rect x="{LEFT}" y="{top}" width="{right - LEFT}" height="{PANEL}" fill="#f6f8fa" stroke="#d0d7de"/>',
           f'<text x="{NAME_X}" y="{top + 14}" text-anchor="end" class="tl-label">{_t(analyte.name)}</text>',
           f'<text x="{NAME_X}" y="{top + 28}" text-anchor="end" class="tl-small">{_t(unit_text(unit))}</text>']
    for v in _ticks(lo, hi):
        ty = y(v)
        out.append(f'<line x1="{LEFT - 4}" y1="{ty:.1f}" x2="{LEFT}" y2="{ty:.1f}" stroke="#8a94a3"/>'
                   f'<text x="{LEFT - 6}" y="{ty + 3.5:.1f}" text-anchor="end" class="tl-small">{v:g}</text>')
    clusters: list[list[tuple[float, dict]]] = []  # cut-offs closer than a text line share one label
    for ln in sorted(near, key=lambda ln: -ln["value"]):
        ly = y(ln["value"])
        if clusters and ly - clusters[-1][-1][0] < 11:
            clusters[-1].append((ly, ln))
        else:
            clusters.append([(ly, ln)])
    for cluster in clusters:
        for ly, ln in cluster:
            out.append(f'<line x1="{LEFT}" y1="{ly:.1f}" x2="{right}" y2="{ly:.1f}" stroke="{_line_colour(ln)}" '
                       f'stroke-dasharray="{"6 3" if ln["grade"] is None else "3 3"}">'
                       f'<title>{_t(ln["source"])}: {ln["value"]:.4g} {_t(unit_text(unit))}</title></line>')
        ty = sum(ly for ly, _ in cluster) / len(cluster) + 4
        worst_line = max((ln for _, ln in cluster), key=lambda ln: ln["grade"] if ln["grade"] is not None else 2.5)
        names = [ln["label"] if ln["grade"] is None else f'{ln["label"]} {ln["value"]:.3g}' for _, ln in cluster]
        shown = names[:2] if len(" · ".join(names)) > 28 else names  # the right margin holds ~30 characters
        words = " · ".join(shown) + (f" +{len(names) - len(shown)}" if len(shown) < len(names) else "")
        out.append(f'<text x="{right + 4}" y="{ty:.1f}" class="tl-tag" fill="{_line_colour(worst_line)}">'
                   f'<title>{_t(" · ".join(names))}</title>{_t(words)}</text>')
    pts = [(x(r["date"]) + day_w / 2, y(r["value"]), r) for r in rows.iter_rows(named=True)
           if r["value"] is not None and r["date"] is not None]
    if len(pts) > 1:
        out.append('<polyline fill="none" stroke="#8a94a3" points="'
                   + " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in pts) + '"/>')
    for px, py, r in pts:
        g = worst.get(r["obs_id"], 0)
        value = (f'{r["orig_value"]:g} {unit_text(r["orig_unit"])}' if r["orig_value"] is not None
                 else f'{r["value"]:.4g} {unit_text(unit)}')
        out.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{3 if g == 0 else 4.5}" fill="{GRADE_COLOURS.get(g)}">'
                   f'<title>{_t(label(r["date"]))}: {_t(code)} {_t(value)}{f" (grade {g})" if g else ""}</title></circle>')
    return "".join(out)


def _shown_unit(rows: pl.DataFrame, analyte, choice: str = "reported") -> tuple[str, Any]:
    """The unit the chart is drawn in: the user's choice (SI or US conventional), else the one the
    lab reported most of the values in (the table beside the chart shows them as reported),
    converted exactly from the canonical values; the canonical unit when the reported one does not
    convert."""
    from .. import units
    from .display import from_canonical, shown_unit

    chosen = shown_unit(analyte, choice)
    if chosen:
        return chosen, from_canonical(analyte, chosen)
    reported = [u for u in rows["orig_unit"].to_list() if u] if "orig_unit" in rows.columns else []
    if reported:
        unit = max(set(reported), key=reported.count)
        try:
            scale, offset = analyte.conversion(units.normalize_unit(unit))
        except Exception:  # a unit the catalog cannot convert: draw the canonical values
            return analyte.unit, lambda v: v
        if scale:
            return unit, lambda v: None if v is None else (v - offset) / scale
    return analyte.unit, lambda v: v
