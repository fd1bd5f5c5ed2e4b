"""Errors of policy sets, each naming the policy file and line or policies.yaml field at fault."""

from __future__ import annotations

from steward.errors import StewardError


class PolicyError(StewardError):
    """A policy set cannot be loaded, compiled, evaluated or tested."""


class PolicyConfigError(PolicyError):
    """``policies.yaml`` is malformed: YAML syntax, unknown field, bad level or environment."""


class RegoSyntaxError(PolicyError):
    """A Rego module does not parse or compile (file:line:column)."""


class PolicyRuntimeError(PolicyError):
    """A policy failed while evaluating (a conflict, a value Steward cannot read)."""
