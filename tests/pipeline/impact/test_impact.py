"""Impact analysis on real repositories and a real state store (SQLite and PostgreSQL).

The base is a copy of ``examples/repo`` (web and db roles, hierarchical data, templates, a
secret); each test writes a head beside it with the change under test, stores a small fleet
(facts, and the catalog compiled at the base with its recorded inputs) in a store, and
checks the report: which nodes were recompiled and why, the resource-level diff, secrets,
failures, determinism, and the JSON Schema. One test drives the whole thing from real git
commits of a :class:`DesiredStateRepo`.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steward.access.principal import Principal
from steward.compiler import compile_catalog
from steward.gitrepo import Author, DesiredStateRepo
from steward.language import Repository, load_repository
from steward.pipeline.impact.analysis import (
    ChangeInfo,
    ImpactReport,
    StoreFleet,
    analyse_impact,
)
from steward.pipeline.impact.analysis import (
    render_text as render_report,
)
from steward.pipeline.impact.compile import analyse_nodes, make_sides
from steward.pipeline.impact.model import NodeTask
from steward.pipeline.impact.report import NodeImpact
from steward.pipeline.impact.select import scope_change
from steward.secrets import SecretStore, init_store
from steward.store import Store
from tests.e2e.harness import database_url

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"
SCHEMA = json.loads((ROOT / "schemas" / "impact-report.schema.json").read_text())
SECRET = "Tr0ub4dor-and-3-very-secret"
ROTATED = "correct-horse-battery-staple-9"
BASE_SHA = "b" * 40
HEAD_SHA = "c" * 40
WHEN = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
#: certname → environment it is stored in (web2 is the staging canary of the example).
FLEET = {"web1": "production", "web3": "production", "web4": "production",
         "db1": "production", "db2": "production", "web2": "staging"}
PRODUCTION = sorted(n for n, e in FLEET.items() if e == "production")
WEB = ["web1", "web3", "web4"]


# -- fixtures -----------------------------------------------------------------------------------


def node_facts(name: str) -> dict[str, Any]:
    """The example's facts for the node's kind, renamed (a distinct address per node)."""
    facts = json.loads((EXAMPLES / "facts" / f"{'db1' if name.startswith('db') else 'web1'}"
                        ".json").read_text())
    number = int(re.sub(r"\D", "", name) or 0)
    facts["hostname"] = name
    facts["fqdn"] = f"{name}.example.com"
    facts["networking"].update(hostname=name, fqdn=f"{name}.example.com",
                               ip=f"10.0.{1 if name.startswith('web') else 2}.{number}")
    return facts


@pytest.fixture
def secrets(tmp_path: Path) -> SecretStore:
    store, _key = init_store(tmp_path / "secrets", {"db_password": SECRET,
                                                    "db_password_v2": ROTATED})
    return store


@pytest.fixture
def base_dir(tmp_path: Path) -> Path:
    """examples/repo, where web1 also pins nginx::worker_connections in its node file."""
    base = tmp_path / "base"
    shutil.copytree(EXAMPLES / "repo", base)
    node = base / "data" / "nodes" / "web1.yaml"
    node.write_text(node.read_text() + "nginx::worker_connections: 2048\n")
    return base


def make_head(base: Path, edits: dict[str, str | None], name: str = "head") -> Path:
    """A copy of ``base`` with ``edits`` (path → new text, None to delete) applied."""
    head = base.parent / name
    shutil.rmtree(head, ignore_errors=True)
    shutil.copytree(base, head)
    for path, text in edits.items():
        target = head / path
        if text is None:
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    return head


def edit(base: Path, path: str, old: str, new: str) -> str:
    text = (base / path).read_text()
    assert old in text, f"{old!r} not in {path}"
    return text.replace(old, new, 1)


def populate(store: Store, repo: Repository, secrets: SecretStore,
             fleet: dict[str, str] = FLEET, *, without_catalog: tuple[str, ...] = ()) -> None:
    for name, env in fleet.items():
        facts = node_facts(name)
        store.replace_facts(name, env, facts, WHEN)
        if name in without_catalog:
            continue
        catalog = compile_catalog(repo, name, facts, environment=env, secrets=secrets,
                                  code_id=BASE_SHA).catalog
        store.replace_catalog(catalog.to_json(), WHEN + timedelta(seconds=1))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.migrate()
    yield store
    store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with database_url(str(request.param), tmp_path, "impact") as url:
        store = Store(url)
        store.migrate()
        try:
            yield store
        finally:
            store.close()


def analyse(base: Path, head: Path, store: Store, secrets: SecretStore,
            changed: tuple[str, ...], env: str = "production", **kwargs: Any) -> dict[str, Any]:
    """The report's JSON document (checked: see :func:`check`)."""
    report = analyse_impact(
        ChangeInfo(env, BASE_SHA, HEAD_SHA, id="chg-7",
                   proposer=Principal("planner-bot", "agent"), changed_files=changed),
        load_repository(base), load_repository(head), StoreFleet(store.engine),
        secrets=secrets, **kwargs)
    return check(report)


