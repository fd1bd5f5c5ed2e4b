"""docs/agents.md says what the code does: every tool, and the tools each built-in role sees."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from steward.access.roles import BUILTIN_ROLES
from steward.mcpserver import TOOL_PERMISSIONS

DOC = (Path(__file__).resolve().parents[2] / "docs" / "agents.md").read_text(encoding="utf-8")


def _documented_roles() -> dict[str, set[str]]:
    table: dict[str, set[str]] = {}
    for role, tools in re.findall(r"^\| `([a-z]+)` \| ([^|]+) \|$", DOC, re.MULTILINE):
        names = set()
        for item in (t.strip() for t in tools.split(",")):
            if item == "list/read_desired_state":
                names |= {"list_desired_state", "read_desired_state"}
            elif item == "all":
                names |= set(TOOL_PERMISSIONS)
            else:
                names.add(item)
        table[role] = names
    return table


def test_every_tool_is_documented_with_its_permission() -> None:
    for tool, permission in TOOL_PERMISSIONS.items():
        row = re.search(rf"^\| `{tool}` \|.*$", DOC, re.MULTILINE)
        assert row is not None, tool
        assert f"`{permission}`" in row.group(0), tool


@pytest.mark.parametrize("role", sorted(BUILTIN_ROLES))
def test_the_role_table_matches_the_permissions(role: str) -> None:
    held = BUILTIN_ROLES[role]
    expected = {t for t, p in TOOL_PERMISSIONS.items() if p in held or "admin" in held}
    assert _documented_roles()[role] == expected
