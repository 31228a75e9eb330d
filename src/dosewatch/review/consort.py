"""CONSORT-DEFINE and SPIRIT-DEFINE items that the data answer (Yap et al., BMJ 2023;383:e076387 and
e076386: the CONSORT and SPIRIT extensions for early phase dose-finding trials). Items are named by
the CONSORT 2010 / SPIRIT 2013 item they extend ("3a", "13a", ...); only what the records, the
protocol and the design say is filled in, and an item the data cannot answer says so instead of
being left out."""
from __future__ import annotations

from typing import Any


def _design_text(content) -> str:
    o = content.design_options
    parts = [content.design]
    if o.get("target") is not None:
        parts.append(f"target DLT probability {o['target']:g}")
    if o.get("skeleton"):
        parts.append("skeleton " + ", ".join(f"{p:g}" for p in o["skeleton"]))
    return "; ".join(parts)


def dose_path(rows) -> list[dict[str, Any]]:
    """The path of doses: consecutive patients at the same starting level as one cohort, in order of
    day 1, with their DLTs."""
    path: list[dict[str, Any]] = []
    for r in rows:
        if path and path[-1]["level"] == r.dose:
            path[-1]["patients"].append(r.patient_id)
            path[-1]["dlts"] += r.dlt
        else:
            path.append({"level": r.dose, "patients": [r.patient_id], "dlts": r.dlt, "first_day1": r.day1.isoformat()})
    return path


def consort_items(content, oc: dict[str, Any] | None = None) -> dict[str, Any]:
    p = content.protocol
    drug = p.study_drug
    levels = [{"level": lv.level, "dose": lv.dose, "unit": drug.unit} for lv in drug.levels]
    rec = content.recommendation
    by_level = [{"level": e["level"], "dose": e["dose"], "allocated": e["n"], "dlt_evaluable": e["evaluable"],
                 "dlts": e["dlts"], "in_dlt_window": e["in_window"]} for e in content.exposure]
    day1s = sorted(r.day1 for r in content.rows)
    return {
        "source": "CONSORT-DEFINE / SPIRIT-DEFINE (Yap et al., BMJ 2023;383:e076387, e076386)",
        "trial": content.trial, "as_of": content.as_of.isoformat(),
        "spirit_define": {
            "8 trial design": {"design": _design_text(content), "starting level": drug.start_level,
                               "cohort sizes of the pathways": content.paths.cohort_sizes},
            "11a interventions": {"drug": drug.drug, "dose levels": levels, "cycle days": drug.cycle_days,
                                  "source": drug.source},
            "12 outcomes (DLT definition)": {"window days": p.dlt.window_days,
                                             "criteria": [c.model_dump(mode="json") for c in p.dlt.criteria],
                                             "source": p.dlt.source},
            "14 sample size": "not in the protocol data (dosewatch records no planned sample size)",
            "operating characteristics": oc if oc else "not computed for this packet (give a true DLT probability per level: --oc-true-tox, or oc_true_tox on the server)",
        },
        "consort_define": {
            "3a trial design": _design_text(content),
            "13a participant flow by dose level": by_level,
            "13a path of doses (cohorts in order of day 1)": dose_path(content.rows),
            "14a dates of recruitment": {"first day 1": day1s[0].isoformat() if day1s else None,
                                         "last day 1": day1s[-1].isoformat() if day1s else None},
            "16 numbers analysed (DLT-evaluable) by dose level": {str(b["level"]): b["dlt_evaluable"] for b in by_level},
            "17a DLTs by dose level": {str(b["level"]): f"{b['dlts']}/{b['dlt_evaluable']}" for b in by_level},
            "19 harms (worst grade per patient and term)": [
                {"term": t["term"], "by level": {str(lv): {str(g): n for g, n in sorted(c.items())}
                                                 for lv, c in sorted(t["counts"].items())}} for t in content.toxicity],
            "recommended dose": {"next dose": rec.next_dose, "decision": rec.decision, "MTD so far": rec.mtd,
                                 "reason": rec.reason},
        },
    }
