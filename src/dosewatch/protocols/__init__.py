"""Protocols as data: the model (``model``), loading and the built-in protocols (``loading``),
schedule expansion (``schedule``)."""
from .loading import BUILTIN, builtin, json_schema, load_protocol, parse_protocol

__all__ = ["BUILTIN", "builtin", "json_schema", "load_protocol", "parse_protocol"]
