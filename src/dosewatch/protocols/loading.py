"""Loading protocols: a user's YAML file or a built-in one, validated field by field."""
from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from ..errors import InputError, Problem
from ..yaml_load import YAMLError, safe_load
from .model import Protocol

BUILTIN = ("lenalidomide-cll-25mg-2007", "lenalidomide-cll-escalation", "venetoclax-cll-rampup")


def parse_protocol(text: str, where: str) -> Protocol:
    """Validate protocol YAML; every problem names the field (``study_drug.levels.0.dose``)."""
    try:
        raw = safe_load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise InputError([Problem(f"{where}{at}", "yaml", str(getattr(exc, "problem", exc)))]) from exc
    if not isinstance(raw, dict):
        raise InputError([Problem(where, "(top)", "a protocol is a YAML mapping")])
    try:
        protocol = Protocol.model_validate(raw)
    except ValidationError as exc:
        problems = [
            Problem(where, ".".join(str(p) for p in err["loc"]) or "(top)", err["msg"]) for err in exc.errors()
        ]
        raise InputError(problems) from exc
    return checked(protocol, where)


def checked(protocol: Protocol, where: str) -> Protocol:
    """``protocol`` if every term, criteria id, drug and analyte code in it is one dosewatch knows;
    else InputError naming each unknown one's field and the closest known value."""
    from .known import unknown_names

    problems = unknown_names(protocol, where)
    if problems:
        raise InputError(problems)
    return protocol


@cache
def builtin(protocol_id: str) -> Protocol:
    if protocol_id not in BUILTIN:
        raise KeyError(f"no built-in protocol {protocol_id!r}; built-in: {', '.join(BUILTIN)}")
    text = resources.files("dosewatch.protocols").joinpath(f"data/{protocol_id}.yaml").read_text()
    return parse_protocol(text, f"{protocol_id}.yaml")


def load_protocol(id_or_path: str | Path) -> Protocol:
    """A built-in protocol by id, or a user's protocol file."""
    if str(id_or_path) in BUILTIN:
        return builtin(str(id_or_path))
    path = Path(id_or_path)
    if not path.exists():
        raise InputError([Problem(str(path), "protocol", f"no such file, and not a built-in id ({', '.join(BUILTIN)})")])
    return parse_protocol(path.read_text(), str(path))


def json_schema() -> dict:
    return Protocol.model_json_schema()
