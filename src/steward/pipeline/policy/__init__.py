"""Policy as code: Rego policies over a change's impact, their configuration, the sandbox
they run in and ``steward policy test``."""

from __future__ import annotations

from steward.pipeline.policy.evaluate import (
    PolicySet,
    check_policy_set,
    evaluate,
    install_default_policies,
    load_policy_set,
)
from steward.pipeline.policy.inputs import policy_input
from steward.pipeline.policy.opa_tests import run_policy_tests

__all__ = [
    "PolicySet",
    "check_policy_set",
    "evaluate",
    "install_default_policies",
    "load_policy_set",
    "policy_input",
    "run_policy_tests",
]
