"""How the pages write things people read: units as clinicians write them (one function for every
page), and an alert as what happened, what to do, and a prompt for the note."""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
_NAMED = {"Cel": "°C", "[degF]": "°F", "1": "", "{score}": "", "%": "%", "[iU]/L": "IU/L", "U/L": "U/L",
          "mm[Hg]": "mmHg", "/min": "/min", "{beats}/min": "/min", "{breaths}/min": "/min", "meq/L": "mEq/L",
          "mL/min/{1.73_m2}": "mL/min/1.73 m²", "mL/min/1.73m2": "mL/min/1.73 m²", "m2": "m²", "kg/m2": "kg/m²"}


@lru_cache(maxsize=512)
def unit_text(unit: str | None) -> str:
    """A UCUM code as people write it: ``10*9/L`` -> 10⁹/L, ``10*3/uL`` -> 10³/µL, ``Cel`` -> °C,
    ``umol/L`` -> µmol/L; a dimensionless score shows no unit. Anything else is shown as given."""
    if not unit:
        return ""
    if unit in _NAMED:
        return _NAMED[unit]
    text = re.sub(r"10\*(-?\d+)", lambda m: "10" + m.group(1).translate(_SUPERSCRIPT), unit)
    text = re.sub(r"(?<![A-Za-z])u(?=(mol|g|L|l)\b)", "µ", text)
    return re.sub(r"\{[^}]*\}", "", text)


def shown_unit(analyte, choice: str) -> str | None:
    """The unit a user who chose ``choice`` (reported | si | conventional) sees ``analyte`` in;
    None: as each value was reported."""
    if choice == "si":
        return analyte.unit
    if choice == "conventional":
        return analyte.conventional or analyte.unit
    return None


def from_canonical(analyte, unit: str):
    """canonical value -> value in ``unit`` (exact: the catalog's linear conversion)."""
    scale, offset = analyte.conversion(unit)
    return lambda v: None if v is None else (v - offset) / scale


# A note prompt by the kind of alert: what the nurse usually records for it.
_PROMPTS = (
    (":tls", "e.g. potassium repeated 5.1; IV fluids started; rasburicase given"),
    (":airway", "e.g. airway assessed; patient sent to the emergency department"),
    (":flare", "e.g. prednisone given; largest node 3 cm, tender"),
    (":neutropenia", "e.g. ANC repeated; temperature 38.4 °C; antibiotics started"),
    (":thrombocytopenia", "e.g. platelets repeated; no bleeding"),
    (":renal", "e.g. creatinine repeated; fluids; dose held"),
    ("adherence:prophylaxis", "e.g. steroid taken late, confirmed with the patient"),
    ("adherence:lab-missing", "e.g. drawn, result pending; or why it was not done"),
    ("adherence:", "e.g. dose confirmed with the patient or pharmacy"),
)


def note_prompt(rule: str) -> str:
    for key, prompt in _PROMPTS:
        if key in rule:
            return prompt
    return "what you found or did"


# What an alert without a protocol rule of its own asks for (monitor-wide and grade alerts).
_TODO = (
    ("adherence:prophylaxis", "Confirm the prophylaxis with the patient and give it before the next dose."),
    ("adherence:lab-missing", "Draw or record the missing assessments, or note why they were not done."),
    ("adherence:dose-while-held", "Check with the investigator: the protocol holds this drug."),
    ("adherence:dose-differs", "Check the dose given against the plan and the dose actions with the investigator."),
    ("adherence:study-drug-not-recorded", "Record the doses taken or missed (ask the patient or pharmacy)."),
    ("adherence:", "Check the dosing record with the patient and the investigator."),
)


def alert_parts(alert: dict[str, Any]) -> dict[str, str]:
    """What happened (the event and grade, without the rule text the message repeats) and what to
    do (the protocol rule's instruction, else what the kind of alert asks); the full message stays
    in the folded details."""
    message = alert.get("message") or ""
    rule = alert.get("rule") or ""
    info = alert.get("info") or {}
    rule_text = info.get("message") or ""
    what = message
    if info.get("action") and rule_text and f": {rule_text[:40]}" in message:
        what = message[:message.index(f": {rule_text[:40]}")]
    what = what.split(". Note:")[0].rstrip(".")
    # a reported clinical event says what it asks first ("Airway obstruction reported (no grade; ...):
    # emergency: secure the airway ..."): that leads what to do
    ask = ""
    if " reported (" in what and "): " in what:
        head, ask = what.split("): ", 1)
        what, ask = head + ")", ask.split(". ")[0].rstrip(".")
    if info.get("action"):
        todo = f"{ask[:1].upper()}{ask[1:]}. {rule_text}" if ask else rule_text
    elif ask:
        todo = f"{ask[:1].upper()}{ask[1:]}."
    else:
        todo = next((text for key, text in _TODO if rule.startswith(key)),
                    "Review the patient; the protocol's dose rules act on this grade where they name it.")
    return {"what": what, "todo": todo}


def grouped_in_order(rows: list[dict[str, Any]], key: str) -> list[tuple[Any, list[dict[str, Any]]]]:
    """Rows grouped by ``key`` in the order the groups first appear (the inbox's order: the patient
    with the most severe alert first), each group keeping its rows' order."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row[key], []).append(row)
    return list(groups.items())


_ACTION_WORDS = {"hold": "Hold", "discontinue": "Stop", "resume": "Resume", "reduce": "Reduce",
                 "continue": "Continue", "escalate": "Escalate"}


def action_words(d: dict[str, Any]) -> str:
    """A dose action as a sentence: 'Hold lenalidomide (25 mg, dose level 5)'; the reason follows it."""
    verb = _ACTION_WORDS.get(d.get("action") or "", (d.get("action") or "").capitalize())
    dose = d.get("dose")
    at = "at " if d.get("action") in ("resume", "reduce", "escalate") else ""
    where = f" ({at}{dose:g} mg, dose level {d['level']})" if dose is not None and d.get("level") is not None else ""
    return f"{verb} {d.get('drug') or ''}{where}".strip()


def reason_words(text: str | None) -> str:
    """The monitor's reason without an empty grade ('grade -' for a syndrome that has none)."""
    return re.sub(r" grade -(?= |$)", "", text or "")