def check(report: ImpactReport) -> dict[str, Any]:
    """Every report: its JSON valid against the schema and read back to the same model and
    bytes, digest right, no secret anywhere. Returns the JSON document."""
    document = report.to_json()
    jsonschema.Draft202012Validator(SCHEMA).validate(document)
    text = report_json(document)
    again = ImpactReport.from_json(json.loads(text))
    assert again == report
    assert again.json_text() == text == report.json_text()
    assert report.verify_digest()
    rendered = render_report(report)
    for secret in (SECRET, ROTATED):
        assert secret not in text
        assert secret not in rendered
    return document


def report_json(document: dict[str, Any]) -> str:
    return ImpactReport.from_json(document).json_text()


def render_text(document: dict[str, Any]) -> str:
    return render_report(ImpactReport.from_json(document))


def nodes_of(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {node["certname"]: node for node in report["nodes"]}


def resource(node: dict[str, Any], ref: str) -> dict[str, Any]:
    found = [r for r in node["resources"] if r["resource"] == ref]
    assert found, f"{ref} not in {[r['resource'] for r in node['resources']]}"
    return found[0]


def line_of(repo: Path, path: str, needle: str) -> int:
    for number, line in enumerate((repo / path).read_text().splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


# -- selection ----------------------------------------------------------------------------------


def test_role_data_key_affects_only_that_roles_nodes(
        base_dir: Path, any_store: Store, secrets: SecretStore) -> None:
    populate(any_store, load_repository(base_dir), secrets)
    head = make_head(base_dir, {"data/roles/web.yaml": edit(
        base_dir, "data/roles/web.yaml", "nginx::worker_connections: 4096",
        "nginx::worker_connections: 8192")})
    report = analyse(base_dir, head, any_store, secrets, ("data/roles/web.yaml",))
    selection = report["selection"]
    assert selection["mode"] == "inputs"
    assert "nginx::worker_connections" in selection["reason"]
    assert (selection["nodes_in_environment"], selection["nodes_recompiled"]) == (5, 3)
    assert report["change"]["changed_data_keys"] == ["nginx::worker_connections"]
    nodes = nodes_of(report)
    assert sorted(nodes) == WEB  # no db node was even compiled
    assert nodes["web1"]["status"] == "unchanged"  # its node file pins the key
    assert {nodes[n]["status"] for n in ("web3", "web4")} == {"changed"}
    summary = report["summary"]
    assert (summary["nodes_affected"], summary["nodes_unchanged"]) == (2, 1)
    assert summary["blast_radius"] == {"nodes": 2, "resources": 2, "percent": 40.0}
    # web4's catalog in the store is exactly the base compile.
    assert nodes["web4"]["current"]["stored"] == nodes["web4"]["current"]["catalog"]


def test_key_no_node_reads_selects_nothing(
        base_dir: Path, store: Store, secrets: SecretStore) -> None:
    populate(store, load_repository(base_dir), secrets)
    text = (base_dir / "data/roles/web.yaml").read_text() + "nginx::unused_knob: 3\n"
    head = make_head(base_dir, {"data/roles/web.yaml": text, "README.md": "notes\n"})
    report = analyse(base_dir, head, store, secrets, ("README.md", "data/roles/web.yaml"))
    assert report["change"]["changed_data_keys"] == ["nginx::unused_knob"]
    assert report["selection"]["nodes_recompiled"] == 0
    assert "README.md read by no compile" in report["selection"]["reason"]
    assert report["nodes"] == []
    assert report["summary"]["risk"] == "low"
    assert report["summary"]["risk_reasons"] == ["no node changes"]


def test_nested_key_at_top_level_granularity(
        base_dir: Path, store: Store, secrets: SecretStore) -> None:
    populate(store, load_repository(base_dir), secrets)
    head = make_head(base_dir, {"data/roles/db.yaml": edit(
        base_dir, "data/roles/db.yaml", "vm.swappiness: 1", "vm.swappiness: 5")})
    report = analyse(base_dir, head, store, secrets, ("data/roles/db.yaml",))
    assert report["change"]["changed_data_keys"] == ["base::sysctl"]
    assert sorted(nodes_of(report)) == ["db1", "db2"]
    assert {n["status"] for n in report["nodes"]} == {"changed"}


def test_template_change_selects_the_nodes_rendering_it(
        base_dir: Path, store: Store, secrets: SecretStore) -> None:
    populate(store, load_repository(base_dir), secrets)
    # header.j2 is only included by the nginx templates: web nodes read it, db nodes do not.
    head = make_head(base_dir, {"templates/nginx/header.j2": "# new header, {{ node }}\n"})
    report = analyse(base_dir, head, store, secrets, ("templates/nginx/header.j2",))
    assert sorted(nodes_of(report)) == WEB
    web3 = nodes_of(report)["web3"]
    diff = resource(web3, "file[/etc/nginx/nginx.conf]")["content_diff"]
    assert "+# new header, web3\n" in diff


def test_classification_change_widens_and_moves_nodes(
        base_dir: Path, store: Store, secrets: SecretStore) -> None:
    populate(store, load_repository(base_dir), secrets)
    text = edit(base_dir, "classification.yaml", "      node: web2\n", "      node: web4\n")
    head = make_head(base_dir, {"classification.yaml": text})
    report = analyse(base_dir, head, store, secrets, ("classification.yaml",))
    selection = report["selection"]
    assert selection["mode"] == "all"
    assert "classification.yaml changed" in selection["reason"]
    assert selection["nodes_recompiled"] == 5
    assert selection["nodes_classified_from_other_environments"] == 1
    nodes = nodes_of(report)
    assert sorted(nodes) == sorted([*PRODUCTION, "web2"])
    assert nodes["web2"]["status"] == "new"  # leaves staging for production
    assert nodes["web2"]["current"]["catalog"] is None
    assert {r["action"] for r in nodes["web2"]["resources"]} == {"add"}
    assert nodes["web4"]["status"] == "removed"  # the canary is now web4, in staging
    assert nodes["web4"]["proposed"]["environment"] == "staging"
    assert {nodes[n]["status"] for n in ("web1", "web3", "db1", "db2")} == {"unchanged"}
    summary = report["summary"]
    assert (summary["nodes_new"], summary["nodes_removed"]) == (1, 1)
    assert summary["risk"] == "medium"  # web2 gains packages and services; 40% of production
    assert "classification moves nodes: 1 into production, 1 out of it" in \
        summary["risk_reasons"]
    assert any("classification or settings changed" in r for r in summary["risk_reasons"])


def test_pinned_nodes_do_not_move(base_dir: Path, store: Store, secrets: SecretStore) -> None:
    populate(store, load_repository(base_dir), secrets)
    text = edit(base_dir, "classification.yaml", "      node: web2\n", "      node: web4\n")
    head = make_head(base_dir, {"classification.yaml": text})
    report = analyse(base_dir, head, store, secrets, ("classification.yaml",),
                     pins={"web2": "staging", "web4": "production"})
    assert {n["status"] for n in report["nodes"]} == {"unchanged"}
    assert report["selection"]["nodes_classified_from_other_environments"] == 0


def test_new_data_file_at_a_nodes_hierarchy_path(
        base_dir: Path, any_store: Store, secrets: SecretStore) -> None:
    populate(any_store, load_repository(base_dir), secrets)
    head = make_head(base_dir, {"data/nodes/db2.yaml": "postgresql::max_connections: 300\n",
                                "data/nodes/db9.yaml": "postgresql::max_connections: 1\n"})
    report = analyse(base_dir, head, any_store, secrets,
                     ("data/nodes/db2.yaml", "data/nodes/db9.yaml"))
    assert "data file data/nodes/db2.yaml added or removed" in report["selection"]["reason"]
    nodes = nodes_of(report)
    assert sorted(nodes) == ["db2"]  # db9 is nobody; no other node resolves db2's file
    conf = resource(nodes["db2"], "file[/etc/postgresql/15/main/postgresql.conf]")
    assert "+max_connections = 300\n" in conf["content_diff"]


def test_nodes_without_recorded_inputs_are_recompiled(
        base_dir: Path, store: Store, secrets: SecretStore) -> None:
    populate(store, load_repository(base_dir), secrets, without_catalog=("db2",))
    head = make_head(base_dir, {"templates/nginx/header.j2": "# header\n"})
    report = analyse(base_dir, head, store, secrets, ("templates/nginx/header.j2",))
    assert sorted(nodes_of(report)) == sorted([*WEB, "db2"])
    assert report["selection"]["nodes_without_inputs"] == 1
    assert "1 node without recorded inputs recompiled" in report["selection"]["reason"]
    assert nodes_of(report)["db2"]["status"] == "unchanged"
    assert nodes_of(report)["db2"]["current"]["stored"] is None


def test_deactivated_nodes_are_not_the_fleet(
        base_dir: Path, any_store: Store, secrets: SecretStore) -> None:
    populate(any_store, load_repository(base_dir), secrets)
    any_store.deactivate_node("web3", WHEN + timedelta(minutes=1))
    fleet = StoreFleet(any_store.engine)
    assert [n.certname for n in fleet.nodes("production")] == ["db1", "db2", "web1", "web4"]
    assert [n.certname for n in fleet.nodes()] == ["db1", "db2", "web1", "web2", "web4"]
    assert dict(fleet.facts(["web4", "nobody"]))["web4"]["hostname"] == "web4"
    web4 = next(n for n in fleet.nodes("production") if n.certname == "web4")
    assert web4.code_id == BASE_SHA
    assert web4.inputs is not None
    assert "data/roles/web.yaml" in web4.inputs["data_paths"]


def test_added_template_reachable_through_a_dynamic_include(
        base_dir: Path, tmp_path: Path) -> None:
    head = make_head(base_dir, {
        "templates/base/motd.j2": "{% include 'extra/' ~ node ~ '.j2' ignore missing %}\n"})
    newer = make_head(head, {"templates/extra/web3.j2": "hello\n"}, name="newer")
    scope = scope_change(load_repository(head), load_repository(newer),
                         ["templates/extra/web3.j2"], "production")
    assert scope.code_files == {"templates/extra/web3.j2"}
    assert "templates/base/motd.j2" in scope.reach_files


# -- the diff -----------------------------------------------------------------------------------


def test_properties_before_after_content_and_provenance(
        base_dir: Path, store: Store, secrets: SecretStore) -> None:
    populate(store, load_repository(base_dir), secrets)
    profile = edit(base_dir, "profiles/nginx.yaml",
                   '    template: nginx/nginx.conf.j2\n    mode: "0644"',
                   '    template: nginx/nginx.conf.j2\n    mode: "0640"')
    profile = profile.replace("  directory[/var/www]:\n    mode: \"0755\"\n", "")
    profile += "  package[nginx-extras]:\n    ensure: installed\n    notify: service[nginx]\n"
    role = edit(base_dir, "data/roles/web.yaml", "4096", "1024")
    head = make_head(base_dir, {"profiles/nginx.yaml": profile, "data/roles/web.yaml": role})
    report = analyse(base_dir, head, store, secrets,
                     ("data/roles/web.yaml", "profiles/nginx.yaml"))
    web3 = nodes_of(report)["web3"]
    conf = resource(web3, "file[/etc/nginx/nginx.conf]")
    assert conf["action"] == "modify"
    where = line_of(base_dir, "profiles/nginx.yaml", "file[/etc/nginx/nginx.conf]")
    assert conf["before"] == conf["after"] == {"file": "profiles/nginx.yaml", "line": where}
    props = {p["name"]: p for p in conf["properties"]}
    assert sorted(props) == ["content", "mode"]
    assert (props["mode"]["before"], props["mode"]["after"]) == ("0644", "0640")
    assert "worker_connections 4096;" in props["content"]["before"]
    assert "worker_connections 1024;" in props["content"]["after"]
    assert conf["content_diff"].startswith(
        "--- /etc/nginx/nginx.conf\n+++ /etc/nginx/nginx.conf\n@@ ")
    assert "-    worker_connections 4096;\n+    worker_connections 1024;\n" in \
        conf["content_diff"]

    added = resource(web3, "package[nginx-extras]")
    assert added["before"] is None
    assert added["after"]["file"] == "profiles/nginx.yaml"
    assert added["after"]["line"] == line_of(head, "profiles/nginx.yaml", "nginx-extras")
    assert {p["name"]: p["after"] for p in added["properties"]} == {
        "ensure": "installed", "name": "nginx-extras"}
    removed = resource(web3, "directory[/var/www]")
    assert removed["action"] == "remove"
    assert removed["after"] is None
    assert removed["before"]["line"] == line_of(base_dir, "profiles/nginx.yaml",
                                                "directory[/var/www]:")
    assert {"action": "add", "source": "package[nginx-extras]", "target": "service[nginx]",
            "relationship": "notifies"} in web3["edges"]
    # web1 pins worker_connections: only the mode changed there.
    web1_conf = resource(nodes_of(report)["web1"], "file[/etc/nginx/nginx.conf]")
    assert [p["name"] for p in web1_conf["properties"]] == ["mode"]
    assert web1_conf["content_diff"] is None
    # A removed package-less directory and an added package: medium risk at least.
    assert report["summary"]["resources_added"] == 3
    assert report["summary"]["resources_removed"] == 3
    assert report["summary"]["risk"] in ("medium", "high")


def test_secrets_never_appear(base_dir: Path, store: Store, secrets: SecretStore) -> None:
    populate(store, load_repository(base_dir), secrets)
    profile = edit(base_dir, "profiles/postgresql.yaml", "{secret: db_password}",
                   "{secret: db_password_v2}")
    profile += ('  file[/etc/steward/db_dsn]:\n'
                '    content: "postgres://app:{{ params.password }}@localhost/app"\n'
                '    mode: "0600"\n')
    head = make_head(base_dir, {"profiles/postgresql.yaml": profile})
    report = analyse(base_dir, head, store, secrets, ("profiles/postgresql.yaml",))
    db1 = nodes_of(report)["db1"]
    password = resource(db1, "file[/etc/steward/db_password]")
    [content] = [p for p in password["properties"] if p["name"] == "content"]
    assert content == {"name": "content", "before": "[redacted]", "after": "[redacted]",
                       "sensitive": True, "digest_changed": True}
    # The whole content is the secret: its line shows as changed, masked.
    assert password["sensitive"] is True
    assert password["content_diff"] == ("--- /etc/steward/db_password\n"
                                        "+++ /etc/steward/db_password\n@@ -1 +1 @@\n"
                                        "-[redacted]\n+[redacted]\n")
    dsn = resource(db1, "file[/etc/steward/db_dsn]")
    assert {p["name"]: p["after"] for p in dsn["properties"]}["content"] == "[redacted]"
    assert report["summary"]["risk"] in ("medium", "high")
    assert any("sensitive value" in r for r in report["summary"]["risk_reasons"])
    assert "[redacted]" in render_text(report)


def test_sensitive_value_unchanged_is_not_listed(
        base_dir: Path, store: Store, secrets: SecretStore) -> None:
    populate(store, load_repository(base_dir), secrets)
    profile = edit(base_dir, "profiles/postgresql.yaml",
                   'content: "{{ params.password }}"\n    mode: "0600"',
                   'content: "{{ params.password }}"\n    mode: "0640"')
    head = make_head(base_dir, {"profiles/postgresql.yaml": profile})
    report = analyse(base_dir, head, store, secrets, ("profiles/postgresql.yaml",))
    password = resource(nodes_of(report)["db1"], "file[/etc/steward/db_password]")
    assert [p["name"] for p in password["properties"]] == ["mode"]


def test_an_edit_around_a_secret_is_a_change_with_its_secret_lines_masked(
        base_dir: Path, store: Store, secrets: SecretStore) -> None:
    """The placeholder key (param:<ref>:content) stays the same; the keyed digest does not."""
    populate(store, load_repository(base_dir), secrets)
    template = "templates/postgresql/pgpass.j2"
    text = edit(base_dir, template, ":*:app:", ":*:postgres:") + (
        "# {{ params.password | upper }}\n"
        "# {{ params.password | reverse | join('') }}\n"
        "# port {{ params.port }}\n")
    report = analyse(base_dir, make_head(base_dir, {template: text}), store, secrets,
                     (template,))
    assert report["summary"]["nodes_affected"] == 2
    assert report["summary"]["sensitive"] == {"nodes": 2, "resources": 2, "values": 2,
                                              "inputs": [template]}
    pgpass = resource(nodes_of(report)["db1"], "file[/var/lib/postgresql/.pgpass]")
    assert pgpass["sensitive"] is True
    assert pgpass["content_diff"] == (
        "--- /var/lib/postgresql/.pgpass\n+++ /var/lib/postgresql/.pgpass\n@@ -1,2 +1,5 @@\n"
        " # hostname:port:database:username:password\n"
        "-[redacted]\n+[redacted]\n+[redacted]\n+[redacted]\n"
        "+# port 5432\n")
    text_out = report_json(report) + render_text(report)
    for form in (SECRET.upper(), SECRET[::-1]):
        assert form not in text_out


def test_a_placeholder_without_a_digest_counts_as_changed() -> None:
    from steward.catalog.model import Catalog, Resource
    from steward.pipeline.impact.diff import diff_catalogs

    def catalog(digests: dict[str, str]) -> Catalog:
        params = {"path": "/etc/x", "content": {"__sensitive__": "param:file[/etc/x]:content"}}
        return Catalog(node="n", environment="production",
                       resources=[Resource("file", "/etc/x", params, (), "p.yaml", 1)],
                       edges=[], sensitive=digests).seal()

    key = "param:file[/etc/x]:content"
    assert diff_catalogs(catalog({key: "a"}), catalog({key: "a"}))[0] == []
    for before, after in (({key: "a"}, {key: "b"}), ({key: "a"}, {}), ({}, {key: "b"})):
        [entry] = diff_catalogs(catalog(before), catalog(after))[0]
        assert entry.sensitive is True
        assert entry.properties[0].digest_changed is True


def test_a_dormant_template_branch_names_its_sensitive_input(
        base_dir: Path, store: Store, secrets: SecretStore) -> None:
    populate(store, load_repository(base_dir), secrets)
    template = "templates/postgresql/pgpass.j2"
    text = (base_dir / template).read_text() + (
        "{% if facts.get('no_such_fact') %}{{ params.password }}{% endif %}")
    report = analyse(base_dir, make_head(base_dir, {template: text}), store, secrets,
                     (template,))
    assert report["summary"]["nodes_affected"] == 0
    assert report["summary"]["sensitive"]["inputs"] == [template]
    assert {n["certname"]: n["sensitive_inputs"] for n in report["nodes"]} == {
        "db1": [template], "db2": [template]}
    assert report["summary"]["risk"] == "medium"


# -- failures -----------------------------------------------------------------------------------


def test_a_failing_compile_fails_that_node_only(
        base_dir: Path, any_store: Store, secrets: SecretStore) -> None:
    populate(any_store, load_repository(base_dir), secrets)
    head = make_head(base_dir, {
        "data/roles/web.yaml": edit(base_dir, "data/roles/web.yaml", "4096", "2000"),
        "data/nodes/web3.yaml": "nginx::listen_port: 81\n"})
    report = analyse(base_dir, head, any_store, secrets,
                     ("data/nodes/web3.yaml", "data/roles/web.yaml"))
    nodes = nodes_of(report)
    assert nodes["web3"]["status"] == "failed"
    error = nodes["web3"]["error"]
    assert "data/nodes/web3.yaml:1" in error["message"]
    assert "listen_port" in error["message"]
    assert nodes["web3"]["proposed"]["catalog"] is None
    assert nodes["web3"]["resources"] == []
    assert nodes["web4"]["status"] == "changed"
    summary = report["summary"]
    assert summary["nodes_failed"] == 1
    assert summary["risk"] == "high"
    assert summary["risk_reasons"][0] == "the compile fails on 1 node"
    assert "! data/nodes/web3.yaml:1" in render_text(report)


def test_a_compile_failing_at_base_shows_what_head_adds(
        base_dir: Path, store: Store, secrets: SecretStore) -> None:
    populate(store, load_repository(base_dir), secrets)
    broken = make_head(base_dir, {"data/nodes/db2.yaml": "postgresql::port: many\n"},
                       name="broken")
    fixed = make_head(broken, {"data/nodes/db2.yaml": "postgresql::port: 5433\n"},
                      name="fixed")
    report = analyse(broken, fixed, store, secrets, ("data/nodes/db2.yaml",))
    db2 = nodes_of(report)["db2"]
    assert db2["status"] == "changed"
    assert db2["current"]["catalog"] is None
    assert "data/nodes/db2.yaml:1" in db2["current"]["error"]["message"]
    assert {r["action"] for r in db2["resources"]} == {"add"}


# -- determinism, parallelism, rendering --------------------------------------------------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Store,
                                                                        SecretStore]]:
    tmp = tmp_path_factory.mktemp("impact-shared")
    base = tmp / "base"
    shutil.copytree(EXAMPLES / "repo", base)
    secrets, _key = init_store(tmp / "secrets", {"db_password": SECRET,
                                                 "db_password_v2": ROTATED})
    store = Store(f"sqlite:///{tmp / 'store.db'}")
    store.migrate()
    fleet = dict(FLEET, **{f"web{n}": "production" for n in range(5, 12)})
    populate(store, load_repository(base), secrets, fleet)
    yield base, store, secrets
    store.close()


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(connections=st.integers(min_value=1, max_value=99_999),
       swappiness=st.integers(min_value=0, max_value=100),
       reverse=st.booleans())
