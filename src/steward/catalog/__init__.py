"""The catalog: the compiled, per-node, whole truth of what a node should be.

Standard library only: the node-side engine imports this package, and it is shipped to hosts
that have nothing but python3.
"""

from steward.catalog.canonical import canonical_json, content_hash
from steward.catalog.model import CATALOG_FORMAT, Catalog, Edge, Resource, parse_ref
from steward.catalog.sensitive import REDACTED, is_sensitive_placeholder, sensitive_placeholder

__all__ = [
    "CATALOG_FORMAT",
    "REDACTED",
    "Catalog",
    "Edge",
    "Resource",
    "canonical_json",
    "content_hash",
    "is_sensitive_placeholder",
    "parse_ref",
    "sensitive_placeholder",
]
