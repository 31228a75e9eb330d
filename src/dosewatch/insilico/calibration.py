"""Checking the model against published rates (``data/insilico/targets.yaml``).

For each target the model is run on the target's regimen and its cycle-1 rate compared with the
published proportion's exact 95% interval. This is a check, not a fit: nothing is optimised yet, and
targets marked "tuned" guided the hand-set parameters, so only "held-out" ones test the model."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..protocols import load_protocol
from ..protocols.model import Escalation, Prophylaxis, ProphylaxisStep, Protocol
from . import params
from .loop import Arm, run
from .outcomes import clopper_pearson
from .population import sample


def target_protocol(spec: dict) -> Protocol:
    """A built-in protocol with the target's changes (start level, prophylaxis, escalation)."""
    protocol = load_protocol(spec["protocol"])
    sd = protocol.study_drug
    update: dict[str, Any] = {}
    if "start_level" in spec:
        sd = sd.model_copy(update={"start_level": spec["start_level"]})
    if "escalation" in spec:
        e = spec["escalation"]
        sd = sd.model_copy(update={"escalation": Escalation(every_days=e["every_days"], steps=1, max_level=e["max_level"],
                                                            unless_grade_at_least=3, source=sd.source)})
    update["study_drug"] = sd
    proph = spec.get("prophylaxis", "protocol")
    if proph == "none":
        update["prophylaxis"] = ()
    elif isinstance(proph, dict):
        steps = tuple(ProphylaxisStep(days=s["days"], cycles="1", dose=s["dose"]) for s in proph["steps"])
        update["prophylaxis"] = (Prophylaxis(id="steroid", drug=proph["drug"], role="steroid", steps=steps,
                                             source=sd.source),)
    return protocol.model_copy(update=update)


def calibrate(patients: int = 300, seed: int = 0, days: int = 28) -> dict[str, Any]:
    """Model rate vs each published rate; ``within`` says whether the model's rate lies inside the
    published proportion's exact 95% interval."""
    table = params.table("targets")
    v = params.central()
    pop = sample(patients, v, np.random.default_rng([seed, 0]))
    cache: dict[str, Any] = {}
    rows = []
    for t in table["targets"]:
        key = repr(sorted(t["arm"].items()))
        if key not in cache:
            spec = t["arm"]
            arm = Arm(target_protocol(spec), days, spec.get("labs", "protocol"), allopurinol=spec.get("allopurinol", False))
            cache[key] = run(arm, pop, v, seed)
        trace = cache[key]
        hit = trace.truth[t["outcome"]] <= days
        model = float(hit.mean())
        m_lo, m_hi = clopper_pearson(int(hit.sum()), patients)
        lo, hi = clopper_pearson(t["events"], t["patients"])
        rows.append({
            "id": t["id"], "source": table["sources"][t["source"]], "outcome": t["outcome"], "use": t["use"],
            "published": {"events": t["events"], "patients": t["patients"], "rate": round(t["events"] / t["patients"], 4),
                          "ci95": [round(lo, 4), round(hi, 4)], "status": t["status"]},
            "model": {"rate": round(model, 4), "ci95": [round(m_lo, 4), round(m_hi, 4)], "patients": patients},
            "within": bool(lo <= model <= hi),
            "note": t.get("note"),
        })
    held = [r for r in rows if r["use"] == "held-out"]
    return {"patients": patients, "seed": seed, "days": days, "targets": rows,
            "held_out_within": sum(r["within"] for r in held), "held_out": len(held),
            "fitted": "nothing is fitted by an optimiser yet; 'tuned' targets guided hand-set parameters"}



