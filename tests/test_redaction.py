"""The one redaction rule (steward.catalog.redaction): which keys, which texts, one marker."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steward.catalog import REDACTED as CATALOG_REDACTED
from steward.catalog.redaction import (
    REDACTED,
    RedactingFilter,
    cut_secrets,
    cut_secrets_json,
    is_secret_key,
    redact,
    scrub_text,
    secret_forms,
)

SECRET = "hunter2-do-not-leak"

SECRET_KEYS = [
    "password", "PASSWORD", "Password", "db_password", "db-password", "dbPassword",
    "password_hash", "passwd", "passphrase", "pass", "pwd", "secret", "Secret", "secrets",
    "client_secret", "client-secret", "clientSecret", "token", "tokens", "api_token",
    "apiToken", "access_token", "X-Auth-Token", "api_key", "api-key", "apiKey", "APIKEY",
    "X-Api-Key", "private_key", "private-key", "privateKey", "ssh_private_key", "sshKey",
    "ssh_key_file", "key", "keys", "authorization", "Authorization", "AUTHORIZATION",
    "proxy-authorization", "cookie", "Cookie", "cookies", "set-cookie", "Set-Cookie",
    "set_cookie", "credential", "credentials", "aws_credentials", "secret_id", "auth",
]
NOT_SECRET_KEYS = [
    "token_id", "tokenId", "token-id", "TOKEN_ID", "token_ids", "key_kind", "key_type",
    "secret_name", "secretName", "password_type", "public_key", "ssh_public_key", "pub_key",
    "keyboard", "monkey", "environment", "name", "value", "path", "title", "comment",
    "certname", "passage", "bypassed", "__sensitive__", "digest", "", "_", "reason",
]


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_secret_looking_keys(key: str) -> None:
    assert is_secret_key(key), key


@pytest.mark.parametrize("key", NOT_SECRET_KEYS)
def test_keys_about_a_secret_are_not_secret(key: str) -> None:
    assert not is_secret_key(key), key


@pytest.mark.parametrize(("text", "expected"), [
    ("password=hunter2", "password=[redacted]"),
    ("login with PASSWORD = hunter2 now", "login with PASSWORD = [redacted] now"),
    ('{"password": "hun\\"ter2", "user": "ops"}', '{"password": "[redacted]", "user": "ops"}'),
    ('{"api_key":"k-1"}', '{"api_key":"[redacted]"}'),
    ("{'token': 'abc'}", "{'token': '[redacted]'}"),
    ("Authorization: Bearer abcdefghijkl", "Authorization: [redacted]"),
    ("Cookie: session=abc123", "Cookie: [redacted]"),
    ("Set-Cookie: sid=abc; Path=/", "Set-Cookie: [redacted]; Path=/"),
    ("GET /x?api_key=sss&page=2 HTTP/1.1", "GET /x?api_key=[redacted]&page=2 HTTP/1.1"),
    ("curl -H 'Bearer abcdefghijklmnop'", "curl -H 'Bearer [redacted]'"),
    ("Basic dXNlcjpwYXNzd29yZA==", "Basic [redacted]"),
    ("postgresql://u:p@ss@db/x", "postgresql://u:[redacted]@db/x"),
    ("token_id=tok-1 token:tok-2 secret:app_token", "token_id=tok-1 token:tok-2 "
                                                    "secret:app_token"),
    ("environment: production, secret: s3", "environment: production, secret: [redacted]"),
    ("nothing to see", "nothing to see"),
    ("https://server:8150/api/v1/nodes", "https://server:8150/api/v1/nodes"),
])
def test_scrub_text(text: str, expected: str) -> None:
    assert scrub_text(text) == expected
    assert scrub_text(expected) == expected  # idempotent


def test_steward_tokens_are_scrubbed_anywhere() -> None:
    token = "stwa_" + "A" * 43
    assert scrub_text(f"used {token}.") == f"used {REDACTED}."


def test_the_walk_over_nested_data() -> None:
    token = "stwn_" + "b" * 43
    data: dict[str, Any] = {
        "name": "ci", "token_id": "tok-7", "count": 3, "ok": True, "none": None,
        "nested": {"apiKey": SECRET, "deeper": [{"Set-Cookie": SECRET}, {"cookie": [SECRET]}],
                   "headers": {"Authorization": f"Bearer {SECRET}", "Accept": "*/*"}},
        "list": [token, f"password={SECRET}", {"client-secret": {"a": SECRET}}],
        "facts": [{"name": "db_password", "value": SECRET}, {"name": "os", "value": "Debian"},
                  {"path": ["app", "api_key"], "value": SECRET}],
        "placeholder": {"__sensitive__": "param:file[/x]:content"},
        "tuple": ("a", SECRET), "ratio": float("nan"),
    }
    out = redact(data)
    shown = json.dumps({k: v for k, v in out.items() if k != "tuple"})
    assert SECRET not in shown
    assert token not in shown
    assert out["nested"]["apiKey"] == REDACTED
    assert out["nested"]["deeper"] == [{"Set-Cookie": REDACTED}, {"cookie": REDACTED}]
    assert out["nested"]["headers"] == {"Authorization": REDACTED, "Accept": "*/*"}
    assert out["list"] == [REDACTED, f"password={REDACTED}", {"client-secret": REDACTED}]
    assert out["facts"] == [{"name": "db_password", "value": REDACTED},
                            {"name": "os", "value": "Debian"},
                            {"path": ["app", "api_key"], "value": REDACTED}]
    # An id is not a secret, and the catalog's placeholder is a reference, not a marker.
    assert out["token_id"] == "tok-7"
    assert out["placeholder"] == {"__sensitive__": "param:file[/x]:content"}
    assert out["tuple"] == ["a", SECRET]  # a value under no secret key stays (by name only)
    assert out["ratio"] == "nan"
    assert redact(out) == out


_KEYS = st.sampled_from([*SECRET_KEYS[:12], *NOT_SECRET_KEYS[:12]]) | st.text(max_size=8)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=20)


def _plant(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (SECRET if is_secret_key(k) else _plant(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_plant(v) for v in value]
    return value


@settings(max_examples=150, deadline=None)
@given(_JSON)
def test_no_value_under_a_secret_key_survives_and_the_walk_is_idempotent(value: Any) -> None:
    once = redact(_plant(value))
    assert SECRET not in json.dumps(once)
    assert redact(once) == once


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=40), st.sampled_from(SECRET_KEYS), st.sampled_from(["=", ": ", "="]))
def test_no_pair_value_survives_in_text(prefix: str, key: str, sep: str) -> None:
    text = scrub_text(f"{prefix} {key}{sep}{SECRET} tail")
    assert SECRET not in text
    assert scrub_text(text) == text


def test_known_secret_values_are_cut_in_every_printed_form() -> None:
    value = 'pa"ss\\wörd'
    forms = secret_forms([value, "", "ab"], min_length=3)
    assert "ab" not in forms
    assert "" not in forms
    printed = f"raw {value} json {json.dumps(value)} utf8 {json.dumps(value, ensure_ascii=False)}"
    assert value not in cut_secrets(printed, forms)
    assert cut_secrets(printed, forms).count(REDACTED) == 3
    assert cut_secrets_json({value: [value, 1]}, forms) == {REDACTED: [REDACTED, 1]}


def test_log_records_are_scrubbed() -> None:
    record = logging.LogRecord("steward.x", logging.WARNING, __file__, 1,
                               "login failed: password=%s for %s", (SECRET, "ops"), None)
    assert RedactingFilter().filter(record)
    assert SECRET not in record.getMessage()
    assert record.getMessage() == f"login failed: password={REDACTED} for ops"
    access = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s HTTP/%s" %d',
                               ("1.2.3.4", "GET", f"/x?token={SECRET}", "1.1", 200), None)
    RedactingFilter().filter(access)
    assert isinstance(access.args, tuple)
    assert len(access.args) == 5
    assert SECRET not in access.getMessage()


def test_one_marker_everywhere() -> None:
    from steward.engine.tasks import cut_secrets as task_cut
    from steward.mcpserver.data import REDACTED as MCP_REDACTED
    from steward.pipeline.impact.diff import MASKED_LINE
    from steward.pipeline.impact.model import SENSITIVE_TEXT
    from steward.server.db import redact_url

    assert REDACTED == "[redacted]"
    assert {CATALOG_REDACTED, MCP_REDACTED, SENSITIVE_TEXT, MASKED_LINE} == \
        {REDACTED}
    assert task_cut("x", ["x"]) == REDACTED
    assert redact_url("postgresql://u:pw@h/db") == f"postgresql://u:{REDACTED}@h/db"
