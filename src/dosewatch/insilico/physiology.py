"""The daily model of every virtual patient at once (arrays over patients).

Lenalidomide exposure E (relative to 25 mg/day at the reference creatinine clearance; ~82% renal,
so it rises when the kidney fails) drives two effect compartments: immune activation (flare) and
cell kill. Killed cells release potassium, phosphate and purines (-> urate unless allopurinol
blocks it); each is removed at a rate that falls with the current GFR, and urate and phosphate above
their thresholds injure the kidney, which lowers the GFR further (the feedback that killed the seed's
patient 1). The flare is the rise of activation above a tolerance that follows it; steroids hide
most of it while they act and speed tolerance a little, so omitting or tapering them unmasks it.
Neutrophils and platelets follow the Friberg model (``marrow``). Every number is in
``data/insilico/*.yaml`` with its source.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .marrow import Transit
from .params import Values
from .population import Population

ULN_CREAT = 114.9  # umol/L, the reference range written into the record (population.yaml)


def _relax(x: np.ndarray, target: np.ndarray, rate) -> np.ndarray:
    """Exact one-day step of dx/dt = rate * (target - x) for a constant target."""
    return target + (x - target) * np.exp(-rate)


@dataclass
class DayTruth:
    """What really happened to each patient on one day (the model's truth, not what was measured)."""

    flare_index: np.ndarray
    flare_grade: np.ndarray
    lab_tls: np.ndarray
    clinical_tls: np.ndarray
    febrile_neutropenia: np.ndarray
    sepsis: np.ndarray
    airway: np.ndarray
    died: np.ndarray
    lysed: np.ndarray  # 1e9 cells lysed that day


class Patients:
    """State of every virtual patient; ``step`` advances one day."""

    def __init__(self, pop: Population, v: Values, rng: np.random.Generator):
        self.pop, self.v, self.rng = pop, v, rng
        n = pop.n
        self.n_blood = pop.alc * v.blood_volume_l
        self.n_tissue = pop.node_equiv * np.pi / 6 * pop.node_cm ** 3  # 1 cm3 ~ 1e9 cells
        self.n_tissue0 = self.n_tissue.copy()
        self.act = np.zeros(n)
        self.tol = np.zeros(n)
        self.kill_act = np.zeros(n)
        self.steroid = np.zeros(n)
        self.k, self.phos, self.urate = pop.k.copy(), pop.phos.copy(), pop.urate.copy()
        self.ca, self.creat = pop.ca.copy(), pop.creat.copy()
        self.gfr = np.ones(n)  # relative to the patient's own baseline
        self.renal = np.minimum(pop.crcl / v.crcl_reference, 1.2)  # baseline function scales clearance
        self.neut = Transit(pop.anc, v.neut_mtt_days, v.neut_gamma)
        self.plat = Transit(pop.plat, v.plat_mtt_days, v.neut_gamma)
        self.fever_days = np.zeros(n, dtype=int)
        self.infection_temp = np.zeros(n)
        self.alive = np.ones(n, dtype=bool)
        self.airway_done = np.zeros(n, dtype=bool)
        self.flare_index = np.zeros(n)
        self.lysed = np.zeros(n)
        self.ldh_extra = np.zeros(n)
        self.tls_met = np.zeros((4, n), dtype=bool)  # Cairo-Bishop criteria met so far (K, PHOS, URATE, CA)

    # --- what a lab draw or an examination would find, before measurement noise ---
    @property
    def alc(self) -> np.ndarray:
        return self.n_blood / self.v.blood_volume_l * (1 + self.v.flare_alc_rise * self.flare_index)

    @property
    def node_cm(self) -> np.ndarray:
        shrink = np.cbrt(np.maximum(self.n_tissue, 1e-9) / self.n_tissue0)
        return self.pop.node_cm * shrink * (1 + self.v.flare_node_swelling * self.flare_index)

    @property
    def temp(self) -> np.ndarray:
        flare_fever = self.v.flare_fever_c * np.minimum(self.flare_index, 6.0)
        return 36.8 + np.maximum(flare_fever, self.infection_temp)

    @property
    def pain_grade(self) -> np.ndarray:
        return np.minimum(self.flare_grade, 3)

    @property
    def flare_grade(self) -> np.ndarray:
        cuts = np.asarray(self.v.flare_grade_cuts)
        return np.searchsorted(cuts, self.flare_index, side="right")

    @property
    def ldh(self) -> np.ndarray:
        return self.pop.ldh + self.ldh_extra

    def exposure(self, dose_mg: np.ndarray) -> np.ndarray:
        v = self.v
        crcl = self.pop.crcl * self.gfr
        return dose_mg / 25.0 / (v.renal_fraction_lenalidomide * crcl / v.crcl_reference + 1 - v.renal_fraction_lenalidomide)

    def step(self, dose_mg: np.ndarray, dex_mg: np.ndarray, allopurinol: np.ndarray, rasburicase: np.ndarray,
             hydration: np.ndarray) -> DayTruth:
        v, pop, rng, alive = self.v, self.pop, self.rng, self.alive
        n = pop.n
        e = np.where(alive, self.exposure(dose_mg), 0.0)
        # steroid: acts the day it is taken, wanes over about a day when stopped
        s_target = dex_mg / (dex_mg + v.steroid_ed50)
        self.steroid = np.where(s_target >= self.steroid, s_target, _relax(self.steroid, s_target, v.steroid_effect_rate))
        # activation (flare) and kill effect compartments
        self.act = _relax(self.act, e / (e + v.act_ec50), v.activation_rate)
        hill = e ** v.kill_hill / (e ** v.kill_hill + v.kill_ec50 ** v.kill_hill)
        self.kill_act = _relax(self.kill_act, hill, v.activation_rate)
        self.tol = _relax(self.tol, self.act, v.flare_tolerance_rate * (1 + v.steroid_clearance_boost * self.steroid))
        bulk = (pop.node_cm / 5.0) ** v.flare_bulk_power
        drive = v.flare_gain * pop.flare_sensitivity * bulk * np.maximum(self.act - self.tol, 0.0)
        self.flare_index = np.where(alive, drive * (1 - v.steroid_mask_max * self.steroid), 0.0)
        # tumour cell kill and lysis
        frac = 1 - np.exp(-v.kill_max * pop.kill_sensitivity * self.kill_act)
        lysed = (self.n_blood + self.n_tissue) * frac * alive
        self.n_blood *= 1 - frac
        self.n_tissue *= 1 - frac
        self.lysed = lysed
        self.ldh_extra = _relax(self.ldh_extra, v.ldh_per_kill * lysed, 1.0)
        self._electrolytes(lysed, allopurinol, rasburicase, hydration)
        # marrow
        self.neut.step(v.neut_slope * pop.neut_sensitivity * e, alive)
        self.plat.step(v.plat_slope * pop.neut_sensitivity * e, alive)
        # infection, fever, febrile neutropenia, sepsis
        anc = self.neut.circ
        hazard = v.infection_base + v.infection_anc_lt_1 * (anc < 1.0) + v.infection_anc_lt_05 * (anc < 0.5)
        new_infection = alive & (self.fever_days == 0) & (rng.random(n) < 1 - np.exp(-hazard))
        febrile = new_infection & (rng.random(n) < v.fever_probability)
        self.fever_days = np.where(febrile, 2, np.maximum(self.fever_days - 1, 0))
        self.infection_temp = np.where(self.fever_days > 0, np.where(febrile, rng.uniform(1.6, 2.8, n), self.infection_temp), 0.0)
        fn = febrile & (anc < 1.0)
        sepsis = fn & (rng.random(n) < v.sepsis_given_fn)
        # deaths: infection, hyperkalemia, airway flare
        grade = self.flare_grade
        airway = alive & (grade >= 4) & ~self.airway_done
        self.airway_done |= airway
        k_hazard = v.hyperk_death_hazard * np.maximum(self.k - v.hyperk_death_k, 0.0)
        died = alive & (
            (fn & (rng.random(n) < v.death_given_fn))
            | (rng.random(n) < 1 - np.exp(-k_hazard))
            | (airway & (rng.random(n) < v.airway_death_probability))
        )
        self.alive = alive & ~died
        lab_tls = self.lab_tls()
        clinical = lab_tls & ((self.creat >= 1.5 * ULN_CREAT) | (died & (self.k > v.hyperk_death_k)))
        return DayTruth(self.flare_index.copy(), grade, lab_tls, clinical, fn, sepsis, airway,
                        died, lysed)

    def _electrolytes(self, lysed: np.ndarray, allopurinol: np.ndarray, rasburicase: np.ndarray, hydration: np.ndarray) -> None:
        v, pop = self.v, self.pop
        g = self.gfr
        hyd = np.where(hydration, v.hydration_clearance, 1.0)

        def update(x, x0, k, share, release, volume, boost=1.0, extra=0.0):
            k_base = k * self.renal
            k_now = k_base * (share * g + 1 - share) * boost + extra
            inflow = k_base * x0 + release / volume  # baseline production keeps x0 at the baseline GFR
            target = inflow / k_now
            return _relax(x, target, k_now)

        self.k = update(self.k, pop.k, v.clear_k, v.renal_share_k, v.release_k * lysed, v.volume_k_l)
        self.phos = update(self.phos, pop.phos, v.clear_phos, v.renal_share_phos, v.release_phos * lysed, v.volume_phos_l, hyd)
        purine = v.release_purine * lysed * 1000.0 * np.where(allopurinol, 1 - v.allopurinol_block, 1.0)  # umol
        self.urate = update(self.urate, pop.urate, v.clear_urate, v.renal_share_urate, purine, v.volume_urate_l, hyd,
                            np.where(rasburicase, v.rasburicase_clearance, 0.0))
        self.ca = pop.ca - v.ca_per_phos * np.maximum(self.phos - pop.phos, 0.0)
        # kidney injury from urate and calcium-phosphate; recovery towards the baseline
        th = np.where(hydration, v.hydration_aki_threshold, 1.0)
        injury = (np.maximum(self.urate - v.aki_urate_threshold * th, 0) / v.aki_urate_scale
                  + np.maximum(self.phos - v.aki_phos_threshold * th, 0) / v.aki_phos_scale)
        self.gfr = np.clip(self.gfr + v.aki_recovery_rate * (1 - self.gfr) - v.aki_injury_rate * injury * self.gfr, 0.05, 1.0)
        self.creat = _relax(self.creat, pop.creat / self.gfr, v.creat_rate)

    def lab_tls(self) -> np.ndarray:
        """Cairo-Bishop 2004 laboratory TLS on the true values: two or more of the four criteria
        (absolute cut-off or 25% change from baseline) met, not necessarily on the same day (Cairo-Bishop
        requires no simultaneity). No window: the truth is physiological; the monitor's window is part
        of what is being tested."""
        p = self.pop
        self.tls_met |= np.stack([
            (self.k >= 6.0) | (self.k >= 1.25 * p.k),
            (self.phos >= 1.45) | (self.phos >= 1.25 * p.phos),
            (self.urate >= 476) | (self.urate >= 1.25 * p.urate),
            (self.ca <= 1.75) | (self.ca <= 0.75 * p.ca),
        ])
        return self.tls_met.sum(axis=0) >= 2
