"""dosewatch: start dangerous cancer drugs safely."""

__version__ = "0.1.0"
