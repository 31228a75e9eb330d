"""Friberg transit-compartment myelosuppression (Friberg et al., J Clin Oncol 2002;20:4713): a
proliferating pool, three transit compartments and the circulating cells, with feedback
(baseline / circulating)^gamma on proliferation and the drug as a linear inhibition of it.
Arrays over patients; integrated with Euler substeps (k_tr * dt stays well below 1)."""
from __future__ import annotations

import numpy as np

SUBSTEPS = 4


class Transit:
    """One lineage (neutrophils or platelets) for every patient."""

    def __init__(self, baseline: np.ndarray, mtt_days: float, gamma: float):
        self.base = baseline.astype(float)
        self.ktr = 4.0 / mtt_days  # (n transit + 1) / MTT
        self.gamma = gamma
        self.compartments = np.repeat(self.base[None, :], 5, axis=0)  # prol, t1, t2, t3, circ

    @property
    def circ(self) -> np.ndarray:
        return self.compartments[4]

    def step(self, effect: np.ndarray, alive: np.ndarray) -> None:
        """One day with drug effect ``effect`` (fraction of proliferation inhibited, 0..1)."""
        c = self.compartments
        dt = 1.0 / SUBSTEPS
        e = np.clip(effect, 0.0, 0.95)
        for _ in range(SUBSTEPS):
            feedback = (self.base / np.maximum(c[4], 1e-3)) ** self.gamma
            flow = self.ktr * c[:4]
            new = c.copy()
            new[0] += dt * (self.ktr * c[0] * (1 - e) * feedback - flow[0])
            new[1:4] += dt * (flow[0:3] - flow[1:4])
            new[4] += dt * (flow[3] - self.ktr * c[4])
            c[:, alive] = np.maximum(new[:, alive], 1e-4)
