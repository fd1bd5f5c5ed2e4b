"""The Infra Assistant: questions in plain language answered by PQL queries a model writes.

:func:`answer` is the one entry point (REST ``POST /api/v1/ask``, ``steward ask`` and the
MCP tool all call it); :mod:`steward.assistant.config` says which model; the evaluation
(:mod:`steward.assistant.evaluate`) measures execution accuracy on a fixed fleet.
docs/assistant.md is the reference.
"""

from __future__ import annotations

from steward.assistant.config import (
    AssistantConfigError,
    AssistantNotConfigured,
    ModelConfig,
    build_model,
    load_config,
    parse_spec,
)
from steward.assistant.core import (
    DEFAULT_LIMIT,
    MAX_ATTEMPTS,
    Answer,
    AskError,
    Attempt,
    ModelFailed,
    PqlQuery,
    answer,
)

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_ATTEMPTS",
    "Answer",
    "AskError",
    "AssistantConfigError",
    "AssistantNotConfigured",
    "Attempt",
    "ModelConfig",
    "ModelFailed",
    "PqlQuery",
    "answer",
    "build_model",
    "load_config",
    "parse_spec",
]
