"""Steward: a control plane through which AI agents and people change infrastructure safely."""

__version__ = "0.1.0"