def test_same_inputs_same_bytes(shared: tuple[Path, Store, SecretStore], connections: int,
                                swappiness: int, reverse: bool) -> None:
    base, store, secrets = shared
    edits = {
        "data/roles/web.yaml": edit(base, "data/roles/web.yaml", "4096", str(connections)),
        "data/roles/db.yaml": edit(base, "data/roles/db.yaml", "vm.swappiness: 1",
                                   f"vm.swappiness: {swappiness}"),
    }
    head = make_head(base, edits, name=f"head-{connections}-{swappiness}")
    changed = tuple(sorted(edits, reverse=reverse))
    first = report_json(analyse(base, head, store, secrets, changed, workers=1))
    again = report_json(analyse(base, head, store, secrets, tuple(reversed(changed)),
                                workers=2, parallel_min=1))
    assert first == again
    shutil.rmtree(head)


def test_pool_start_methods_agree(shared: tuple[Path, Store, SecretStore]) -> None:
    """Serial, forked and spawned workers give the same entries."""
    base, store, secrets = shared
    head = make_head(base, {"templates/nginx/header.j2": "# {{ node }} header\n"},
                     name="head-pool")
    sides = make_sides(load_repository(base), load_repository(head), "production",
                       BASE_SHA, HEAD_SHA, secrets)
    fleet = StoreFleet(store.engine)
    names = [n.certname for n in fleet.nodes("production")]
    tasks = [NodeTask(name, facts) for name, facts in fleet.facts(names)]
    serial, used = analyse_nodes(sides, [tasks], total=len(tasks), workers=1)
    assert used == 1
    results: dict[str, Any] = {}

    def in_thread() -> None:  # a second thread running: the pool spawns its workers
        results["spawn"] = analyse_nodes(sides, [tasks[:5], tasks[5:]], total=len(tasks),
                                         workers=2, parallel_min=1)

    worker = threading.Thread(target=in_thread)
    worker.start()
    worker.join()
    spawned, used = results["spawn"]
    assert used == 2
    assert spawned == serial
    assert len(serial) == len(names) == 12


