"""One-at-a-time sensitivity (the tornado): how a scenario's cycle-1 outcome moves when each
uncertain parameter goes to the low and the high end of its range, the others at their central
values. Run on the model alone (no record, no monitor: ``Arm.watch = False``), so it ranks the
assumptions behind the untreated-by-the-monitor rates; it does not include the monitor's holds."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import params
from .loop import Arm, run
from .outcomes import OUTCOMES
from .population import sample
from .scenario import Scenario, arm_protocol


def _rates(scenario: Scenario, base: Path, values: params.Values, n: int, seed: int, outcome: str) -> list[float]:
    pop = sample(n, values, np.random.default_rng([seed, 0]))
    out = []
    for spec in scenario.arms:
        protocol = arm_protocol(spec, base)
        arm = Arm(protocol, scenario.days, spec.labs, spec.hydration, spec.rasburicase, spec.allopurinol,
                  dict(spec.adherence), spec.monitor_acts, watch=False)
        trace = run(arm, pop, values, seed)
        out.append(float((trace.truth[outcome] <= protocol.study_drug.cycle_days).mean()))
    return out


def tornado(scenario: Scenario, base: Path = Path("."), outcome: str = "lab_tls", patients: int = 1000,
            seed: int | None = None, names: list[str] | None = None) -> dict[str, Any]:
    """Per parameter: the outcome in each arm, and the last arm minus the first, at the low and high
    ends of its range; sorted by the swing of that difference."""
    if outcome not in OUTCOMES:
        raise KeyError(f"unknown outcome {outcome!r}; one of {', '.join(OUTCOMES)}")
    seed = scenario.seed if seed is None else seed
    central = params.with_overrides(params.central(), scenario.parameters)
    base_rates = _rates(scenario, base, central, patients, seed, outcome)
    rows = []
    for name in names or [n for n in params.uncertain() if n not in scenario.parameters]:
        lo, hi = params.catalog()[name].range
        at = {}
        for end, value in (("low", lo), ("high", hi)):
            rates = _rates(scenario, base, params.with_overrides(central, {name: value}), patients, seed, outcome)
            at[end] = {"value": value, "rates": [round(r, 4) for r in rates], "difference": round(rates[-1] - rates[0], 4)}
        p = params.catalog()[name]
        rows.append({"parameter": name, "status": p.status, "source": p.source, "central": p.value, **at,
                     "swing": round(abs(at["high"]["difference"] - at["low"]["difference"]), 4)})
    rows.sort(key=lambda r: -r["swing"])
    return {"scenario": scenario.id, "outcome": outcome, "label": OUTCOMES[outcome], "patients": patients, "seed": seed,
            "arms": [a.id for a in scenario.arms], "central_rates": [round(r, 4) for r in base_rates],
            "central_difference": round(base_rates[-1] - base_rates[0], 4),
            "method": "one at a time, each parameter at the ends of its range; the model alone, without the monitor",
            "parameters": rows}


def tornado_svg(result: dict, top: int = 15) -> str:
    """The tornado chart: bars from the low-end to the high-end difference, around the central one."""
    rows = result["parameters"][:top]
    if not rows:
        return "<svg/>"
    values = [r["low"]["difference"] for r in rows] + [r["high"]["difference"] for r in rows] + [result["central_difference"]]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    w, left, row = 760, 260, 20
    x = lambda v: left + (w - left - 20) * (v - lo) / span  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{row * len(rows) + 40}" font-size="12" '
             'font-family="sans-serif">',
             f'<text x="0" y="14">{result["label"]}: {result["arms"][-1]} minus {result["arms"][0]}, cycle 1</text>']
    for i, r in enumerate(rows):
        y = 24 + i * row
        a, b = sorted((r["low"]["difference"], r["high"]["difference"]))
        parts.append(f'<text x="0" y="{y + 13}">{r["parameter"]}</text>')
        parts.append(f'<rect x="{x(a):.1f}" y="{y + 3}" width="{max(x(b) - x(a), 1):.1f}" height="13" fill="#4a78b5"/>')
    c = x(result["central_difference"])
    parts.append(f'<line x1="{c:.1f}" x2="{c:.1f}" y1="20" y2="{24 + row * len(rows)}" stroke="#c33"/>')
    parts.append(f'<text x="{left}" y="{row * len(rows) + 38}">{100 * lo:+.1f} points</text>'
                 f'<text x="{w - 90}" y="{row * len(rows) + 38}">{100 * hi:+.1f} points</text></svg>')
    return "".join(parts)


def joint_uncertainty(scenario: Scenario, base: Path = Path("."), draws: int = 100, patients: int = 500,
                      seed: int | None = None) -> dict[str, Any]:
    """Every uncertain parameter drawn together from its range (``params.drawn``), ``draws`` times; per
    arm and outcome the 2.5th, 50th and 97.5th percentiles of the cycle-1 rate across draws, and of the
    last arm minus the first. The model alone, without the monitor. Each draw has its own virtual
    patients, so the interval holds both parameter uncertainty and sampling."""
    seed = scenario.seed if seed is None else seed
    keys = list(OUTCOMES)
    rates = np.zeros((draws, len(scenario.arms), len(keys)))
    fixed = set(scenario.parameters)
    names = [n for n in params.uncertain() if n not in fixed]
    for k in range(draws):
        values = params.with_overrides(params.drawn(np.random.default_rng([seed, 7, k]), names), scenario.parameters)
        pop = sample(patients, values, np.random.default_rng([seed, 8, k]))
        for a, spec in enumerate(scenario.arms):
            protocol = arm_protocol(spec, base)
            arm = Arm(protocol, scenario.days, spec.labs, spec.hydration, spec.rasburicase, spec.allopurinol,
                      dict(spec.adherence), spec.monitor_acts, watch=False)
            trace = run(arm, pop, values, seed * 1000 + k)
            for j, key in enumerate(keys):
                rates[k, a, j] = (trace.truth[key] <= protocol.study_drug.cycle_days).mean()

    def band(x: np.ndarray) -> dict[str, float]:
        lo, mid, hi = np.percentile(x, [2.5, 50, 97.5])
        return {"median": round(float(mid), 4), "interval95": [round(float(lo), 4), round(float(hi), 4)]}

    arms = [{"id": spec.id, **{key: band(rates[:, a, j]) for j, key in enumerate(keys)}} for a, spec in enumerate(scenario.arms)]
    diff = {key: {**band(rates[:, -1, j] - rates[:, 0, j]),
                  "draws_last_arm_worse": int((rates[:, -1, j] > rates[:, 0, j]).sum())} for j, key in enumerate(keys)}
    return {"scenario": scenario.id, "draws": draws, "patients_per_draw": patients, "seed": seed,
            "method": "all uncertain parameters drawn jointly from their ranges (uniform; log-uniform over > 3-fold); "
                      "the model alone, without the monitor",
            "arms": arms, "last_minus_first": diff}
