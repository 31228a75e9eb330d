"""The daily monitor (``evaluation``) and its text report (``report``)."""
from .evaluation import SEVERITY_ORDER, Alert, Assessment, DoseAction, Finding, evaluate

__all__ = ["SEVERITY_ORDER", "Alert", "Assessment", "DoseAction", "Finding", "evaluate"]
