"""Node data leaves the MCP server delimited, with secret-looking values withheld."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from steward.catalog.redaction import is_secret_key
from steward.mcpserver.data import REDACTED, UNTRUSTED_NOTE, from_nodes, redact

SECRET = "hunter2-do-not-leak"
keys = st.sampled_from(["name", "path", "value", "os", "kernel", "db_password", "api_token",
                        "ssh_private_key", "Secret", "mtu", "owner"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=20)


def _plant(value: Any) -> Any:
    """The same structure with SECRET under every secret-looking key."""
    if isinstance(value, dict):
        return {k: (SECRET if is_secret_key(k) else _plant(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_plant(v) for v in value]
    return value


@given(json_values)
def test_no_value_under_a_secret_looking_key_survives(value: Any) -> None:
    assert SECRET not in json.dumps(redact(_plant(value)))


@given(json_values)
def test_redaction_is_idempotent_and_keeps_the_shape(value: Any) -> None:
    once = redact(value)
    assert redact(once) == once
    assert type(once) is type(value)
    if isinstance(value, dict):
        assert set(once) == set(value)


def test_fact_rows_naming_a_secret_hide_their_value() -> None:
    rows = [{"name": "db_password", "value": SECRET}, {"name": "os", "value": "Debian"},
            {"path": ["app", "api_key"], "value": SECRET}]
    wrapped = from_nodes(rows, rows=3)
    assert wrapped["note"] == UNTRUSTED_NOTE
    assert wrapped["rows"] == 3
    assert wrapped["untrusted_data_from_nodes"] == [
        {"name": "db_password", "value": REDACTED}, {"name": "os", "value": "Debian"},
        {"path": ["app", "api_key"], "value": REDACTED}]
