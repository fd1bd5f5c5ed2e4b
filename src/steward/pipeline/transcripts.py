"""Agents' transcripts: the steps of an agent's work (see :mod:`steward.agentflow`) a
change's audit trail records, checked before they are written."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from steward.errors import StewardError

#: What one step of an agent's transcript may be (see steward.agentflow).
TRANSCRIPT_KINDS = frozenset({"prompt", "tool_call", "tool_result", "message", "diagnosis"})
MAX_TRANSCRIPT_BYTES = 16_384


def transcript_step(agent: str, identity: str, kind: str,
                    content: Mapping[str, Any]) -> dict[str, Any]:
    """The audit parameters of one step, or :class:`StewardError` for an unknown kind or
    content too large to keep in the trail."""
    if kind not in TRANSCRIPT_KINDS:
        raise StewardError(f"transcript kind {kind!r} is invalid: one of "
                           f"{', '.join(sorted(TRANSCRIPT_KINDS))}")
    size = len(json.dumps(content, sort_keys=True, default=str))
    if size > MAX_TRANSCRIPT_BYTES:
        raise StewardError(f"transcript step content is {size} bytes; at most "
                           f"{MAX_TRANSCRIPT_BYTES} (clip tool results before sending)")
    return {"agent": agent, "identity": identity, "kind": kind, "content": dict(content)}
