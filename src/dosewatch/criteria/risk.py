"""Baseline TLS risk category for venetoclax in CLL, by tumor burden (VENCLEXTA US PI 2.3 / 5.1).

Thresholds are in ``criteria/data/tls-risk.yaml`` with their sources.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import polars as pl

from ..events import Evidence
from ..record import Cohort, age_on, day1_frame
from .renal import cockcroft_gault, evidence_for, load_table, meets


@dataclass(frozen=True)
class RiskResult:
    """A patient's baseline TLS risk: the category (None when it cannot be derived) and why."""

    patient_id: str
    category: str | None  # "low" | "medium" | "high"
    reason: str
    largest_node_cm: float | None
    alc: float | None  # 10^9/L
    crcl: float | None  # mL/min, Cockcroft-Gault
    crcl_low: bool | None  # CrCl below the threshold: a risk modifier (None: CrCl unknown)
    evidence: tuple[Evidence, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "patient_id": self.patient_id,
            "category": self.category,
            "reason": self.reason,
            "largest_node_cm": self.largest_node_cm,
            "alc": self.alc,
            "crcl": self.crcl,
            "crcl_low": self.crcl_low,
            "evidence": [e.as_dict() for e in self.evidence],
        }


def _category(node: float | None, alc: float | None, t: dict) -> tuple[str | None, str]:
    tol = t["tolerance"]
    big = node is not None and meets(node, t["node"]["high"]["op"], t["node"]["high"]["value"], tol)
    if big:
        return "high", f"largest lymph node {node:g} cm >= {t['node']['high']['value']:g} cm"
    if node is None:
        return None, "no lymph-node measurement (LNDIAM) dated before day 1"
    if alc is None:
        return None, "no ALC (LYM) dated before day 1"
    mid = meets(node, t["node"]["medium"]["op"], t["node"]["medium"]["value"], tol)
    many = meets(alc, t["alc"]["high"]["op"], t["alc"]["high"]["value"], tol)
    n, a = f"largest lymph node {node:g} cm", f"ALC {alc:g} x10^9/L"
    if mid and many:
        return "high", f"{a} >= 25 and {n} >= 5 cm"
    if mid or many:
        return "medium", f"{n} >= 5 cm" if mid else f"{a} >= 25"
    return "low", f"{n} < 5 cm and {a} < 25"


def tls_risk(
    cohort: Cohort, day1: dict[str, dt.date], *, crcl_threshold: float | None = None
) -> dict[str, RiskResult]:
    """Baseline TLS risk per patient from the last values dated before day 1.

    low: all nodes < 5 cm and ALC < 25 x 10^9/L; medium: any node 5 to < 10 cm, or ALC >= 25;
    high: any node >= 10 cm, or ALC >= 25 with any node >= 5 cm. Node = the largest LNDIAM over all
    sites (each site's last value before day 1). CrCl (Cockcroft-Gault from age at day 1, last weight,
    last creatinine) below ``crcl_threshold`` (default 80 mL/min, in the data file) is flagged as a
    modifier. Missing inputs give category None with the reason.
    """
    t = load_table("tls-risk.yaml")
    threshold = t["crcl"]["value"] if crcl_threshold is None else crcl_threshold
    codes = [t["node"]["code"], t["alc"]["code"], "WEIGHT", "CREAT"]
    last = (
        cohort.observations.filter(pl.col("code").is_in(codes) & pl.col("value").is_not_null())
        .join(day1_frame(day1), on="patient_id", how="inner")
        .filter(pl.col("date") < pl.col("day1"))
        .sort("time", "obs_id")
        .group_by("patient_id", "code", "site", maintain_order=True)
        .last()
    )
    people = {r["patient_id"]: r for r in cohort.patients.iter_rows(named=True)}
    rows: dict[str, list[dict]] = {}
    for r in last.iter_rows(named=True):
        rows.setdefault(r["patient_id"], []).append(r)
    out: dict[str, RiskResult] = {}
    for pid, start in day1.items():
        mine = rows.get(pid, [])
        nodes = [r for r in mine if r["code"] == t["node"]["code"]]
        node_row = max(nodes, key=lambda r: r["value"], default=None)
        alc_row = next((r for r in mine if r["code"] == t["alc"]["code"]), None)
        node = node_row["value"] if node_row else None
        alc = alc_row["value"] if alc_row else None
        category, reason = _category(node, alc, t)
        evidence = [evidence_for(r, role) for r, role in ((node_row, "largest lymph node"), (alc_row, "ALC")) if r]
        crcl, crcl_low, why = _crcl(pid, start, people.get(pid), mine, threshold, t["tolerance"])
        if crcl is not None:
            evidence += [evidence_for(r, "Cockcroft-Gault input") for r in mine if r["code"] in ("WEIGHT", "CREAT")]
            reason += f"; CrCl {crcl:.1f} mL/min" + (f" < {threshold:g} (further increases risk)" if crcl_low else "")
        else:
            reason += f"; CrCl not derived: {why}"
        out[pid] = RiskResult(pid, category, reason, node, alc, crcl, crcl_low, tuple(evidence))
    return out


def _crcl(pid, start, person, mine, threshold, tol) -> tuple[float | None, bool | None, str]:
    weight = next((r["value"] for r in mine if r["code"] == "WEIGHT"), None)
    creat = next((r["value"] for r in mine if r["code"] == "CREAT"), None)
    missing = [
        what
        for what, gone in (
            ("birth date or age", not person or age_on(person, start) is None),
            ("sex", not person or person["sex"] not in ("M", "F")),
            ("weight before day 1", weight is None),
            ("creatinine before day 1", creat is None),
        )
        if gone
    ]
    if missing:
        return None, None, "no " + ", no ".join(missing)
    crcl = cockcroft_gault(age_on(person, start), weight, creat, person["sex"])
    return crcl, bool(meets(crcl, "<", threshold, tol)), ""
