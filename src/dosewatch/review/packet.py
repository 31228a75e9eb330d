"""The safety review packet: the content (``review.content``) laid out as one HTML document (Jinja,
the same page a browser shows) and printed to PDF with WeasyPrint (Debian's Pango underneath)."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def _show(value: Any) -> str:
    """An item's value as readable text: ``key: value`` pairs, lists one entry after another."""
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_show(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        if value and isinstance(value[0], dict):
            return " | ".join(_show(v) for v in value)
        return ", ".join(_show(v) for v in value)
    if value is None:
        return "–"
    return str(value)


def render_html(content, cohort) -> str:
    from importlib.metadata import version

    from jinja2 import Environment, PackageLoader, select_autoescape

    from ..escalation import paths_plot
    from .charts import swimmer_svg, tls_svg
    from .consort import _design_text

    env = Environment(loader=PackageLoader("dosewatch.review", "templates"), autoescape=select_autoescape())
    drug = content.protocol.study_drug
    used = sorted({r.dose for r in content.rows})
    rows = content.paths.table()
    totals = {k: sum(e[k] for e in content.exposure) for k in ("n", "evaluable", "dlts", "in_window")}
    totals["days"] = sum(e["dosing_days"] for e in content.exposure)
    return env.get_template("packet.html").render(
        c=content, version=version("dosewatch"), design_text=_design_text(content),
        level_dose={lv.level: f"{lv.dose:g} {drug.unit}" for lv in drug.levels},
        pending=[r.patient_id for r in content.rows if r.status == "in window"], totals=totals,
        used_levels=used, n_at={lv: sum(r.dose == lv for r in content.rows) for lv in used}, grades=(1, 2, 3, 4, 5),
        table_keys=[k for k in rows[0] if k not in ("decision",)] if rows else [],
        swimmer=swimmer_svg(content, cohort), tls=tls_svg(content, cohort),
        tree=paths_plot.png_img(content.paths, f"{content.design}: dose-transition pathways"), show=_show)


def write_pdf(html: str, path: str | Path) -> Path:
    """The HTML printed to PDF (A4) by WeasyPrint."""
    from weasyprint import HTML

    path = Path(path)
    HTML(string=html).write_pdf(path)
    return path


def pdf_bytes(html: str) -> bytes:
    from weasyprint import HTML

    return HTML(string=html).write_pdf()
