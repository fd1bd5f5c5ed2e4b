"""Compiled catalogs match the published catalog schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from steward.compiler import compile_catalog
from steward.language import load_repository
from steward.secrets import init_store

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("node", ["web1", "web2", "db1"])
def test_example_catalogs_match_the_schema(node: str, tmp_path: Path) -> None:
    schema = json.loads((ROOT / "schemas" / "catalog.schema.json").read_text())
    store, _ = init_store(tmp_path / "data", {"db_password": "correct-horse-battery"})
    facts = json.loads((ROOT / "examples" / "facts" / f"{node}.json").read_text())
    catalog = compile_catalog(load_repository(ROOT / "examples" / "repo"), node=node,
                              facts=facts, secrets=store).catalog
    jsonschema.validate(json.loads(catalog.dumps()), schema)
