"""Virtual patients at baseline, as arrays over patients (one row per patient, no object each)."""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from .params import Values, table

TIERS = ("low", "medium", "high")


@dataclass
class Population:
    age: np.ndarray  # years
    male: np.ndarray  # bool
    weight: np.ndarray  # kg
    alc: np.ndarray  # 10^9/L
    node_cm: np.ndarray  # largest node, cm
    node_equiv: np.ndarray  # tissue tumour as a multiple of the largest node's sphere
    anc: np.ndarray
    plat: np.ndarray
    hgb: np.ndarray
    creat: np.ndarray  # umol/L
    k: np.ndarray
    phos: np.ndarray
    urate: np.ndarray
    ca: np.ndarray
    alb: np.ndarray
    ldh: np.ndarray
    kill_sensitivity: np.ndarray  # multiplies kill_max
    flare_sensitivity: np.ndarray  # multiplies flare_gain
    neut_sensitivity: np.ndarray  # multiplies neut_slope

    @property
    def n(self) -> int:
        return len(self.age)

    @property
    def crcl(self) -> np.ndarray:
        """Cockcroft-Gault creatinine clearance, mL/min (Cockcroft & Gault, Nephron 1976)."""
        return (140 - self.age) * self.weight / (72 * self.creat / 88.4) * np.where(self.male, 1.0, 0.85)

    @property
    def tier(self) -> np.ndarray:
        """TLS risk tier of the VENCLEXTA US PI section 2.2 (0 low, 1 medium, 2 high)."""
        t = table("population")["risk_tiers"]
        high = (self.node_cm >= t["node_high_cm"]) | ((self.alc >= t["alc_cut"]) & (self.node_cm >= t["node_medium_cm"]))
        medium = (self.node_cm >= t["node_medium_cm"]) | (self.alc >= t["alc_cut"])
        return np.where(high, 2, np.where(medium, 1, 0))

    def take(self, index: np.ndarray) -> "Population":
        return Population(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


def sample(n: int, v: Values, rng: np.random.Generator) -> Population:
    """``n`` patients from the population distributions in ``population.yaml`` (values ``v``)."""
    def lognormal(median, log_sd):
        return median * np.exp(rng.normal(0.0, log_sd, n))

    male = rng.random(n) < v.male_fraction
    bulky = rng.random(n) < v.bulky_fraction
    lo_b, hi_b = v.node_bulky_cm
    lo_n, hi_n = v.node_nonbulky_cm
    sd = v.baseline_spread
    node = np.where(bulky, rng.uniform(lo_b, hi_b, n), rng.uniform(lo_n, hi_n, n))
    return Population(
        age=np.clip(rng.normal(v.age_mean, v.age_sd, n), 40, 88),
        male=male,
        weight=np.clip(rng.normal(np.where(male, v.weight_mean_male, v.weight_mean_female), v.weight_sd), 40, 150),
        alc=np.clip(lognormal(v.alc_median, v.alc_log_sd), 1.0, 600.0),
        node_cm=node,
        node_equiv=lognormal(v.node_equivalents, sd["node_equivalents_log_sd"]),
        anc=np.clip(lognormal(v.anc_median, v.anc_log_sd), 1.0, 12.0),
        plat=np.clip(lognormal(v.plat_median, v.plat_log_sd), 30.0, 450.0),
        hgb=np.clip(rng.normal(v.hgb_mean, sd["hgb_sd"], n), 80, 170),
        creat=np.clip(lognormal(v.creat_median, v.creat_log_sd), 45, 200),
        k=np.clip(rng.normal(v.k_mean, sd["k_sd"], n), 3.5, 5.0),
        phos=np.clip(rng.normal(v.phos_mean, sd["phos_sd"], n), 0.8, 1.4),
        urate=np.clip(rng.normal(v.urate_mean, sd["urate_sd"], n), 180, 470),
        ca=np.clip(rng.normal(v.ca_mean, sd["ca_sd"], n), 2.15, 2.6),
        alb=np.clip(rng.normal(v.alb_mean, sd["alb_sd"], n), 30, 48),
        ldh=np.clip(rng.normal(v.ldh_mean, sd["ldh_sd"], n), 120, 500),
        kill_sensitivity=lognormal(1.0, v.kill_log_sd),
        flare_sensitivity=lognormal(1.0, v.flare_log_sd),
        neut_sensitivity=lognormal(1.0, v.neut_slope_log_sd),
    )
