"""CRM and TITE-CRM as dfcrm 0.2-2.1 computes them (``getprior``, ``crm`` and ``titecrm`` with
method="bayes"): one-parameter empiric or logistic model, N(0, prior_sd^2) prior on beta,
posterior moments by QUADPACK (scipy ``quad`` with R ``integrate``'s tolerances), plug-in ptox,
a normal-approximation interval on beta pushed through the curve, and dfcrm's ``mtd`` rule.

dfcrm's ``crm`` itself never restricts escalation; the restriction ``crmsim`` applies (no
skipping, no escalation right after a toxic cohort) is the :class:`~.wrappers.DontSkip` and
:class:`~.wrappers.Coherent` wrappers, which :func:`make_crm` adds by default."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import integrate
from scipy.special import ndtri

from .base import Design, Outcomes, Recommendation, decision_between

# R's integrate() defaults: rel.tol = .Machine$double.eps^0.25, 100 subdivisions; dfcrm sets abs.tol = 0.
_REL_TOL = np.finfo(float).eps ** 0.25
_LIMIT = 100
# dfcrm integrates the first and second moments over [-10, 10] only (the normaliser over R).
_MOMENT_BOUND = 10.0
DEFAULT_PRIOR_SD = math.sqrt(1.34)


def get_prior(halfwidth: float, target: float, nu: int, levels: int, model: str = "empiric",
              intercept: float = 3.0) -> list[float]:
    """dfcrm ``getprior``: Lee & Cheung's skeleton from indifference intervals target +/- halfwidth,
    with the prior MTD at level ``nu`` (1-based)."""
    if not 1 <= nu <= levels:
        raise ValueError(f"prior MTD level {nu} is not one of 1..{levels}")
    if not 0 < halfwidth < min(target, 1 - target):
        raise ValueError("halfwidth must be positive and smaller than both target and 1 - target")
    lo, hi = target - halfwidth, target + halfwidth
    scaled = [math.nan] * levels
    if model == "empiric":
        scaled[nu - 1] = target
        for k in range(nu - 1, 0, -1):  # downwards: lo at k-1 and hi at k share one beta
            scaled[k - 1] = math.exp(math.log(lo) / (math.log(hi) / math.log(scaled[k])))
        for k in range(nu - 1, levels - 1):  # upwards: mirrored
            scaled[k + 1] = math.exp(math.log(hi) / (math.log(lo) / math.log(scaled[k])))
        return scaled
    if model == "logistic":
        a = intercept
        lo_s = math.log(lo / (1 - lo)) - a
        hi_s = math.log(hi / (1 - hi)) - a
        scaled[nu - 1] = math.log(target / (1 - target)) - a
        for k in range(nu - 1, 0, -1):
            scaled[k - 1] = lo_s / (hi_s / scaled[k])
        for k in range(nu - 1, levels - 1):
            scaled[k + 1] = hi_s / (lo_s / scaled[k])
        return [1.0 / (1.0 + math.exp(-a - x)) for x in scaled]
    raise ValueError(f"unknown model {model!r}: use empiric or logistic")


def parse_skeleton(text: str) -> list[float]:
    """``"0.05, 0.1, 0.2"`` -> [0.05, 0.1, 0.2]: one prior DLT probability per dose level, each
    between 0 and 1 and increasing; ValueError with a readable message otherwise."""
    try:
        values = [float(x) for x in text.replace(";", ",").split(",") if x.strip()]
    except ValueError:
        raise ValueError("the skeleton is one probability per dose level, separated by commas, "
                         "e.g. 0.05,0.1,0.2,0.3") from None
    return check_skeleton(values)


def check_skeleton(values: list[float]) -> list[float]:
    """The skeleton if each value is between 0 and 1 and they increase; ValueError otherwise."""
    if not values or not all(0 < v < 1 for v in values) or any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError("the skeleton is one probability per dose level, each between 0 and 1, increasing")
    return list(values)


def linear_weights(followup, window: float) -> np.ndarray:
    return np.minimum(np.asarray(followup, dtype=np.float64) / window, 1.0)


def adaptive_weights(followup, dlt, window: float) -> np.ndarray:
    """Cheung & Chappell's adaptive weights as titecrm computes them: (m + fraction)/(z + 1), with
    m the number of the z DLT follow-up times at or below the patient's, the fraction interpolated
    between consecutive DLT times and, after the last one, up to the window; linear without DLTs."""
    fu = np.asarray(followup, dtype=np.float64)
    support = np.sort(fu[np.asarray(dlt) == 1])
    z = support.size
    if z == 0:
        return linear_weights(fu, window)
    w = np.empty_like(fu)
    for i, f in enumerate(fu):
        m = int(np.searchsorted(support, f, side="right"))
        if m == 0:
            w[i] = f / support[0] / (z + 1)
        elif m == z:
            # dfcrm divides 0 by 0 when the last DLT came at the window's end; such a patient is
            # fully followed, so dosewatch gives weight 1 instead of failing
            span = window - support[-1]
            w[i] = (z + (f - support[-1]) / span) / (z + 1) if span > 0 else 1.0
        else:
            w[i] = (m + (f - support[m - 1]) / (support[m] - support[m - 1])) / (z + 1)
    return np.minimum(w, 1.0)


@dataclass(frozen=True)
class CrmFit:
    """dfcrm's ``estimate`` (posterior mean of beta), ``post.var``, plug-in ``ptox`` with its
    interval, and ``mtd`` (the dose with ptox closest to the target, before any restriction)."""

    beta_mean: float
    beta_var: float
    ptox: np.ndarray
    ptox_lower: np.ndarray
    ptox_upper: np.ndarray
    model_dose: int
    weights: np.ndarray


def _curve(skeleton: np.ndarray, model: str, intercept: float):
    """Dose-toxicity curve p(beta) per level, vectorised over beta (shape (len(beta), levels))."""
    if model == "empiric":
        return lambda beta: skeleton[None, :] ** np.exp(beta)[:, None]
    if model == "logistic":
        scaled = np.log(skeleton / (1 - skeleton)) - intercept
        if not (scaled < 0).all():
            raise ValueError("intercept of the logistic model is too small: scaled doses > 0")
        return lambda beta: 1.0 / (1.0 + np.exp(-intercept - np.exp(beta)[:, None] * scaled[None, :]))
    raise ValueError(f"unknown model {model!r}: use empiric or logistic")


def _kernel(sk: np.ndarray, model: str, intercept: float, prior_sd: float, level: np.ndarray, y: np.ndarray,
            w: np.ndarray):
    """The unnormalised posterior of beta as a scalar function: exp(-beta^2 / 2 sd^2) times the
    Bernoulli product p^y (1 - w p)^(1 - y) that dfcrm builds patient by patient, with the patients
    grouped by (level, outcome, weight) so that each evaluation costs a few float operations."""
    n_lv = sk.size
    dlts = np.bincount(level[y == 1], minlength=n_lv)
    dlt_terms = [(int(k), float(c)) for k, c in enumerate(dlts) if c]
    pairs, counts = np.unique(np.column_stack([level[y == 0], w[y == 0]]), axis=0, return_counts=True)
    safe_terms = [(int(k), float(wt), float(c)) for (k, wt), c in zip(pairs, counts)]
    inv_two_var = 1.0 / (2.0 * prior_sd**2)
    if model == "empiric":
        log_sk = [math.log(v) for v in sk]

        def prob(k: int, e: float) -> float:
            return math.exp(e * log_sk[k]) if e < math.inf else 0.0
    else:
        scaled = [math.log(v / (1 - v)) - intercept for v in sk]

        def prob(k: int, e: float) -> float:
            z = -intercept - e * scaled[k]
            return 0.0 if z > 700 else 1.0 / (1.0 + math.exp(z))

    def density(b: float) -> float:
        e = math.exp(b) if b < 700 else math.inf
        out = math.exp(-b * b * inv_two_var)
        for k, c in dlt_terms:
            out *= prob(k, e) ** c
        for k, wt, c in safe_terms:
            out *= (1.0 - wt * prob(k, e)) ** c
        return out

    return density


def _quad(fn, lo: float, hi: float) -> float:
    with warnings.catch_warnings():
        # R's integrate() stops where QUADPACK flags round-off (a moment that is 0, e.g. with no
        # patients); its estimate is still right, so dosewatch keeps it
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        return integrate.quad(fn, lo, hi, epsabs=0.0, epsrel=_REL_TOL, limit=_LIMIT)[0]


def _check_data(sk: np.ndarray, dose, dlt, weights):
    if sk.ndim != 1 or sk.size < 1 or not ((sk > 0) & (sk < 1)).all():
        raise ValueError("the skeleton must be probabilities strictly between 0 and 1")
    if (np.diff(sk) <= 0).any():
        raise ValueError("the skeleton must increase with dose")
    level = np.asarray(dose, dtype=np.int64) - 1
    y = np.asarray(dlt, dtype=np.float64)
    w = np.ones(y.size) if weights is None else np.asarray(weights, dtype=np.float64).copy()
    if ((w < 0) | (w > 1)).any():
        raise ValueError("weights have to be between 0 and 1")
    if level.size and (level.min() < 0 or level.max() >= sk.size):
        raise ValueError(f"dose levels must be 1..{sk.size}")
    w[y == 1] = 1.0
    return level, y, w


def fit_crm(skeleton, target: float, dose, dlt, weights=None, *, model: str = "empiric",
            intercept: float = 3.0, prior_sd: float = DEFAULT_PRIOR_SD, conf_level: float = 0.90) -> CrmFit:
    """dfcrm ``crm`` / ``titecrm`` (method="bayes", var.est=TRUE). ``weights`` (TITE) default to 1;
    a patient with a DLT always counts fully. Unlike dfcrm, no patients is allowed (prior only)."""
    sk = np.asarray(skeleton, dtype=np.float64)
    level, y, w = _check_data(sk, dose, dlt, weights)
    curve = _curve(sk, model, intercept)
    density = _kernel(sk, model, intercept, prior_sd, level, y, w)
    den = _quad(density, -np.inf, np.inf)
    est = _quad(lambda b: b * density(b), -_MOMENT_BOUND, _MOMENT_BOUND) / den
    e2 = _quad(lambda b: b * b * density(b), -_MOMENT_BOUND, _MOMENT_BOUND) / den
    var = e2 - est**2
    crit = float(ndtri(0.5 + conf_level / 2))
    sd = math.sqrt(var) if var >= 0 else math.nan
    ptox = curve(np.array([est]))[0]
    # the curve decreases in beta's upper bound, so the upper beta gives the lower probability
    lower = curve(np.array([est + crit * sd]))[0]
    upper = curve(np.array([est - crit * sd]))[0]
    return CrmFit(est, var, ptox, lower, upper, mtd_rule(ptox, target), w)


def mtd_rule(ptox: np.ndarray, target: float) -> int:
    """dfcrm: the top dose if all ptox <= target, dose 1 if all >= target, otherwise the first dose
    with the smallest |ptox - target| (a tie goes to the lower dose)."""
    if (ptox <= target).all():
        return int(ptox.size)
    if (ptox >= target).all():
        return 1
    return int(np.argmin(np.abs(ptox - target))) + 1


class CRM(Design):
    """dfcrm's CRM (``window`` None) or TITE-CRM (``window`` in days with linear or adaptive weights).
    ``fit`` recommends the model dose, unrestricted, exactly as dfcrm's ``crm$mtd``; wrap it
    (see :func:`make_crm`) for no skipping, coherence and a safety stop."""

    def __init__(self, skeleton, target: float, *, model: str = "empiric", intercept: float = 3.0,
                 prior_sd: float = DEFAULT_PRIOR_SD, window: float | None = None, weights: str = "linear",
                 conf_level: float = 0.90):
        self.skeleton = skeleton
        self.target = target
        self.model = model
        self.intercept = intercept
        self.prior_sd = prior_sd
        self.window = window
        self.weights = weights
        self.conf_level = conf_level

    @property
    def n_levels(self) -> int:
        return len(self.skeleton)

    def patient_weights(self, outcomes: Outcomes) -> np.ndarray | None:
        if self.window is None:
            return None
        if outcomes.followup is None:
            raise ValueError("TITE-CRM needs each patient's follow-up (a followup column)")
        if self.weights == "linear":
            return linear_weights(outcomes.followup, self.window)
        if self.weights == "adaptive":
            return adaptive_weights(outcomes.followup, outcomes.dlt, self.window)
        raise ValueError(f"unknown weights {self.weights!r}: use linear or adaptive")

    def fit_model(self, outcomes: Outcomes) -> CrmFit:
        return fit_crm(self.skeleton, self.target, outcomes.dose, outcomes.dlt, self.patient_weights(outcomes),
                       model=self.model, intercept=self.intercept, prior_sd=self.prior_sd,
                       conf_level=self.conf_level)

    def prob_above(self, outcomes: Outcomes, level: int, threshold: float) -> float:
        """Posterior P(p_level > threshold) under the model (for the safety stop)."""
        sk = np.asarray(self.skeleton, dtype=np.float64)
        idx, y, w = _check_data(sk, outcomes.dose, outcomes.dlt, self.patient_weights(outcomes))
        dens = _kernel(sk, self.model, self.intercept, self.prior_sd, idx, y, w)
        # p_level decreases in beta: p > threshold below the crossing point b*
        if self.model == "empiric":
            b_star = math.log(math.log(threshold) / math.log(sk[level - 1]))
        else:
            scaled = math.log(sk[level - 1] / (1 - sk[level - 1])) - self.intercept
            b_star = math.log((math.log(threshold / (1 - threshold)) - self.intercept) / scaled)
        kw = dict(epsabs=0.0, epsrel=_REL_TOL, limit=_LIMIT)
        below = integrate.quad(dens, -np.inf, b_star, **kw)[0]
        above = integrate.quad(dens, b_star, np.inf, **kw)[0]
        return below / (below + above)

    def fit(self, outcomes: Outcomes, current_dose: int | None = None) -> Recommendation:
        d = self._current(outcomes, current_dose)
        f = self.fit_model(outcomes)
        extra = {"model_dose": f.model_dose, "ptox": f.ptox.tolist(), "ptox_lower": f.ptox_lower.tolist(),
                 "ptox_upper": f.ptox_upper.tolist(), "beta_mean": f.beta_mean, "beta_var": f.beta_var}
        if self.window is not None:
            extra["weights"] = f.weights.tolist()
        reason = (f"estimated toxicity at dose {f.model_dose} ({f.ptox[f.model_dose - 1]:.3f}) is closest "
                  f"to the target {self.target}")
        return Recommendation(f.model_dose, decision_between(d, f.model_dose), reason, f.model_dose, extra)
