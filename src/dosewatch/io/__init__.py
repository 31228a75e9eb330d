"""Readers and writers. Everything after io/ works on the canonical Cohort in canonical units."""
from .reading import ReadOptions, ReadResult, finish, read_any

__all__ = ["ReadOptions", "ReadResult", "finish", "read_any"]
