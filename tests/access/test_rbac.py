"""Roles, permissions and environment-scoped bindings, on SQLite and PostgreSQL.

The expected permissions of the built-in roles are written out here, not derived from the
code, so the matrix is a statement of the contract (docs/rbac.md).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine

from steward.access import tables as access_tables
from steward.access.authorize import Forbidden
from steward.access.principal import Principal
from steward.access.rbac import BindingNotFound, Rbac, actor_for
from steward.access.roles import PERMISSIONS, RbacConfigError, RbacError, load_roles
from steward.access.tokens import PREFIXES, AuthenticationError, Tokens
from steward.pipeline.schema import create_all
from steward.server import db as server_db
from tests.e2e.harness import database_url

ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENTS = ("development", "staging", "production")

_APPROVER = {"change:approve", "change:reject", "query", "desired_state:read", "report:read"}
#: The contract: what each built-in role may do (admin: everything).
EXPECTED: dict[str, set[str]] = {
    "planner": {"desired_state:read", "change:propose", "change:impact", "query"},
    "validator": {"change:impact", "change:validate", "query", "desired_state:read"},
    "executor": {"change:deploy", "change:rollback", "change:promote", "task:run",
                 "task:run_readonly", "desired_state:read", "report:read"},
    "debugger": {"query", "report:read", "task:run_readonly", "desired_state:read"},
    "approver": _APPROVER,
    "security": _APPROVER | {"policy:override", "audit:read"},
    "operator": {"node:manage", "token:manage", "query", "report:read", "audit:read",
                 "desired_state:read"},
    "admin": set(PERMISSIONS),
}


@dataclass
class Db:
    engine: Engine
    data: Path


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Db]:
    """One database per backend for the read-mostly tests (each uses its own identities)."""
    tmp = tmp_path_factory.mktemp(f"rbac-{request.param}")
    with database_url(str(request.param), tmp, "rbac") as url:
        engine = create_engine(url)
        create_all(engine)
        try:
            yield Db(engine, tmp)
        finally:
            engine.dispose()


@pytest.fixture
def rbac(shared: Db, tmp_path: Path) -> Rbac:
    return Rbac(shared.engine, tmp_path, environments=ENVIRONMENTS)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- the role x permission x environment matrix -----------------------------------------------


def test_every_permission_is_listed() -> None:
    assert set(PERMISSIONS) == set().union(*EXPECTED.values())
    assert list(PERMISSIONS) == sorted(PERMISSIONS)


@pytest.mark.parametrize("role", sorted(EXPECTED))
@pytest.mark.parametrize(
    ("scope", "allowed_in"),
    [
        ("*", {None, "development", "staging", "production"}),
        ("production", {"production"}),
        ("staging", {"staging"}),
    ],
)
def test_role_permission_environment_matrix(rbac: Rbac, role: str, scope: str,
                                            allowed_in: set[str | None]) -> None:
    name = unique(role)
    rbac.grant(name, role, scope)
    agent = unique(role)
    rbac.grant(f"agent:{agent}", role, scope)
    wrong: list[str] = []
    for who in (Principal(name, "human"), Principal(agent, "agent")):
        for environment in (None, *ENVIRONMENTS):
            held = rbac.permissions_of(who, environment)
            for permission in PERMISSIONS:
                expected = permission in EXPECTED[role] and environment in allowed_in
                if (permission in held) != expected:
                    wrong.append(f"{who.label} {permission} in {environment}: "
                                 f"expected {expected}")
                if who.kind == "agent":
                    continue  # check() is the same code path; once per cell is enough
                if not expected:
                    with pytest.raises(Forbidden):
                        rbac.check(who, permission, environment)
                else:
                    rbac.check(who, permission, environment)
    assert wrong == []


def test_permission_denied_names_identity_permission_environment(rbac: Rbac) -> None:
    rbac.grant("agent:planner-bot", "planner", "production")
    with pytest.raises(Forbidden) as caught:
        rbac.check(Principal("planner-bot", "agent"), "change:approve", "production")
    assert str(caught.value) == (
        "agent:planner-bot lacks permission change:approve in environment production")
    assert (caught.value.principal, caught.value.permission, caught.value.environment) == (
        "agent:planner-bot", "change:approve", "production")
    # A production-only binding does not reach global actions.
    with pytest.raises(Forbidden, match=r"lacks permission query \(it needs a role "
                                               r"bound in every environment"):
        rbac.check(Principal("planner-bot", "agent"), "query", None)


def test_bindings_of_humans_and_agents_are_separate(rbac: Rbac) -> None:
    name = unique("twin")
    rbac.grant(name, "approver", "production")
    assert rbac.has(Principal(name, "human"), "change:approve", "production")
    assert not rbac.has(Principal(name, "agent"), "change:approve", "production")
    assert rbac.roles_of(f"agent:{name}") == []
    assert rbac.roles_of(name) == [("approver", "production")]
    assert rbac.roles_of(f"user:{name}") == [("approver", "production")]


# -- token kinds ------------------------------------------------------------------------------


def test_token_kinds_map_to_actors_and_implied_roles(rbac: Rbac) -> None:
    assert actor_for(Principal.authenticated("user", "t1", "alice")) == Principal("alice", "human")
    assert actor_for(Principal.authenticated("agent", "t2", "bot")) == Principal("bot", "agent")
    assert actor_for(Principal.authenticated("admin", "t3", "root")) == Principal(
        "root", "human", ("admin",))
    assert actor_for(Principal.authenticated("operator", "t4", "ops")) == Principal(
        "ops", "human", ("operator",))
    with pytest.raises(Forbidden, match="node credentials cannot act"):
        actor_for(Principal.authenticated("node", "t5", "web1", certname="web1"))

    admin = Principal.authenticated("admin", "t3", unique("root"))
    assert rbac.permissions_of(admin, "production") == frozenset(PERMISSIONS)
    assert rbac.permissions_of(admin, None) == frozenset(PERMISSIONS)
    operator = Principal.authenticated("operator", "t4", unique("ops"))
    for environment in (None, *ENVIRONMENTS):
        assert rbac.permissions_of(operator, environment) == EXPECTED["operator"]
    assert rbac.roles_of(operator) == [("operator", "*")]
    # An operator token approves nothing until granted a role that does.
    with pytest.raises(Forbidden, match=r"^operator:ops-\w+ lacks permission "
                                               r"change:approve in environment production$"):
        rbac.check(operator, "change:approve", "production")
    rbac.grant(operator, "approver", "production")
    rbac.check(operator, "change:approve", "production")

    # User and agent tokens carry nothing of their own.
    user = Principal.authenticated("user", "t6", unique("nobody"))
    assert rbac.permissions_of(user, "production") == frozenset()
    for kind in ("node", "join", "enrollment"):
        with pytest.raises(Forbidden, match=f"{kind} credentials cannot act"):
            rbac.check(Principal.authenticated(kind, "t7", "x"), "query", None)


def test_system_actor_is_never_refused_and_holds_no_bindings(rbac: Rbac) -> None:
    system = Principal("steward", "system")
    rbac.check(system, "change:rollback", "production")
    with pytest.raises(RbacError, match="cannot be granted to Steward itself"):
        rbac.grant(system, "approver")


@pytest.mark.parametrize(("kind", "prefix"), [("user", "stwu_"), ("agent", "stwg_")])
def test_user_and_agent_tokens(shared: Db, kind: str, prefix: str) -> None:
    """Hashed at rest, shown once, expiring and revocable like every other token."""
    server_db.metadata.create_all(shared.engine)
    tokens = Tokens(shared.engine)
    assert PREFIXES[kind] == prefix
    name = unique(kind)
    created = tokens.create(kind, name, expires_in=timedelta(hours=1))
    token = created["token"]
    assert token.startswith(prefix)
    identity = tokens.authenticate(token)
    assert (identity.credential, identity.name) == (kind, name)
    assert "token" not in tokens.get(created["id"])
    with shared.engine.connect() as conn:
        stored = conn.execute(access_tables.tokens.select().where(
            access_tables.tokens.c.id == created["id"])).one()
    assert token not in {str(v) for v in stored}
    tokens.revoke(created["id"])
    with pytest.raises(AuthenticationError, match="revoked"):
        tokens.authenticate(token)
    expired = tokens.create(kind, name, expires_in=timedelta(microseconds=1))
    with pytest.raises(AuthenticationError, match="expired"):
        tokens.authenticate(expired["token"])


# -- bindings ---------------------------------------------------------------------------------


def test_grant_is_idempotent_and_revoke_takes_effect_at_once(rbac: Rbac) -> None:
    name = unique("erin")
    first = rbac.grant(name, "executor", "staging", granted_by="admin:root")
    again = rbac.grant(name, "executor", "staging", granted_by="admin:other")
    assert again == first
    assert first.granted_by == "admin:root"
    assert first.to_json()["identity"] == {"kind": "human", "name": name}
    rbac.grant(name, "debugger")
    assert rbac.roles_of(name) == [("debugger", "*"), ("executor", "staging")]
    assert rbac.roles_in(name, "staging") == {"debugger", "executor"}
    assert rbac.roles_in(name, "production") == {"debugger"}
    rbac.check(Principal(name, "human"), "change:deploy", "staging")

    rbac.revoke_role(name, "executor", "staging")
    with pytest.raises(Forbidden):
        rbac.check(Principal(name, "human"), "change:deploy", "staging")
    with pytest.raises(BindingNotFound, match=rf"human:{name} does not hold role executor in "
                                              r"staging; it holds: debugger in \*"):
        rbac.revoke_role(name, "executor", "staging")


def test_grant_validates_role_environment_and_name(rbac: Rbac) -> None:
    with pytest.raises(RbacError, match=r"unknown role 'aprover' \(did you mean 'approver'\?\); "
                                        r"known: admin, approver"):
        rbac.grant("alice", "aprover")
    with pytest.raises(RbacError, match=r"unknown environment 'prod'; known: development, "
                                        r"production, staging, \*"):
        rbac.grant("alice", "approver", "prod")
    with pytest.raises(RbacError, match="identity name 'two words' is invalid"):
        rbac.grant("two words", "approver")
    with pytest.raises(RbacError, match="is a human, not a agent"):
        rbac.grant("human:alice", "approver", kind="agent")
    with pytest.raises(RbacError, match="unknown permission 'change:aprove'"):
        rbac.has(Principal("alice", "human"), "change:aprove", None)


def test_no_escalation(rbac: Rbac) -> None:
    lead = unique("lead")
    rbac.grant(lead, "approver", "production")
    rbac.check_no_escalation(Principal(lead, "human"), "approver", "production")
    with pytest.raises(Forbidden, match=rf"human:{lead} cannot grant role approver in "
                                               r"staging: it lacks change:approve"):
        rbac.check_no_escalation(Principal(lead, "human"), "approver", "staging")
    with pytest.raises(Forbidden, match="cannot grant role admin"):
        rbac.check_no_escalation(Principal.authenticated("operator", "t", "ops"), "admin")
    rbac.check_no_escalation(Principal.authenticated("admin", "t", "root"), "admin")


# -- rbac.yaml --------------------------------------------------------------------------------


def test_custom_roles_from_rbac_yaml(shared: Db, tmp_path: Path) -> None:
    (tmp_path / "rbac.yaml").write_text(
        "roles:\n"
        "  release-manager:\n"
        "    description: approves and ships\n"
        "    include: [approver]\n"
        "    permissions: [change:deploy]\n"
        "  ci:\n"
        "    permissions: ['task:*', change:validate]\n", encoding="utf-8")
    rbac = Rbac(shared.engine, tmp_path)
    manager = rbac.role("release-manager")
    assert manager.permissions == _APPROVER | {"change:deploy"}
    assert manager.includes == {"approver"}
    assert manager.source == f"{tmp_path / 'rbac.yaml'}:2"
    assert rbac.role("ci").permissions == {"task:run", "task:run_readonly", "change:validate"}
    name = unique("rm")
    rbac.grant(name, "release-manager", "production")
    rbac.check(Principal(name, "human"), "change:deploy", "production")
    assert rbac.counts_as_in(name, "production") == {"release-manager", "approver"}
    assert rbac.counts_as_in(name, "staging") == frozenset()

    # A role later removed from rbac.yaml grants nothing (fail closed).
    (tmp_path / "rbac.yaml").write_text("roles: {}\n", encoding="utf-8")
    reloaded = Rbac(shared.engine, tmp_path)
    assert rbac.roles_of(name) == [("release-manager", "production")]
    assert reloaded.permissions_of(Principal(name, "human"), "production") == frozenset()


def test_example_rbac_yaml_loads() -> None:
    roles = load_roles(ROOT / "examples" / "config")
    assert {"release-manager", "incident-bot", "ci"} <= set(roles)
    assert roles["incident-bot"].permissions == EXPECTED["debugger"] | {"audit:read"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("roles:\n  x:\n    permissions: [change:aprove]\n",
         r"rbac.yaml:3: roles.x.permissions\[0\]: unknown permission 'change:aprove' \(did you "
         r"mean 'change:approve'\?\); valid permissions: admin, audit:read, change:approve, "),
        ("roles:\n  x:\n    permissions: ['nothing:*']\n",
         r"rbac.yaml:3: roles.x.permissions\[0\]: unknown permission 'nothing:\*'"),
        ("roles:\n  approver:\n    permissions: [query]\n",
         r"rbac.yaml:2: roles.approver: 'approver' is a built-in role and cannot be redefined"),
        ("roles:\n  x:\n    permisions: [query]\n",
         r"rbac.yaml:3: roles.x: unknown field 'permisions'; known: description, include, "
         r"permissions"),
        ("roles:\n  a:\n    include: [b]\n  b:\n    include: [a]\n",
         r"rbac.yaml:\d: roles.\w.include\[0\]: roles include each other \((a -> b -> a|b -> a -> "
         r"b)\)"),
        ("roles:\n  a:\n    include: [ghost]\n",
         r"rbac.yaml:3: roles.a.include\[0\]: unknown role 'ghost'; known: a, admin, approver"),
        ("roles:\n  a:\n    description: nothing\n",
         r"rbac.yaml:2: roles.a: a role needs at least one permission"),
        ("roles:\n  Bad Name:\n    permissions: [query]\n",
         r"rbac.yaml:2: roles: role name 'Bad Name' is invalid"),
        ("roles:\n  a:\n    permissions: query\n",
         r"rbac.yaml:3: roles.a.permissions: expected a list of permissions, not the string"),
        ("roles:\n  a:\n    permissions: [1]\n",
         r"rbac.yaml:3: roles.a.permissions\[0\]: expected a permission string, not the integer"),
        ("rolez: {}\n", r"rbac.yaml:1: unknown top-level field 'rolez'; known: roles"),
        ("- roles\n", r"rbac.yaml:1: expected a mapping with a 'roles' key, not a list"),
        ("roles:\n  a: {permissions: [query]}\n  a: {permissions: [query]}\n",
         r"rbac.yaml:3: duplicate key 'a'"),
        ("roles: [\n", r"rbac.yaml:2: invalid YAML"),
    ],
)
def test_rbac_yaml_errors(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "rbac.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(RbacConfigError) as caught:
        load_roles(tmp_path)
    assert re.search(message, str(caught.value)), str(caught.value)


# -- properties -------------------------------------------------------------------------------

_binding = st.tuples(st.sampled_from(sorted(EXPECTED)),
                     st.sampled_from(["*", *ENVIRONMENTS]))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bindings=st.lists(_binding, max_size=5),
       environment=st.sampled_from([None, *ENVIRONMENTS]))
def test_permissions_are_the_union_of_applicable_bindings(
        rbac: Rbac, bindings: list[tuple[str, str]], environment: str | None) -> None:
    name = unique("prop")
    for role, scope in bindings:
        rbac.grant(f"agent:{name}", role, scope)
    expected: set[str] = set()
    for role, scope in bindings:
        if scope == "*" or scope == environment:
            expected |= EXPECTED[role]
    actor = Principal(name, "agent")
    assert rbac.permissions_of(actor, environment) == expected
    # What holds everywhere (environment None) holds in each environment.
    everywhere = rbac.permissions_of(actor, None)
    assert all(everywhere <= rbac.permissions_of(actor, env) for env in ENVIRONMENTS)
