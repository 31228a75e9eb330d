"""The HTML report of a scenario run: one self-contained page (no CDN, no script), tables of the
outcomes with their intervals, the monitor's timing, and one virtual patient's timeline per arm."""
from __future__ import annotations

from html import escape
from typing import Any

STYLE = """body{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}h2{margin-top:2em}.bar{fill:#4a78b5}.ci{stroke:#222;stroke-width:1.5}
.note{color:#555;font-size:13px}"""


def _pct(o: dict) -> str:
    lo, hi = o["ci95"]
    return f"{100 * o['rate']:.1f}% <span class=note>({100 * lo:.1f}-{100 * hi:.1f})</span>"


def _bars(result: dict, key: str) -> str:
    """A horizontal bar per arm with its 95% interval, as inline SVG."""
    arms = result["arms"]
    top = max(max(a["cycle1"][key]["ci95"][1] for a in arms), 0.01)
    w, row = 420, 22
    parts = [f'<svg width="{w + 260}" height="{row * len(arms) + 10}" role="img">']
    for i, a in enumerate(arms):
        o = a["cycle1"][key]
        y = 5 + i * row
        x = lambda r: 250 + w * r / top  # noqa: E731
        parts.append(f'<text x="0" y="{y + 14}">{escape(a["id"])}</text>')
        parts.append(f'<rect class="bar" x="250" y="{y + 3}" width="{x(o["rate"]) - 250:.1f}" height="12"/>')
        parts.append(f'<line class="ci" x1="{x(o["ci95"][0]):.1f}" x2="{x(o["ci95"][1]):.1f}" y1="{y + 9}" y2="{y + 9}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _timeline(t: dict[str, Any]) -> str:
    """Dose and true potassium of one virtual patient by study day, as inline SVG."""
    k, dose = t.get("K") or [], [d or 0.0 for d in t.get("dose") or []]
    if not any(x is not None for x in k):
        return ""
    w, h = 700, 140
    n = len(k)
    alive = [x for x in k if x is not None]
    kmax, dmax = max(max(alive), 6.5), max(max(dose), 1)
    sx = lambda d: 40 + (w - 60) * d / max(n - 1, 1)  # noqa: E731
    sk = lambda v: h - 20 - (h - 40) * (v - 3) / (kmax - 3)  # noqa: E731
    path = " ".join(f"{'M' if i == 0 else 'L'}{sx(i):.1f},{sk(v):.1f}" for i, v in enumerate(k) if v is not None)
    died = next((i for i, v in enumerate(k) if v is None), None)
    death = (f'<text x="{sx(died):.1f}" y="{h - 24}" fill="#c33">died day {died}</text>' if died is not None else "")
    bars = "".join(f'<rect x="{sx(i) - 3:.1f}" y="{h - 20 - 30 * d / dmax:.1f}" width="6" height="{30 * d / dmax:.1f}" '
                   f'fill="#9bb7de"/>' for i, d in enumerate(dose) if d > 0)
    six = sk(6.0)
    return (f'<svg width="{w}" height="{h}" role="img">{bars}<line x1="40" x2="{w - 20}" y1="{six:.1f}" y2="{six:.1f}" '
            f'stroke="#c33" stroke-dasharray="4"/><text x="{w - 150}" y="{six - 4:.1f}" fill="#c33">K 6.0 (Cairo-Bishop)</text>'
            f'<path d="{path}" fill="none" stroke="#222" stroke-width="1.5"/>{death}'
            f'<text x="0" y="12">true K (line), {escape(t["patient"])} (the largest tumour burden); study-drug dose (bars), '
            f'days 1-{n}</text></svg>')


def render_html(result: dict) -> str:
    arms = result["arms"]
    keys = list(arms[0]["cycle1"])
    head = "".join(f"<th>{escape(a['id'])}</th>" for a in arms)
    rows = "".join(
        f"<tr><td>{escape(arms[0]['cycle1'][k]['label'])}</td>" + "".join(f"<td>{_pct(a['cycle1'][k])}</td>" for a in arms) + "</tr>"
        for k in keys)
    det_rows = ""
    for k in ("lab_tls", "flare3", "fn"):
        cells = ""
        for a in arms:
            d = a["detection"][k]
            med = d["delay_days"]["median"]
            cells += (f"<td>{d['reported']}/{d['true_events']} reported, median delay "
                      f"{'-' if med is None else f'{med:g} d'}; {d['reported_without_true_event']} without</td>")
        det_rows += f"<tr><td>{escape(k)}</td>{cells}</tr>"
    diff_rows = ""
    for k in keys:
        cells = ""
        for a in arms:
            d = (a.get("versus_first_arm") or {}).get(k)
            cells += "<td>reference</td>" if d is None else (
                f"<td>{100 * d['difference']:+.1f} <span class=note>({100 * d['ci95'][0]:+.1f} to {100 * d['ci95'][1]:+.1f})</span></td>")
        diff_rows += f"<tr><td>{escape(arms[0]['cycle1'][k]['label'])}</td>{cells}</tr>"
    charts = "".join(f"<h3>{escape(arms[0]['cycle1'][k]['label'])}, cycle 1</h3>{_bars(result, k)}"
                     for k in ("lab_tls", "clinical_tls", "flare3", "fn", "death"))
    timelines = "".join(f"<h3>{escape(a['id'])}</h3>{_timeline(a['timeline'])}" for a in arms if a.get("timeline"))
    caveats = "".join(f"<li>{escape(c)}</li>" for c in result["caveats"])
    return f"""<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(result['title'])}</title>
<style>{STYLE}</style></head><body>
<h1>{escape(result['title'])}</h1><p>{escape(result.get('question') or '')}</p>
<p class=note>{result['patients']} virtual patients per arm (the same patients and random numbers in every arm),
seed {result['seed']}, {result['days']} days. Rates with exact 95% intervals. Generated by <code>dosewatch insilico run</code>.</p>
<h2>Outcomes in cycle 1</h2><table><tr><th>outcome</th>{head}</tr>{rows}</table>
<h3>Difference from the first arm, percentage points (same patients; paired bootstrap 95% interval)</h3>
<table><tr><th>outcome</th>{head}</tr>{diff_rows}</table>{charts}
<h2>What the monitor saw</h2><table><tr><th>true event</th>{head}</tr>{det_rows}</table>
<h2>One virtual patient</h2>{timelines}
<h2>What this model cannot say</h2><ul>{caveats}</ul></body></html>
"""
