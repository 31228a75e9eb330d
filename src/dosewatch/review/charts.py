"""The packet's pictures (matplotlib), as PNG data URIs in an <img> (WeasyPrint prints a PNG in a
fraction of the time an SVG of thousands of paths takes; nothing is fetched): a swimmer plot of
every patient and the tumor lysis labs of each dose level."""
from __future__ import annotations

import io

import polars as pl

from ..escalation.cohort_cli import level_of_dose

# Cairo & Bishop 2004 laboratory TLS analytes (with LDH and creatinine, which the packet shows too)
TLS_LABS = (("K", "Potassium"), ("PHOS", "Phosphate"), ("URATE", "Uric acid"), ("CA", "Calcium"),
            ("CREAT", "Creatinine"), ("LDH", "LDH"))
LEVEL_COLOURS = ("#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#d62728", "#8c564b", "#e377c2", "#17becf")


def image(fig, alt: str) -> str:
    """The figure as an <img> with a PNG data URI (160 dpi)."""
    import base64
    import html

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=160)
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def swimmer_svg(content, cohort) -> str:
    """One lane per patient (study days from day 1): each day given the study drug coloured by its
    dose level, gaps where it was held or off-week, DLTs and grade >= 3 events marked, death a cross."""
    plt = _plt()
    protocol = content.protocol
    drug = protocol.study_drug
    rows = content.rows
    fig, ax = plt.subplots(figsize=(10, 0.45 * max(len(rows), 2) + 1.4))
    doses = cohort.known_on(content.as_of).doses.filter((pl.col("drug") == drug.drug)
                                                        & (pl.col("status") == "completed"))
    last_day = 1
    for y, r in enumerate(rows):
        given = doses.filter(pl.col("patient_id") == r.patient_id).sort("date")
        for date, dose in given.select("date", "dose").iter_rows():
            day = (date - r.day1).days + 1
            lv = level_of_dose(drug.levels, float(dose))
            ax.barh(y, 1, left=day - 0.5, height=0.5, color=LEVEL_COLOURS[((lv or 0) - 1) % len(LEVEL_COLOURS)]
                    if lv else "#9e9e9e", edgecolor="none")
            last_day = max(last_day, day)
        a = content.assessments.get(r.patient_id)
        for e in (a.events if a else []):
            if e.grade is not None and e.grade >= 3:
                day = (e.onset - r.day1).days + 1
                ax.plot(day, y + 0.38, marker="v", color="#424242", markersize=4)
                last_day = max(last_day, day)
        if a and a.dlt.get("status") == "DLT":
            day = a.dlt["study_day"]
            ax.plot(day, y, marker="*", color="#ffd54f", markersize=13, markeredgecolor="black", markeredgewidth=0.8)
        death = cohort.patients.filter((pl.col("patient_id") == r.patient_id) & pl.col("deceased_date").is_not_null()
                                       & (pl.col("deceased_date") <= content.as_of))
        if death.height:
            day = (death["deceased_date"][0] - r.day1).days + 1
            ax.plot(day, y, marker="X", color="black", markersize=9)
            last_day = max(last_day, day)
    ax.axvline(protocol.dlt.window_days + 0.5, color="#c62828", lw=0.8, ls="--")
    ax.text(protocol.dlt.window_days + 0.7, -0.9, f"end of DLT window (day {protocol.dlt.window_days})",
            fontsize=7, color="#c62828")
    ax.set_yticks(range(len(rows)), [f"{r.patient_id} (L{r.dose})" for r in rows], fontsize=8)
    ax.set_ylim(len(rows) - 0.4, -1.2)
    ax.set_xlim(0, last_day + 2)
    ax.set_xlabel("study day (day 1 = first dose)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=LEVEL_COLOURS[(lv.level - 1) % len(LEVEL_COLOURS)],
                             label=f"level {lv.level}: {lv.dose:g} {drug.unit}") for lv in drug.levels]
    handles += [plt.Line2D([], [], marker="*", ls="", color="#ffd54f", markeredgecolor="black", label="DLT"),
                plt.Line2D([], [], marker="v", ls="", color="#424242", label="grade >= 3 event"),
                plt.Line2D([], [], marker="X", ls="", color="black", label="death")]
    ax.legend(handles=handles, fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.18 if len(rows) < 8
                                                                                        else -0.08), frameon=False)
    ax.set_title(f"{drug.drug}: doses given (gaps: held or off-week), events and DLTs", fontsize=10)
    fig.tight_layout()
    return image(fig, "swimmer plot: every patient's doses, events and DLTs by study day")


def tls_svg(content, cohort) -> str:
    """Each tumor lysis lab over study days 1-{window}, one line per patient coloured by dose level,
    with the upper (lower for calcium) limit of normal when the records give it."""
    plt = _plt()
    level_of = {r.patient_id: r for r in content.rows}
    obs = cohort.known_on(content.as_of).observations.filter(
        pl.col("patient_id").is_in(list(level_of)) & pl.col("code").is_in([c for c, _ in TLS_LABS])
        & pl.col("value").is_not_null())
    fig, axes = plt.subplots(2, 3, figsize=(10, 5.2), sharex=True)
    window = content.protocol.dlt.window_days
    for ax, (code, name) in zip(axes.flat, TLS_LABS):
        part = obs.filter(pl.col("code") == code).sort("patient_id", "date")
        unit = part["unit"][0] if part.height else ""
        for pid, grp in part.group_by("patient_id", maintain_order=True):
            r = level_of[pid[0]]
            days = [(d - r.day1).days + 1 for d in grp["date"]]
            ax.plot(days, grp["value"].to_list(), marker=".", lw=1, markersize=3,
                    color=LEVEL_COLOURS[(r.dose - 1) % len(LEVEL_COLOURS)])
        limit = part["ref_low" if code == "CA" else "ref_high"].drop_nulls()
        if limit.len():
            ax.axhline(float(limit.median()), color="#757575", ls=":", lw=0.9)
        ax.set_title(f"{name} ({unit})", fontsize=9)
        ax.set_xlim(-3, window + 1)
        ax.tick_params(labelsize=7)
    for ax in axes[1]:
        ax.set_xlabel("study day", fontsize=8)
    levels = sorted({r.dose for r in content.rows})
    fig.legend(handles=[plt.Line2D([], [], color=LEVEL_COLOURS[(lv - 1) % len(LEVEL_COLOURS)], label=f"level {lv}")
                        for lv in levels], loc="lower center", ncol=len(levels) or 1, fontsize=7, frameon=False)
    fig.suptitle("Tumor lysis labs in the DLT window, by dose level (dotted: limit of normal)", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return image(fig, "tumor lysis labs by study day and dose level")
