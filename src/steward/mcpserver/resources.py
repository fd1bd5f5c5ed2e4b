"""The MCP resources: the PQL reference and the JSON Schemas of the desired-state files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from mcp.server.mcpserver import MCPServer

import steward
from steward.language.schema import json_schemas
from steward.query.examples import REFERENCE_EXAMPLES

_DOCS: Final = Path(steward.__file__).resolve().parents[2] / "docs"


def register(server: MCPServer) -> None:
    server.resource("steward://docs/query", name="pql-reference", title="PQL reference",
                    mime_type="text/markdown")(pql_reference)
    for schema_name, schema in sorted(json_schemas().items()):
        _add_schema(server, schema_name, schema)


def pql_reference() -> str:
    """Steward's query language (PuppetDB's PQL): entities, fields, operators, examples."""
    path = _DOCS / "query.md"
    if path.is_file():
        return path.read_text(encoding="utf-8")
    return ("# PQL\n\nThe full reference is docs/query.md in Steward's source. Examples:\n\n"
            + "\n".join(f"    {q}" for q in REFERENCE_EXAMPLES) + "\n")


def _add_schema(server: MCPServer, name: str, schema: dict[str, Any]) -> None:
    text = json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    def read() -> str:
        return text

    server.resource(f"steward://schemas/repo/{name}", name=f"schema-{name}",
                    title=f"Desired-state schema {name}", mime_type="application/json",
                    description=f"JSON Schema of the desired-state repository's {name}")(read)
