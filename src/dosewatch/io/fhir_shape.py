"""Validation of FHIR resources by shape: the same verdict as fhir.resources' pydantic models, faster.

Validating every resource with its pydantic model takes ~0.3 ms an Observation: too slow for a
trial's daily labs. A resource's verdict depends on its shape (which elements, nested how, with
which JSON types) and on each primitive value against its FHIR type (code, id, uri, dateTime,
decimal, ...); fhir.resources checks no value against another. So the first resource of each
shape is validated in full; its shape's primitive elements get the same type validators the model
uses (``TypeAdapter`` of the field's annotation); a later resource of that shape has only its
values checked (each distinct value once per position). Any failure, and any shape whose path
cannot be followed (contained resources), goes to the full validation, which reports the errors.
"""
from __future__ import annotations

from functools import cache
from typing import Any

import pydantic

_SHAPES: dict[tuple, list | None] = {}  # (resource type, shape) -> [(validator, values seen)] or None: always in full
_SEEN_MAX = 256


def _shape(value: Any, leaves: list) -> Any:
    """The hashable shape of a JSON value; appends its primitive values to ``leaves`` in order."""
    kind = type(value)  # json.loads gives plain dicts and lists; list comprehensions beat generators here
    if kind is dict:
        return tuple([(k, _shape(v, leaves)) for k, v in value.items()])
    if kind is list:
        return (None, *[_shape(v, leaves) for v in value])  # a dict's items are pairs: no clash
    leaves.append(value)
    return kind


def _shallow_shape(value: dict, leaves: list) -> Any:
    """``_shape`` of an object whose values are primitives or objects of primitives (a bundle entry's
    fullUrl and request), in one loop without recursion; None for anything deeper (use ``_shape``)."""
    out = []
    for k, v in value.items():
        kind = type(v)
        if kind is dict:
            inner = []
            for k2, v2 in v.items():
                kind2 = type(v2)
                if kind2 is dict or kind2 is list:
                    return None
                inner.append((k2, kind2))
                leaves.append(v2)
            out.append((k, tuple(inner)))
        elif kind is list:
            return None
        else:
            out.append((k, kind))
            leaves.append(v)
    return tuple(out)


def _leaves_ok(checks: list, leaves: list) -> bool:
    try:
        for (check, seen), value in zip(checks, leaves, strict=True):
            if value not in seen:
                check(value)
                if len(seen) < _SEEN_MAX:
                    seen.add(value)
    except (pydantic.ValidationError, ValueError, TypeError):
        return False
    return True


@cache
def _adapter(annotation: Any):
    return pydantic.TypeAdapter(annotation).validate_python


def _unwrap(annotation: Any) -> Any:
    import typing

    while typing.get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def _leaf_checks(model: Any, resource: dict, root: bool = True) -> list | None:
    """The validators of a (valid) resource's primitive values, in ``_shape`` order; None when a
    path cannot be followed to its FHIR type."""
    import typing

    out: list = []

    def walk_model(klass: Any, obj: dict, root: bool = False) -> None:
        fields = {f.alias or name: f.annotation for name, f in klass.model_fields.items()}
        for k, v in obj.items():
            if root and k == "resourceType":
                out.append((lambda _: None, set()))
            elif k in fields:
                walk(fields[k], v)
            else:
                raise LookupError(k)

    def walk(annotation: Any, value: Any) -> None:
        annotation = _unwrap(annotation)
        if isinstance(value, list):
            if typing.get_origin(annotation) is not list:
                raise LookupError(annotation)
            for item in value:
                walk(typing.get_args(annotation)[0], item)
        elif isinstance(value, dict):
            if not hasattr(annotation, "get_model_klass") or annotation.get_model_klass() is None:
                raise LookupError(annotation)
            walk_model(annotation.get_model_klass(), value)
        else:
            out.append((_adapter(annotation), set()))

    try:
        walk_model(model, resource, root=root)
    except (LookupError, TypeError, pydantic.PydanticSchemaGenerationError):
        return None
    return out
