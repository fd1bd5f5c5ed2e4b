"""Render the resource type reference (docs/resource-types.md) from the type registry."""

from __future__ import annotations

import json

from steward.catalog.types import KINDS, META_PARAMS, RELATIONSHIP_PARAMS, TYPES


def render_reference() -> str:
    out = [
        "# Resource type reference",
        "",
        "Generated from `src/steward/catalog/types.py` by `scripts/gen_docs.py`; do not edit.",
        "",
        "Every resource is declared as `type[title]`. The parameter marked *namevar* defaults to "
        "the title. Every type also takes the relationship parameters "
        + ", ".join(f"`{p}`" for p in RELATIONSHIP_PARAMS)
        + " (a reference or a list of references), `tags`, `when`, `for_each`, and "
        + ", ".join(f"`{p.name}` ({p.doc.rstrip('.')})" for p in META_PARAMS)
        + ".",
        "",
        "| type | acts on | refreshable | properties compared |",
        "|---|---|---|---|",
    ]
    for rtype in TYPES.values():
        out.append(
            f"| [`{rtype.name}`](#{rtype.name}) | "
            f"{'a path (confined by --root)' if rtype.path_based else 'the whole system'} | "
            f"{'yes' if rtype.refreshable else 'no'} | "
            f"{', '.join(rtype.properties)} |"
        )
    for rtype in TYPES.values():
        out += ["", f"## {rtype.name}", "", rtype.doc, "",
                "| parameter | type | default | values | description |",
                "|---|---|---|---|---|"]
        for param in rtype.params:
            default = "" if param.default is None else f"`{json.dumps(param.default)}`"
            values = ", ".join(f"`{v}`" for v in param.allowed)
            if param.open_allowed:
                values += ", or another value"
            flags = []
            if param.namevar:
                flags.append("*namevar*")
            if param.required:
                flags.append("*required*")
            doc = (" ".join(flags) + " " if flags else "") + param.doc
            out.append(f"| `{param.name}` | {KINDS[param.kind]} | {default} | {values} | {doc} |")
    return "\n".join(out) + "\n"
