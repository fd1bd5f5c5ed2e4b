"""The example repository compiled end to end, and determinism."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steward.catalog.model import Catalog
from steward.catalog.sensitive import is_sensitive_placeholder
from steward.catalog.types import TYPES
from steward.compiler import compile_catalog
from steward.language import Repository
from steward.secrets import SecretStore

from .conftest import EXAMPLES, example_facts

DEMO_PASSWORD = json.loads((EXAMPLES / "secrets" / "demo-secrets.json").read_text())["db_password"]


def check_well_formed(catalog: Catalog) -> None:
    """What every compiled catalog must satisfy, whatever the repository."""
    refs = [r.ref for r in catalog.resources]
    assert len(refs) == len(set(refs))
    index = {ref: i for i, ref in enumerate(refs)}
    keys = [(index[e.source], index[e.target], e.relationship) for e in catalog.edges]
    assert keys == sorted(set(keys))
    for resource in catalog.resources:
        rtype = TYPES[resource.type]
        assert rtype.namevar in resource.parameters
        for name, value in resource.parameters.items():
            param = rtype.by_name.get(name) or (name == "noop" or None)
            assert param, f"{resource.ref}: unexpected parameter {name}"
            if not is_sensitive_placeholder(value) and name != "noop":
                assert rtype.by_name[name].check(value) is None
        assert not {
            "template",
            "source",
            "require",
            "before",
            "notify",
            "subscribe",
            "tags",
            "when",
            "for_each",
        } & set(resource.parameters)
        assert list(resource.tags) == sorted(resource.tags)
        assert resource.file is not None
        assert resource.line is not None
    assert Catalog.from_json(json.loads(catalog.dumps())).hash == catalog.hash
    assert catalog.seal().hash == catalog.hash


def test_web1(example_repo: Repository) -> None:
    catalog = compile_catalog(example_repo, "web1", example_facts("web1")).catalog
    check_well_formed(catalog)
    assert catalog.environment == "production"
    assert catalog.classification == {
        "roles": ["web"],
        "profiles": ["base", "nginx", "monitoring"],
        "rules": ["web servers", "debian monitoring"],
    }
    resources = catalog.resource_map()
    conf = resources["file[/etc/nginx/nginx.conf]"]
    assert conf.parameters["mode"] == "0644"
    assert "worker_processes 4;" in conf.parameters["content"]  # 2 processors * 2
    assert "server_name web1.example.com;" in conf.parameters["content"]
    assert "worker_connections 4096;" in conf.parameters["content"]  # data/roles/web.yaml
    assert conf.tags == ("profile:nginx", "role:web")
    assert (conf.file, conf.line) == ("profiles/nginx.yaml", 12)
    sites = [r.title for r in catalog.resources if r.title.endswith("/index.html")]
    assert sites == [  # data/nodes/web1.yaml wins over data/roles/web.yaml ("first")
        "/var/www/example.com/index.html",
        "/var/www/shop.example.com/index.html",
        "/var/www/canary.example.com/index.html",
    ]
    assert "user[www-deploy]" in resources  # Debian only
    assert resources["service[chrony]"].tags == ("profile:base", "role:web", "time")
    motd = resources["file[/etc/motd]"].parameters["content"]
    assert "web1 is the canary" in motd
    chrony = resources["file[/etc/chrony/chrony.conf]"].parameters["content"]
    assert chrony.index("0.debian.pool.ntp.org") < chrony.index("0.pool.ntp.org")  # unique merge
    sysctl = sorted(r.title for r in catalog.resources if r.type == "line")
    assert sysctl == [
        "sysctl net.core.somaxconn",
        "sysctl net.ipv4.tcp_syncookies",
        "sysctl vm.swappiness",
    ]
    edge_set = {(e.source, e.target, e.relationship) for e in catalog.edges}
    assert ("package[nginx]", "file[/etc/nginx/nginx.conf]", "required-by") in edge_set
    assert ("file[/etc/nginx/nginx.conf]", "service[nginx]", "notifies") in edge_set
    assert ("package[nginx]", "service[nginx]", "autorequire") in edge_set
    assert ("directory[/var/www]", "directory[/var/www/example.com]", "autorequire") in edge_set
    assert ("group[admins]", "user[deploy]", "autorequire") in edge_set
    assert ("user[deploy]", "cron[clean deploy scratch]", "autorequire") in edge_set
    assert (
        "file[/etc/sysctl.d/99-steward.conf]",
        "line[sysctl vm.swappiness]",
        "autorequire",
    ) in edge_set
    inputs = catalog.inputs
    assert inputs["data_paths"] == [
        "data/nodes/web1.yaml",
        "data/roles/web.yaml",
        "data/os/Debian.yaml",
        "data/common.yaml",
    ]
    assert {
        "steward.yaml",
        "classification.yaml",
        "roles/web.yaml",
        "profiles/nginx.yaml",
        "templates/nginx/header.j2",
        "files/issue.net",
        "data/nodes/web1.yaml",
    } <= set(inputs["files"])
    assert "roles/db.yaml" not in inputs["files"]
    assert all(d.startswith("sha256:") for d in inputs["files"].values())
    assert {"nginx::sites", "base::hosts", "nginx::listen_port"} <= set(inputs["data_keys"])
    assert "nginx::workers" not in inputs["data_keys"]  # the role gives it
    assert {"os.family", "processors.count", "fqdn"} <= set(inputs["facts"])
    assert "uptime.seconds" not in inputs["facts"]
    assert catalog.sensitive == {}


def test_web2_is_staging_redhat_without_monitoring(example_repo: Repository) -> None:
    catalog = compile_catalog(example_repo, "web2", example_facts("web2")).catalog
    check_well_formed(catalog)
    assert catalog.environment == "staging"
    assert catalog.classification["profiles"] == ["base", "nginx"]
    resources = catalog.resource_map()
    assert "user[www-deploy]" not in resources
    assert "file[/etc/chrony.conf]" in resources  # the default when data/os/RedHat.yaml is absent
    assert "service[chronyd]" in resources
    assert "data/os/RedHat.yaml" in catalog.inputs["data_paths"]
    assert "data/os/RedHat.yaml" not in catalog.inputs["files"]


def test_db1_with_secrets(example_repo: Repository, demo_store: SecretStore) -> None:
    result = compile_catalog(example_repo, "db1", example_facts("db1"), secrets=demo_store)
    catalog = result.catalog
    check_well_formed(catalog)
    assert catalog.classification["roles"] == ["db"]
    document = catalog.dumps()
    assert DEMO_PASSWORD not in document
    assert set(result.sensitive_values) == {
        "secret:db_password",
        "param:file[/var/lib/postgresql/.pgpass]:content",
    }
    assert result.sensitive_values["secret:db_password"] == DEMO_PASSWORD
    assert set(catalog.sensitive) == set(result.sensitive_values)
    conf = catalog.resource_map()["file[/etc/postgresql/15/main/postgresql.conf]"]
    content = conf.parameters["content"]
    assert "max_connections = 200" in content
    assert "shared_buffers = 4GB" in content  # deep merge, role data wins
    assert "log_min_duration_statement = 500" in content  # ... and common data fills in
    assert "listen_addresses = '10.0.2.21'" in content
    edge_set = {(e.source, e.target, e.relationship) for e in catalog.edges}
    assert (
        "directory[/etc/postgresql/15/main]",
        "line[pg_hba replication]",
        "autorequire",
    ) in edge_set


def test_code_id_and_repeatability(example_repo: Repository) -> None:
    facts = example_facts("web1")
    one = compile_catalog(example_repo, "web1", facts, code_id="abc123").catalog
    two = compile_catalog(example_repo, "web1", facts, code_id="abc123").catalog
    assert one.code_id == "abc123"
    assert one.dumps() == two.dumps()
    assert compile_catalog(example_repo, "web1", facts).catalog.hash != one.hash


def test_facts_are_not_mutated(example_repo: Repository) -> None:
    facts = example_facts("web1")
    before = json.dumps(facts)
    compile_catalog(example_repo, "web1", facts)
    assert json.dumps(facts) == before


def shuffled(value: Any, rng: random.Random) -> Any:
    """The same facts, every mapping's keys in another order."""
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {key: shuffled(value[key], rng) for key in keys}
    if isinstance(value, list):
        return [shuffled(item, rng) for item in value]
    return value


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    node=st.sampled_from(["web1", "web2", "db1"]),
)
def test_fact_key_order_never_changes_the_catalog(
    example_repo: Repository, demo_store: SecretStore, seed: int, node: str
) -> None:
    facts = example_facts(node)
    reference = compile_catalog(example_repo, node, facts, secrets=demo_store)
    again = compile_catalog(
        example_repo, node, shuffled(facts, random.Random(seed)), secrets=demo_store
    )
    assert again.catalog.dumps() == reference.catalog.dumps()
    assert again.catalog.hash == reference.catalog.hash
    assert again.sensitive_values == reference.sensitive_values


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    extra=st.dictionaries(
        st.text(min_size=1, max_size=8).filter(
            lambda k: k not in {"os", "fqdn", "processors", "kernel", "networking"}
        ),
        st.integers() | st.text(max_size=5),
        max_size=5,
    )
)
def test_unread_facts_do_not_change_the_catalog(
    example_repo: Repository, extra: dict[str, Any]
) -> None:
    facts = example_facts("web1")
    reference = compile_catalog(example_repo, "web1", facts).catalog
    changed = compile_catalog(example_repo, "web1", {**facts, **extra}).catalog
    assert changed.dumps() == reference.dumps()
