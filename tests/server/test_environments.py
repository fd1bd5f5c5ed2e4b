"""Environments are branches: each node's catalog comes from its environment's branch tip.

A real server (uvicorn, TLS) on a data directory made by ``init_data_dir`` (versioned: a bare
git repository with development/staging/production), on SQLite and PostgreSQL; branches are
moved with the real :class:`DesiredStateRepo`, and a real pull agent carries the commit
(``code_id``) from its catalog into its report.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from steward.gitrepo import Author, DesiredStateRepo
from steward.secrets.store import SecretStore
from steward.server.app import create_app
from steward.server.catalogs import CatalogService, UnknownEnvironmentError
from steward.server.config import load_config
from steward.server.init import init_data_dir
from tests.e2e.harness import SECRET_VALUE, Server, database_url, free_port, make_node
from tests.server.conftest import Env
from tests.server.serving import serving

PLANNER = Author("Pat Planner", "pat@example.com")


def write_env_repo(root: Path) -> Path:
    """Every node gets a greeting naming its environment and a data-driven motto."""
    (root / "profiles").mkdir(parents=True)
    (root / "roles").mkdir()
    (root / "data").mkdir()
    (root / "steward.yaml").write_text("default_environment: production\n")
    (root / "profiles" / "app.yaml").write_text(
        "parameters:\n"
        "  motto: {type: string, default: none}\n"
        "  token: {type: string, default: {secret: app_token}}\n"
        "resources:\n"
        "  directory[/etc/app]:\n    mode: \"0755\"\n"
        "  file[/etc/app/greeting]:\n"
        "    content: \"{{ node }} in {{ environment }}: {{ params.motto }}\\n\"\n"
        "    mode: \"0644\"\n"
        "  file[/etc/app/token]:\n    content: \"{{ params.token }}\"\n    mode: \"0600\"\n"
    )
    (root / "roles" / "base.yaml").write_text("profiles:\n  app: {}\n")
    (root / "data" / "common.yaml").write_text("app::motto: steady\n")
    (root / "classification.yaml").write_text(
        "rules:\n"
        "  - name: all\n    match: {node: \"*\"}\n    role: base\n"
        "  - name: staging nodes\n    match: {node: \"stg*\"}\n    environment: staging\n"
        "    priority: 5\n"
    )
    return root


def advance(repo: DesiredStateRepo, branch: str, edits: dict[str, str | None],
            message: str = "test edit") -> str:
    """Commit ``edits`` on the branch tip and move the branch there (compare-and-swap)."""
    tip = repo.tip(branch)
    head = repo.commit(parent=tip, author=PLANNER, message=message, edits=edits)
    repo.set_branch(branch, head, expected=tip)
    return head


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fleet(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    backend = str(request.param)
    tmp = tmp_path_factory.mktemp(f"environments-{backend}")
    with database_url(backend, tmp, "environments") as url:
        result = init_data_dir(tmp / "data", database_url=url,
                               repo=write_env_repo(tmp / "source"), port=free_port())
        SecretStore(result.config.data_dir).set("app_token", SECRET_VALUE)
        config = load_config(tmp / "data").with_overrides(long_poll_seconds=2.0)
        assert config.repo_versioned
        with serving(create_app(config), config) as client:
            yield Env(config, client, result.admin_token)


def desired(env: Env) -> DesiredStateRepo:
    return DesiredStateRepo(env.config.repo_path)


def catalog(env: Env, certname: str, token: str) -> dict[str, Any]:
    response = env.client.get(f"/api/v1/nodes/{certname}/catalog", headers=env.headers(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def greeting(document: dict[str, Any]) -> str:
    (resource,) = [r for r in document["catalog"]["resources"]
                   if r["type"] == "file" and r["title"] == "/etc/app/greeting"]
    return str(resource["parameters"]["content"])


def test_each_node_compiles_from_its_environment_branch(fleet: Env) -> None:
    repo = desired(fleet)
    tokens = {name: fleet.enroll(name) for name in ("web1", "stg1")}
    for name, token in tokens.items():
        fleet.upload_facts(name, token)
    web = catalog(fleet, "web1", tokens["web1"])
    stg = catalog(fleet, "stg1", tokens["stg1"])
    assert web["catalog"]["environment"] == "production"
    assert web["catalog"]["code_id"] == repo.tip("production")
    assert stg["catalog"]["environment"] == "staging"
    assert stg["catalog"]["code_id"] == repo.tip("staging")
    assert greeting(stg) == "stg1 in staging: steady\n"

    # A commit on staging reaches staging's nodes only.
    head = advance(repo, "staging", {"data/common.yaml": "app::motto: bold\n"})
    stg2 = catalog(fleet, "stg1", tokens["stg1"])
    assert stg2["cached"] is False
    assert stg2["catalog"]["code_id"] == head
    assert stg2["input_hash"] != stg["input_hash"]
    assert greeting(stg2) == "stg1 in staging: bold\n"
    web2 = catalog(fleet, "web1", tokens["web1"])
    assert web2["cached"] is True
    assert web2["catalog"]["code_id"] == web["catalog"]["code_id"]
    assert greeting(web2) == "web1 in production: steady\n"
    # The store keeps each catalog with its commit.
    rows = fleet.client.get("/pdb/query/v4", headers=fleet.headers(), params={
        "query": 'catalogs[certname, environment, code_id] { certname in ["web1", "stg1"] }'
    }).json()
    assert sorted((r["certname"], r["environment"], r["code_id"]) for r in rows) == [
        ("stg1", "staging", head), ("web1", "production", web["catalog"]["code_id"])]


def test_classification_is_read_from_the_default_environments_branch(fleet: Env) -> None:
    repo = desired(fleet)
    rules = (repo.read_file("production", "classification.yaml") or b"").decode()
    token = fleet.enroll("mover1")
    fleet.upload_facts("mover1", token)
    assert catalog(fleet, "mover1", token)["catalog"]["environment"] == "production"
    # A rule added on another branch does not move the node...
    extra = (rules + "  - name: movers\n    match: {node: \"mover*\"}\n"
             "    environment: development\n    priority: 9\n")
    advance(repo, "staging", {"classification.yaml": extra})
    assert catalog(fleet, "mover1", token)["catalog"]["environment"] == "production"
    # ...the same rule on the default environment's branch does.
    advance(repo, "production", {"classification.yaml": extra})
    moved = catalog(fleet, "mover1", token)
    assert moved["catalog"]["environment"] == "development"
    assert moved["catalog"]["code_id"] == repo.tip("development")
    assert greeting(moved) == "mover1 in development: steady\n"


def test_an_environment_without_a_branch_is_a_clear_error(fleet: Env) -> None:
    repo = desired(fleet)
    rules = (repo.read_file("production", "classification.yaml") or b"").decode()
    advance(repo, "production", {"classification.yaml": rules + (
        "  - name: qa\n    match: {node: \"qa*\"}\n    environment: qa\n    priority: 9\n")})
    token = fleet.enroll("qa1")
    fleet.upload_facts("qa1", token)
    response = fleet.client.get("/api/v1/nodes/qa1/catalog", headers=fleet.headers(token))
    assert response.status_code == 422
    error = response.json()["error"]
    assert "node 'qa1' is in environment 'qa', which has no branch in the desired-state " \
           "repository" in error
    assert "(environments: development, production, staging)" in error


def test_the_agent_reports_the_commit_it_enforced(fleet: Env, tmp_path: Path) -> None:
    repo = desired(fleet)
    server = Server(fleet.config.data_dir, fleet.admin_token, port=fleet.config.port)
    node = make_node(tmp_path, "stg-agent1", server)
    run = node.once(join_token=fleet.join_token())
    assert run.returncode == 2, run.stdout + run.stderr
    assert (node.root / "etc/app/greeting").read_text().startswith("stg-agent1 in staging: ")
    first = repo.tip("staging")
    head = advance(repo, "staging", {"data/common.yaml": "app::motto: agent-tested\n"})
    assert node.once().returncode == 2
    assert (node.root / "etc/app/greeting").read_text() == \
        "stg-agent1 in staging: agent-tested\n"
    rows = fleet.client.get("/pdb/query/v4/reports", headers=fleet.headers(), params={
        "query": '["=", "certname", "stg-agent1"]', "order_by": '[{"field": "end_time"}]',
    }).json()
    assert [r["code_id"] for r in rows] == [first, head]
    assert {r["environment"] for r in rows} == {"staging"}


# -- the service itself ---------------------------------------------------------------------


@pytest.fixture
def service(tmp_path: Path) -> CatalogService:
    repo = DesiredStateRepo.create(tmp_path / "desired.git", write_env_repo(tmp_path / "src"),
                                   ["development", "staging", "production"], PLANNER)
    store = SecretStore(tmp_path / "secrets")
    store.set("app_token", SECRET_VALUE)
    return CatalogService(repo.path, store, cache_size=8, checkout_dir=tmp_path / "checkouts")


def test_pins_compile_at_and_environment_lookups(service: CatalogService) -> None:
    repo = service.desired
    assert repo is not None
    assert service.versioned
    assert service.default_environment() == "production"
    facts = {"os": {"family": "Debian"}}
    assert service.node_environment("stg9", facts) == "staging"
    assert service.node_environment("stg9", facts, pinned="development") == "development"
    assert service.environments() == {n: repo.tip(n)
                                      for n in ("development", "production", "staging")}
    # A pin beats classification.
    pinned = service.compile("stg9", facts, "development")
    assert pinned.result.catalog.environment == "development"
    assert pinned.result.catalog.code_id == repo.tip("development")
    with pytest.raises(UnknownEnvironmentError, match="node 'stg9' is in environment 'qa'"):
        service.compile("stg9", facts, "qa")
    with pytest.raises(UnknownEnvironmentError, match="environment 'changes/x'"):
        service.compile("stg9", facts, "changes/x")
    # compile_at: any commit, the environment forced, code_id the commit.
    base = repo.tip("production")
    head = repo.commit(parent=base, author=PLANNER, message="m",
                       edits={"data/common.yaml": "app::motto: proposed\n"})
    before = service.compile_at("web9", facts, "production", base)
    after = service.compile_at("web9", facts, "production", head[:12], use_cache=False)
    assert before.result.catalog.code_id == base
    assert after.result.catalog.code_id == head
    assert before.result.catalog.hash != after.result.catalog.hash
    assert "app::motto" in after.result.catalog.inputs["data_keys"]
    assert service.compile_at("web9", facts, "production", base).cached is True
    assert service.compile_at("web9", facts, "production", head).cached is False
    # The branch did not move, so the node's current catalog is still the base's.
    assert service.compile("web9", facts).result.catalog.code_id == base
    assert (service.repository()[1], service.environment_commit("staging")) == \
        (base, repo.tip("staging"))


def test_an_unversioned_tree_serves_every_environment(tmp_path: Path) -> None:
    tree = write_env_repo(tmp_path / "tree")
    store = SecretStore(tmp_path / "secrets")
    store.set("app_token", SECRET_VALUE)
    service = CatalogService(tree, store)
    assert not service.versioned
    assert service.environments() == {}
    compiled = service.compile("stg1", {"os": {"family": "Debian"}})
    assert compiled.result.catalog.environment == "staging"
    assert compiled.result.catalog.code_id is None
    with pytest.raises(UnknownEnvironmentError, match="plain directory"):
        service.compile_at("stg1", {}, "staging", "0" * 40)
