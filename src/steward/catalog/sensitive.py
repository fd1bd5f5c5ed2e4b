"""Sensitive values as a type in the catalog's JSON.

A sensitive parameter value never appears in a catalog document. In its place stands the
placeholder ``{"__sensitive__": KEY}``; the catalog's ``sensitive`` map holds a keyed digest
of each value (so a rotation still changes the catalog hash), and the values themselves
travel only in a separate delivery bundle that is never stored, printed or diffed.
Wherever a sensitive value would be displayed, the one marker of
:mod:`steward.catalog.redaction` stands instead.
"""

from __future__ import annotations

from typing import Any

from steward.catalog.redaction import REDACTED as REDACTED  # noqa: PLC0414 (the one marker)

SENSITIVE_KEY = "__sensitive__"


def sensitive_placeholder(key: str) -> dict[str, str]:
    return {SENSITIVE_KEY: key}


def is_sensitive_placeholder(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and SENSITIVE_KEY in value


def placeholder_key(value: dict[str, str]) -> str:
    return value[SENSITIVE_KEY]