def test_spawned_workers_refuse_a_changed_directory(
        shared: tuple[Path, Store, SecretStore]) -> None:
    """If the head directory changes under the analysis, workers cannot load the same
    repository: the work is done in this process, with the parent's objects."""
    base, store, secrets = shared
    head_dir = make_head(base, {"templates/nginx/header.j2": "# one\n"}, name="head-moving")
    sides = make_sides(load_repository(base), load_repository(head_dir), "production",
                       BASE_SHA, HEAD_SHA, secrets)
    (head_dir / "templates/nginx/header.j2").write_text("# two\n")
    fleet = StoreFleet(store.engine)
    tasks = [NodeTask(name, facts) for name, facts in fleet.facts(WEB)]
    results: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: results.update(out=analyse_nodes(
        sides, [tasks], total=len(tasks), workers=2, parallel_min=1)))
    worker.start()
    worker.join()
    entries, used = results["out"]
    assert used == 1
    assert all(isinstance(e, NodeImpact) for e in entries)
    assert all("+# one\n" in resource(e.to_json(), "file[/etc/nginx/nginx.conf]")
               ["content_diff"] for e in entries)


def test_rendering_summary_first_and_collapsed(
        shared: tuple[Path, Store, SecretStore]) -> None:
    base, store, secrets = shared
    profile = edit(base, "profiles/nginx.yaml", "  user[www-deploy]:\n", "  user[www-deploy]:\n"
                   "    ensure: absent\n")
    profile += "  package[nginx-extras]:\n    before: service[nginx]\n"
    head = make_head(base, {
        "data/roles/web.yaml": edit(base, "data/roles/web.yaml", "4096", "5000"),
        "profiles/nginx.yaml": profile.replace("  directory[/var/www]:\n    mode: \"0755\"\n", ""),
    }, name="head-render")
    report = analyse(base, head, store, secrets, ("data/roles/web.yaml", "profiles/nginx.yaml"))
    text = render_text(report)
    lines = text.splitlines()
    assert lines[0] == f"Impact of chg-7 on production: {BASE_SHA[:12]} → {HEAD_SHA[:12]}"
    assert lines[1].startswith("Risk: ")
    assert text.index("Blast radius:") < text.index("web1: changed")
    assert "  ~ file[/etc/nginx/nginx.conf]  (profiles/nginx.yaml:" in text
    assert "  + package[nginx-extras]  (profiles/nginx.yaml:" in text
    assert "  - directory[/var/www]  (profiles/nginx.yaml:" in text
    assert '      ensure: (unset) → "absent"' in text
    assert "        -    worker_connections 4096;" in text
    assert "        +    worker_connections 5000;" in text
    assert "  + edge package[nginx-extras] before service[nginx]" in text
    # web3..11: the same change, whatever their names in the rendered files; web1 has one
    # site more, so one autorequire edge more is removed: a change of its own.
    web = [n for n in report["nodes"] if n["certname"].startswith("web")]
    assert len(web) == 10
    assert "  … and 8 more nodes with the same change (web11, web3, web4, …)" in text
    assert [line for line in lines if line.endswith(": changed")] == ["web1: changed",
                                                                       "web10: changed"]
    before = line_of(base, "profiles/nginx.yaml", "user[www-deploy]")
    after = line_of(head, "profiles/nginx.yaml", "user[www-deploy]")
    assert before != after  # two lines above it were removed
    assert (f"  ~ user[www-deploy]  (profiles/nginx.yaml:{before} → "
            f"profiles/nginx.yaml:{after})") in text
    assert text.rstrip().endswith(report["digest"])


