"""Canonical JSON, so that equal documents are equal bytes and hash the same."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(document: Any, *, indent: int | None = None) -> str:
    """Serialise with sorted keys and fixed separators; the basis of every content hash."""
    if indent is None:
        return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return json.dumps(document, sort_keys=True, indent=indent, ensure_ascii=False)


def content_hash(document: Any) -> str:
    """``sha256:<hex>`` of the canonical serialisation."""
    digest = hashlib.sha256(canonical_json(document).encode("utf-8")).hexdigest()
    return f"sha256:{digest}"
