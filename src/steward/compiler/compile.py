"""``compile_catalog``: one node's facts + a loaded repository → a sealed catalog.

All per-node state lives in objects created here and dropped at return, so one
:class:`~steward.language.Repository` can serve any number of compilations (and threads).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from steward.catalog.model import Catalog
from steward.compiler.classify import classify
from steward.compiler.context import FactView, NodeContext
from steward.compiler.data import DataResolver
from steward.compiler.evaluate import Evaluator
from steward.compiler.graph import build_edges
from steward.compiler.resources import Expander
from steward.errors import UsageError
from steward.language.limits import DEFAULT_LIMITS, budget
from steward.language.repository import CLASSIFICATION_FILE, SETTINGS_FILE, Repository
from steward.secrets.store import SecretStore


@dataclass(frozen=True, slots=True)
class CompileResult:
    """The catalog, and the sensitive values it refers to (never stored with it)."""

    catalog: Catalog
    sensitive_values: dict[str, str]


def compile_catalog(
    repo: Repository,
    node: str,
    facts: Mapping[str, Any],
    environment: str | None = None,
    secrets: SecretStore | None = None,
    code_id: str | None = None,
) -> CompileResult:
    """Compile ``node``'s catalog; raises a located StewardError for any user mistake.

    The compilation runs with its own budget of steps, produced text and time (the compile
    limits, docs/language.md#limits): a repository can make it fail, never make it unbounded.
    """
    with budget(getattr(repo.env, "limits", DEFAULT_LIMITS)):
        return _compile(repo, node, facts, environment, secrets, code_id)


def _compile(
    repo: Repository,
    node: str,
    facts: Mapping[str, Any],
    environment: str | None,
    secrets: SecretStore | None,
    code_id: str | None,
) -> CompileResult:
    if not isinstance(node, str) or not node.strip():
        raise UsageError("node: a node name must be a non-empty string")
    if not isinstance(facts, Mapping):
        raise UsageError(f"facts for node {node!r} must be a mapping")
    ctx = NodeContext(node, secrets)
    for name in (SETTINGS_FILE, CLASSIFICATION_FILE):
        digest = repo.digests.get(name)
        if digest is not None:
            ctx.read_file(name, digest)
    fact_view = FactView(facts, "", ctx)
    classified = classify(repo, node, fact_view, environment)
    for role in classified.roles:
        role_file = repo.roles[role].file
        ctx.read_file(role_file, repo.digests[role_file])
    data = DataResolver(
        repo, ctx, facts=fact_view, environment=classified.environment, roles=classified.roles
    )
    evaluator = Evaluator(repo.env, data.lookup, ctx.secret)
    base_scope: dict[str, Any] = {
        **repo.env.globals,
        "facts": fact_view,
        "node": node,
        "environment": classified.environment,
        "role": classified.roles[0] if classified.roles else None,
        "roles": list(classified.roles),
        "lookup": data.lookup,
        "secret": ctx.secret,
    }
    expander = Expander(repo, ctx, evaluator, data, base_scope)
    for use in classified.profiles:
        expander.expand(use)
    edges = build_edges(expander)
    catalog = Catalog(
        node=node,
        environment=classified.environment,
        resources=expander.resources,
        edges=edges,
        code_id=code_id,
        classification={
            "roles": list(classified.roles),
            "profiles": [use.inclusion.profile for use in classified.profiles],
            "rules": list(classified.rules),
        },
        inputs={
            "files": dict(sorted(ctx.files.items())),
            "data_paths": list(ctx.data_paths),
            "data_keys": sorted(ctx.data_keys),
            "facts": sorted(ctx.fact_reads),
        },
        sensitive=dict(sorted(ctx.digests.items())),
    ).seal()
    return CompileResult(catalog, dict(sorted(ctx.sensitive_values.items())))
