"""Invariant: impact analysis reports exactly what a naive recompile of every node changes.

For generated edits of the example repository, the set of ``(node, resource, property)``
changes in the report equals the difference between a full compile of every node at base and
at head, computed here independently of the analysis: sensitive values compared by their keyed
digest (never by placeholder key, never by value). It holds for the incremental path (nodes
selected from their recorded inputs) and for the naive one (``recompile_all``) alike.

The edits cover every way a secret reaches a catalog: a profile parameter (``{secret: name}``
and the expression embedding it), a template rendering it (``params.password`` and
``secret(...)``), a static file source holding it, and a data lookup feeding it (a key
rendered next to it, a key naming which secret, a key overriding the secret parameter).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steward.access.principal import Principal
from steward.catalog.canonical import canonical_json
from steward.catalog.model import Catalog
from steward.catalog.sensitive import is_sensitive_placeholder, placeholder_key
from steward.compiler import compile_catalog
from steward.language import Repository, load_repository
from steward.pipeline.impact.analysis import ChangeInfo, StoreFleet, analyse_impact
from steward.secrets import SecretStore, init_store
from steward.store import Store
from tests.pipeline.impact.test_impact import (
    BASE_SHA,
    EXAMPLES,
    FLEET,
    HEAD_SHA,
    ROTATED,
    SECRET,
    check,
    node_facts,
    populate,
)

Change = tuple[str, str, str]
Edit = Callable[[dict[str, str]], None]
ENV = "production"
PROFILE = "profiles/postgresql.yaml"
PGPASS = "templates/postgresql/pgpass.j2"
DB_DATA = "data/roles/db.yaml"
DB_ENV = "files/db.env"
WEB_DATA = "data/roles/web.yaml"
NGINX = "templates/nginx/nginx.conf.j2"

#: Added to the example for the two ways it does not exercise itself: a static file source
#: that holds a secret, and a data key naming the secret a template resolves.
EXTRA_RESOURCES = (
    "  file[/etc/steward/db.env]:\n"
    "    source: db.env\n"
    '    mode: "0600"\n'
    "  file[/etc/steward/db.dsn]:\n"
    "    content: \"postgres://app:{{ secret(lookup('postgresql::dsn_secret')) }}@db/app\\n\"\n"
    '    mode: "0600"\n'
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Store, SecretStore]]:
    """The base repository, a store holding every node's base catalog, and the secrets."""
    tmp = tmp_path_factory.mktemp("invariant")
    secrets, _key = init_store(tmp / "secrets", {"db_password": SECRET,
                                                 "db_password_v2": ROTATED})
    base = tmp / "base"
    shutil.copytree(EXAMPLES / "repo", base)
    profile = base / PROFILE
    profile.write_text(profile.read_text().replace("resources:\n", "resources:\n"
                                                   + EXTRA_RESOURCES, 1))
    (base / DB_ENV).write_text(f"user=app\npassword={SECRET}\nhost=localhost\n")
    data = base / DB_DATA
    data.write_text(data.read_text() + "postgresql::dsn_secret: db_password\n")
    store = Store(f"sqlite:///{tmp / 'store.db'}")
    store.migrate()
    populate(store, load_repository(base), secrets)
    yield base, store, secrets
    store.close()


# -- the edits ---------------------------------------------------------------------------------

WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=8)


def _replace(path: str, old: str, new: str) -> Edit:
    """Replace ``old`` (a no-op when an earlier edit already replaced it)."""
    def apply(files: dict[str, str]) -> None:
        files[path] = files[path].replace(old, new, 1)
    return apply


def _set_key(path: str, key: str, value: str) -> Edit:
    """Set a top-level data key, replacing its line if it is there."""
    def apply(files: dict[str, str]) -> None:
        lines = [line for line in files[path].splitlines() if not line.startswith(f"{key}:")]
        files[path] = "\n".join([*lines, f"{key}: {value}"]) + "\n"
    return apply


def _append(path: str, text: str) -> Edit:
    def apply(files: dict[str, str]) -> None:
        files[path] = files[path] + text
    return apply


