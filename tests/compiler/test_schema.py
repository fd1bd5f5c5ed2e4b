"""The committed JSON Schemas match the models and resource types they are generated from."""

from __future__ import annotations

import json

import pytest

from steward.catalog.types import TYPES
from steward.language.schema import json_schemas, render_schemas

from .conftest import ROOT

SCHEMAS = ROOT / "schemas" / "repo"


@pytest.mark.parametrize("name", sorted(render_schemas()))
def test_committed_schema_is_current(name: str) -> None:
    path = SCHEMAS / name
    assert path.exists(), "run: .venv/bin/python scripts/gen_schemas.py"
    assert path.read_text(encoding="utf-8") == render_schemas()[name], (
        "run: .venv/bin/python scripts/gen_schemas.py"
    )


def test_profile_schema_offers_every_type_and_parameter() -> None:
    schema = json_schemas()["profile.schema.json"]
    resources = schema["properties"]["resources"]["patternProperties"]
    assert len(resources) == len(TYPES)
    for name, rtype in TYPES.items():
        definition = schema["$defs"][f"resource_{name}"]
        for param in rtype.params:
            assert definition["properties"][param.name]["description"]
        assert {
            "require",
            "before",
            "notify",
            "subscribe",
            "tags",
            "when",
            "for_each",
            "noop",
        } <= set(definition["properties"])
    service = schema["$defs"]["resource_service"]["properties"]["ensure"]
    assert {"enum": ["running", "stopped"]} in service["anyOf"]
    assert schema["$defs"]["resource_line"]["required"] == ["path"]


def test_schemas_are_valid_json_documents() -> None:
    for text in render_schemas().values():
        document = json.loads(text)
        assert document["$schema"].startswith("https://json-schema.org/")
        assert document["type"] == "object"
