"""Which tools a caller is shown: the permission each tool needs, and what a caller holds.

A caller sees a tool only if one of its roles (in some environment) holds the permission the
tool needs, so a planner never sees ``approve_change`` or ``deploy_change``; the gate
(:mod:`steward.mcpserver.gate`) filters tool lists and refuses calls by these.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from steward.access.principal import Principal
from steward.access.roles import PERMISSIONS
from steward.pipeline.service import Pipeline

#: The permission each tool needs; the tool list a caller sees is filtered by these, and a
#: call to a tool the caller does not hold is refused before it runs. ``run_task`` is shown
#: with ``task:run_readonly``; a task that is not read-only also needs ``task:run``, checked
#: per task by the task service.
TOOL_PERMISSIONS: Final[Mapping[str, str]] = {
    "query": "query",
    "ask": "query",
    "describe_data": "query",
    "get_node": "query",
    "get_report": "report:read",
    "list_desired_state": "desired_state:read",
    "read_desired_state": "desired_state:read",
    "get_change": "desired_state:read",
    "get_deployment": "desired_state:read",
    "propose_change": "change:propose",
    # Reading the stored report is reading the change; again=True (a new analysis) is
    # checked for change:impact by the pipeline.
    "run_impact_analysis": "desired_state:read",
    "record_validation": "change:validate",
    "approve_change": "change:approve",
    "reject_change": "change:reject",
    "deploy_change": "change:deploy",
    "rollback_change": "change:rollback",
    "list_tasks": "desired_state:read",
    "run_task": "task:run_readonly",
    "get_job": "report:read",
}


def held_permissions(pipeline: Pipeline, identity: Principal) -> frozenset[str]:
    """Every permission the identity holds in at least one environment (for tool lists)."""
    held: set[str] = set()
    for role_name, _scope in pipeline.rbac.roles_of(identity):
        role = pipeline.rbac.roles.get(role_name)
        if role is not None:
            held |= role.permissions
    return frozenset(PERMISSIONS) if "admin" in held else frozenset(held)


def visible_tools(pipeline: Pipeline, identity: Principal) -> list[str]:
    """The tools the identity is shown, sorted."""
    held = held_permissions(pipeline, identity)
    return sorted(name for name, permission in TOOL_PERMISSIONS.items() if permission in held)