def edits() -> st.SearchStrategy[Edit]:
    """One edit: parameter, template, file source or data lookup; sensitive or not."""
    return st.one_of(
        # parameter: the expression embedding the secret, the secret named, a plain one
        WORD.map(lambda w: _replace(PROFILE, 'content: "{{ params.password }}"',
                                    f'content: "{{{{ params.password }}}}{w}"')),
        st.just(_replace(PROFILE, "{secret: db_password}", "{secret: db_password_v2}")),
        st.sampled_from(["0640", "0400"]).map(
            lambda m: _replace(PROFILE, 'content: "{{ params.password }}"\n    mode: "0600"',
                               f'content: "{{{{ params.password }}}}"\n    mode: "{m}"')),
        st.integers(1, 500).map(lambda n: _replace(PROFILE, "max_connections:  {type: integer, "
                                                   "default: 100}", "max_connections:  {type: "
                                                   f"integer, default: {n}}}")),
        # template: text around the secret, a transformed secret, secret() directly
        WORD.map(lambda w: _replace(PGPASS, ":*:app:", f":*:{w}:")),
        WORD.map(lambda w: _append(PGPASS, f"# {w}\n")),
        st.just(_append(PGPASS, "# {{ params.password | upper }}\n")),
        st.just(_append(PGPASS, "{{ secret('db_password_v2') }}\n")),
        WORD.map(lambda w: _append(NGINX, f"# {w}\n")),
        # file source: the lines around the secret, and the secret's own line
        WORD.map(lambda w: _replace(DB_ENV, "user=app", f"user={w}")),
        WORD.map(lambda w: _replace(DB_ENV, "password=", f"password={w}")),
        WORD.map(lambda w: _append(DB_ENV, f"{w}=1\n")),
        # data lookup: rendered next to the secret, naming the secret, replacing it, unrelated
        st.integers(1024, 65535).map(lambda n: _set_key(DB_DATA, "postgresql::port", str(n))),
        st.just(_set_key(DB_DATA, "postgresql::dsn_secret", "db_password_v2")),
        WORD.map(lambda w: _set_key(DB_DATA, "postgresql::password", f"plain-{w}")),
        st.integers(1, 10_000).map(lambda n: _set_key(DB_DATA, "postgresql::max_connections",
                                                      str(n))),
        st.integers(1, 10_000).map(lambda n: _replace(WEB_DATA, "worker_connections: 4096",
                                                      f"worker_connections: {n}")),
    )


# -- the naive truth ---------------------------------------------------------------------------


def _comparable(value: Any, catalog: Catalog) -> Any:
    """A parameter value with every placeholder replaced by its keyed digest."""
    if is_sensitive_placeholder(value):
        return {"keyed-digest": catalog.sensitive[placeholder_key(value)]}
    if isinstance(value, dict):
        return {key: _comparable(item, catalog) for key, item in value.items()}
    if isinstance(value, list):
        return [_comparable(item, catalog) for item in value]
    return value


def naive_changes(base: Repository, head: Repository, secrets: SecretStore) -> set[Change]:
    """Every (node, resource, property) a full recompile of every node changes."""
    changes: set[Change] = set()
    for certname, env in sorted(FLEET.items()):
        if env != ENV:
            continue
        facts = node_facts(certname)
        before, after = (compile_catalog(repo, certname, facts, environment=env,
                                         secrets=secrets).catalog for repo in (base, head))
        old, new = before.resource_map(), after.resource_map()
        for ref in old.keys() | new.keys():
            was, now = old.get(ref), new.get(ref)
            a = {k: canonical_json(_comparable(v, before)) for k, v in
                 (was.parameters.items() if was else ())}
            b = {k: canonical_json(_comparable(v, after)) for k, v in
                 (now.parameters.items() if now else ())}
            if was is None or now is None:
                changes.update((certname, ref, name) for name in a.keys() | b.keys())
            else:
                changes.update((certname, ref, name) for name in a.keys() | b.keys()
                               if a.get(name) != b.get(name))
    return changes


def reported(report: dict[str, Any]) -> set[Change]:
    return {(node["certname"], entry["resource"], prop["name"])
            for node in report["nodes"] for entry in node["resources"]
            for prop in entry["properties"]}


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(chosen=st.lists(edits(), min_size=1, max_size=3))
def test_reported_changes_equal_a_naive_recompile(
        world: tuple[Path, Store, SecretStore], chosen: list[Edit],
        tmp_path_factory: pytest.TempPathFactory) -> None:
    base_dir, store, secrets = world
    texts = {path: (base_dir / path).read_text()
             for path in (PROFILE, PGPASS, DB_DATA, DB_ENV, WEB_DATA, NGINX)}
    edited = dict(texts)
    for edit in chosen:
        edit(edited)
    changed = {path: text for path, text in edited.items() if text != texts[path]}
    head_dir = tmp_path_factory.mktemp("head")
    shutil.rmtree(head_dir)
    shutil.copytree(base_dir, head_dir)
    for path, text in changed.items():
        (head_dir / path).write_text(text)
    base, head = load_repository(base_dir), load_repository(head_dir)
    truth = naive_changes(base, head, secrets)
    for recompile_all in (False, True):
        # Schema, round trip, digest, and no secret value anywhere; the JSON document.
        report = check(analyse_impact(
            ChangeInfo(ENV, BASE_SHA, HEAD_SHA, id="chg-1",
                       proposer=Principal("planner-bot", "agent"),
                       changed_files=tuple(sorted(changed))),
            base, head, StoreFleet(store.engine), secrets=secrets, recompile_all=recompile_all))
        assert reported(report) == truth, (recompile_all, sorted(changed))
        summary = report["summary"]
        affected = {certname for certname, _, _ in truth}
        assert summary["nodes_affected"] == len(affected)
        assert summary["blast_radius"]["nodes"] == len(affected)
        if any(entry["sensitive"] for node in report["nodes"] for entry in node["resources"]):
            assert summary["risk"] in ("medium", "high")
            assert summary["sensitive"]["resources"] > 0
    shutil.rmtree(head_dir)
