"""The one redaction rule: which keys are secret, what replaces a secret, and the walks.

Everything that shows data to someone other than its owner (the audit log, the MCP server,
REST error messages, server logs, run and task reports) redacts through this module, so a
value hidden in one place is hidden in all of them, behind the same marker :data:`REDACTED`.
It sits at the bottom of the layering (standard library only) because the node-side engine
uses it too.

Two kinds of redaction, both ending in :data:`REDACTED`:

* **By name** (:func:`is_secret_key`, :func:`redact`): a value stored under a key named like
  a credential (``password``, ``api_key``, ``Authorization``, ``Set-Cookie`` ...) is withheld
  whatever it is; strings anywhere lose Steward tokens, URL passwords, bearer/basic
  credentials and ``password=...``-style pairs (:func:`scrub_text`).
* **By value** (:func:`secret_forms`, :func:`cut_secrets`): where the secret values
  themselves are known (a task's sensitive parameters, a run's sensitive catalog values),
  every occurrence is cut out of text and JSON, in each form it may be printed in.

The catalog's ``{"__sensitive__": KEY}`` placeholder (:mod:`steward.catalog.sensitive`) is a
reference to a secret, not a marker, and passes through unchanged.

**Ids are not secrets.** A key whose last word says it is *about* a credential (``token_id``,
``secret_name``, ``key_kind``, ``password_type``) is not secret-looking: audit trails and
agents need them. Vault's ``secret_id`` is the exception (it is a credential). Keys naming a
public key (``public_key``, ``ssh_public_key``) are not secret either.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from steward.catalog.canonical import canonical_json

#: The one marker that stands where a secret was. Nothing else in Steward displays another.
REDACTED: Final = "[redacted]"
#: Longest nesting :func:`redact` walks; deeper data is replaced by this string.
MAX_DEPTH: Final = 32
TOO_DEEP: Final = "[too deep]"
TRUNCATED: Final = "...[truncated]"

_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
#: A key is secret-looking if one of its words is one of these ...
_SECRET_WORDS: Final = frozenset({
    "password", "passwords", "passwd", "passphrase", "pass", "pwd", "secret", "secrets",
    "token", "tokens", "key", "keys", "apikey", "privatekey", "credential", "credentials",
    "authorization", "cookie", "cookies", "auth",
})
#: ... or if its lowercased letters and digits contain one of these anywhere ...
_SECRET_PARTS: Final = ("password", "passwd", "passphrase", "secret", "token", "apikey",
                        "privatekey", "credential", "authorization", "cookie")
#: ... unless its last word says it is only about one (``token_id``) ...
_DESCRIPTIVE_WORDS: Final = frozenset({"id", "ids", "kind", "kinds", "type", "types", "name",
                                       "names"})
#: ... (except these, which are credentials themselves) ...
_CREDENTIAL_IDS: Final = frozenset({"secretid"})
#: ... or it names a public key.
_PUBLIC_WORDS: Final = frozenset({"public", "pub"})

#: Steward tokens (``stwa_``, ``stwo_``, ``stwn_`` ... followed by 32 random bytes, base64url).
_TOKEN = re.compile(r"\bstw[a-z]_[A-Za-z0-9_-]{20,}")
#: ``scheme://user:PASSWORD@host``: everything up to the last ``@`` before the path.
_URL_PASSWORD = re.compile(r"(://[^/@:\s]*):[^/\s]*@")
#: ``Bearer XXXX`` / ``Basic XXXX`` (HTTP credentials).
_HTTP_CREDENTIAL = re.compile(r"(?i)\b(bearer|basic)\s+(?!\[redacted\])[A-Za-z0-9._~+/=-]{8,}")
#: ``KEY=VALUE`` / ``KEY: VALUE`` / ``"KEY": "VALUE"`` pairs; the key is judged by the rule.
#: ``KEY:VALUE`` without a space or quote is a reference (``token:ID``, ``secret:NAME``).
_PAIR = re.compile(
    r"""(?P<key>(?<![A-Za-z0-9_.-])[A-Za-z][A-Za-z0-9_.-]{0,63})(?P<close>["']?)"""
    r"""(?P<sep>[ \t]*=[ \t]*|[ \t]*:[ \t]+|:(?=["']))"""
    r"""(?P<value>"(?:[^"\\\n]|\\.)*"|'[^'\n]*'|"""
    r"""(?:(?i:bearer|basic|digest|token)[ \t]+)?(?:\[redacted\]|[^\s"',;&)}\]]+))""")


def _words(name: str) -> list[str]:
    return [word.lower() for word in _WORDS.findall(name)]


def is_secret_key(name: str) -> bool:
    """Whether a value stored under ``name`` is withheld: the one "secret-looking key" rule.

    Case-insensitive, and ``-``, ``_``, ``.``, spaces and camelCase split words alike:
    ``password``, ``db_password``, ``apiToken``, ``client-secret``, ``X-Api-Key``,
    ``sshKey``, ``Authorization``, ``Set-Cookie``, ``credentials``, ``secret_id`` are secret;
    ``token_id``, ``secretName``, ``key_kind``, ``public_key``, ``keyboard``, ``monkey`` are not.
    """
    words = _words(name)
    if not words:
        return False
    compact = "".join(words)
    if words[-1] in _DESCRIPTIVE_WORDS and compact not in _CREDENTIAL_IDS:
        return False
    if _PUBLIC_WORDS.intersection(words):
        return False
    if any(part in compact for part in _SECRET_PARTS):
        return True
    return any(word in _SECRET_WORDS for word in words)


def _scrub_pairs(text: str) -> str:
    """Each secret-looking ``key=value`` pair's value replaced; a pair under another key is
    skipped past its separator only, so ``failed: password=x`` still finds ``password``."""
    out: list[str] = []
    pos = 0
    while (match := _PAIR.search(text, pos)) is not None:
        if is_secret_key(match["key"]):
            value = match["value"]
            quote = value[0] if value[:1] in ("'", '"') and len(value) >= 2 else ""
            out.append(text[pos:match.start("value")] + f"{quote}{REDACTED}{quote}")
            pos = match.end()
        else:
            out.append(text[pos:match.end("sep")])
            pos = match.end("sep")
    out.append(text[pos:])
    return "".join(out)


def scrub_text(text: str) -> str:
    """``text`` without the credentials it spells out.

    Steward tokens, the password of a URL, ``Bearer``/``Basic`` credentials and the value of
    every ``key=value`` / ``key: value`` / ``"key": "value"`` pair whose key is secret-looking
    (:func:`is_secret_key`) become :data:`REDACTED`. Idempotent.
    """
    if "stw" in text:
        text = _TOKEN.sub(REDACTED, text)
    if "://" in text:
        text = _URL_PASSWORD.sub(rf"\1:{REDACTED}@", text)
    if "=" in text or ":" in text:
        text = _scrub_pairs(text)
    lowered = text.lower()
    if "bearer" in lowered or "basic" in lowered:
        text = _HTTP_CREDENTIAL.sub(rf"\1 {REDACTED}", text)
    return text


def _names_a_secret(named: Any) -> bool:
    if isinstance(named, str):
        return is_secret_key(named) or any(is_secret_key(p) for p in re.split(r"[./]", named))
    if isinstance(named, list | tuple):
        return any(isinstance(p, str) and is_secret_key(p) for p in named)
    return False


def redact(value: Any, *, max_string: int | None = None, _depth: int = 0) -> Any:
    """A JSON-safe copy of ``value`` with every secret replaced by :data:`REDACTED`.

    A mapping entry under a secret-looking key is withheld whatever it holds; a row naming a
    secret (``{"name": "db_password", "value": ...}``, ``{"path": ["app", "api_key"], ...}``
    as facts are listed) has its ``value`` withheld; strings anywhere pass through
    :func:`scrub_text` (and are cut at ``max_string`` characters when given). Tuples become
    lists, sets sorted lists, non-finite floats and other objects their ``str()``.
    Idempotent, and the shape of JSON data is kept.
    """
    if _depth > MAX_DEPTH:
        return TOO_DEEP
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        cleaned = scrub_text(value)
        if max_string is not None and len(cleaned) > max_string:
            cleaned = cleaned[:max_string] + TRUNCATED
        return cleaned
    if isinstance(value, Mapping):
        hide_value = _names_a_secret(value.get("name", value.get("path")))
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = str(key)
            if is_secret_key(name) or (hide_value and name == "value"):
                out[name] = REDACTED
            else:
                out[name] = redact(item, max_string=max_string, _depth=_depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [redact(v, max_string=max_string, _depth=_depth + 1) for v in value]
    if isinstance(value, set | frozenset):
        items = [redact(v, max_string=max_string, _depth=_depth + 1) for v in value]
        return sorted(items, key=canonical_json)
    return redact(str(value), max_string=max_string, _depth=_depth + 1)


# -- known secret values ------------------------------------------------------------------


def secret_forms(values: Iterable[Any], *, min_length: int = 1) -> list[str]:
    """The secret ``values`` as they may be printed: raw and inside a JSON string (ASCII and
    not), longest first so none is half-cut. Values shorter than ``min_length`` are skipped
    (a two-letter secret cut out of everything would make a report unreadable)."""
    forms: set[str] = set()
    for value in values:
        text = str(value)
        if len(text) < max(min_length, 1):
            continue
        forms.update((text, json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]))
    return sorted((form for form in forms if form), key=lambda form: (-len(form), form))


def cut_secrets(text: str, forms: Iterable[str]) -> str:
    """``text`` with every occurrence of each of ``forms`` (see :func:`secret_forms`) replaced
    by :data:`REDACTED`."""
    for form in forms:
        if form in text:
            text = text.replace(form, REDACTED)
    return text


def cut_secrets_json(value: Any, forms: list[str]) -> Any:
    """``value`` (JSON-like) with the secret ``forms`` cut out of every string, keys included."""
    if isinstance(value, str):
        return cut_secrets(value, forms)
    if isinstance(value, dict):
        return {cut_secrets(str(k), forms): cut_secrets_json(v, forms) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [cut_secrets_json(item, forms) for item in value]
    return value


# -- logs ---------------------------------------------------------------------------------


class RedactingFilter(logging.Filter):
    """A log filter that scrubs every record (:func:`scrub_text`) before it is written.

    A record whose formatted message spells out a credential is collapsed to its scrubbed
    text; uvicorn's access log keeps its arguments (its formatter reads them), each scrubbed.
    A traceback is formatted and scrubbed here, so no handler prints the raw one.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub_text(_FORMATTER.formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = scrub_text(record.exc_text)
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            record.args = tuple(scrub_text(a) if isinstance(a, str) else a for a in record.args)
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a broken format: shown as uvicorn would, scrubbed
            message = f"{record.msg} {record.args}"
        cleaned = scrub_text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_FORMATTER: Final = logging.Formatter()
_FILTER: Final = RedactingFilter()


def install_log_redaction(*loggers: str) -> None:
    """Scrub what reaches every handler of the root logger and of ``loggers``.

    Handlers (not loggers) carry the filter, so records propagated from child loggers are
    scrubbed too. Idempotent; call it again after logging is reconfigured.
    """
    for name in ("", *loggers):
        for handler in logging.getLogger(name).handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
    last_resort = logging.lastResort
    if last_resort is not None and _FILTER not in last_resort.filters:
        last_resort.addFilter(_FILTER)
