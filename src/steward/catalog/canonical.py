"""Canonical JSON, so that equal documents are equal bytes and hash the same."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from typing import Any

#: The C encoder ``json.dumps`` uses when it can (None without the accelerator module).
_c_make_encoder: Callable[..., Callable[[Any, int], Iterable[str]]] | None = getattr(
    json.encoder, "c_make_encoder", None
)

#: ``json.dumps``'s string encoder for ``ensure_ascii=False`` (the C one when available).
encode_string: Callable[[str], str] = json.encoder.encode_basestring
_DEFAULT = json.JSONEncoder().default


def canonical_json(document: Any, *, indent: int | None = None) -> str:
    """Serialise with sorted keys and fixed separators; the basis of every content hash."""
    if indent is None:
        return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return json.dumps(document, sort_keys=True, indent=indent, ensure_ascii=False)


def _make_c_encoder() -> Callable[[Any, int], Iterable[str]] | None:
    if _c_make_encoder is None:  # pragma: no cover
        return None
    try:
        encoder: Callable[[Any, int], Iterable[str]] = _c_make_encoder(
            {}, _DEFAULT, encode_string, None, ":", ",", True, False, True
        )
    except TypeError:  # pragma: no cover
        return None
    return encoder


def _c_encoder_agrees() -> bool:
    """The factory is json's private API: use it only if it still matches ``json.dumps``
    (a Python release could change its signature or meaning). Checked once, at import."""
    probe: Any = {"b": [1, True, None, 1.5, "é\"x"], "a": {"z": "", "y": -2}}
    encoder = _make_c_encoder()
    return encoder is not None and "".join(encoder(probe, 0)) == canonical_json(probe)


_USE_C_ENCODER = _c_encoder_agrees()


def compact_encoder() -> Callable[[Any, int], Iterable[str]]:
    """``json``'s C encoder as ``canonical_json`` (compact) configures it: ``"".join(encoder(
    value, 0))`` equals ``canonical_json(value)``, minus the cost of ``json.dumps`` building a
    new encoder on every call, which exceeds that of encoding a small value.

    Each call gives a new encoder, with its own circular-reference markers: one is never shared
    between threads, nor left dirty by a failed serialisation for the next.
    """
    encoder = _make_c_encoder() if _USE_C_ENCODER else None
    if encoder is not None:
        return encoder

    def encode(value: Any, _level: int) -> Iterable[str]:  # pragma: no cover
        return (canonical_json(value),)

    return encode


def text_hash(text: str) -> str:
    """``sha256:<hex>`` of a canonical serialisation."""
    return f"sha256:{hashlib.sha256(text.encode('utf-8')).hexdigest()}"


def content_hash(document: Any) -> str:
    """``sha256:<hex>`` of the canonical serialisation."""
    return text_hash(canonical_json(document))