def test_whole_flow_on_git_commits(tmp_path: Path, store: Store, secrets: SecretStore) -> None:
    """Base and head are commits of a real desired-state repository; changed files come
    from git."""
    source = tmp_path / "source"
    shutil.copytree(EXAMPLES / "repo", source)
    desired = DesiredStateRepo.create(tmp_path / "desired.git", source,
                                      ("staging", "production"),
                                      Author("Steward", "steward@localhost"),
                                      default="production", cache_dir=tmp_path / "cache")
    base = desired.tip("production")
    web = (source / "data/roles/web.yaml").read_text().replace("4096", "6000")
    head = desired.commit(parent=base, author=Author("bot", "bot@localhost"),
                          message="more connections", edits={"data/roles/web.yaml": web})
    base_repo = desired.load(base)
    populate(store, base_repo, secrets)
    report = check(analyse_impact(
        ChangeInfo("production", base, head, id="chg-1",
                   changed_files=tuple(desired.changed_files(base, head))),
        base_repo, desired.load(head), StoreFleet(store.engine), secrets=secrets))
    assert report["change"]["changed_files"] == ["data/roles/web.yaml"]
    assert sorted(nodes_of(report)) == WEB
    # The stored catalogs were compiled with code_id BASE_SHA, not the commit: not at base.
    web4 = nodes_of(report)["web4"]
    assert web4["current"]["code_id"] == base
    assert web4["proposed"]["code_id"] == head
    assert web4["current"]["stored"] != web4["current"]["catalog"]
