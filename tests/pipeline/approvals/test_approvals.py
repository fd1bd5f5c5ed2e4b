"""Approval rules and recorded verdicts, on SQLite and PostgreSQL.

Changes here are small records satisfying ``approvals.ChangeLike`` (the change store is
tested in its own module); roles, bindings and approvals are the real ones in a database.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine

from steward.access.authorize import Forbidden
from steward.access.principal import Principal
from steward.access.rbac import Rbac
from steward.access.roles import load_roles
from steward.pipeline.approvals.records import (
    Approvals,
    HumanApprovalRequired,
    SelfApprovalError,
    StaleApprovalError,
)
from steward.pipeline.approvals.rules import (
    ApprovalError,
    ApprovalRules,
    ApprovalRulesError,
    load_approval_rules,
    parse_approval_rules,
)
from steward.pipeline.schema import create_all
from tests.e2e.harness import database_url

ROOT = Path(__file__).resolve().parents[3]
HEAD1, HEAD2 = "1" * 40, "2" * 40
DIGEST1, DIGEST2 = "sha256:" + "a" * 64, "sha256:" + "b" * 64


@dataclass(frozen=True)
class Who:
    name: str
    kind: str


@dataclass(frozen=True)
class Change:
    id: str
    proposer: Who
    environment: str
    head: str = HEAD1
    impact_digest: str | None = DIGEST1
    kind: str = "normal"


def change(proposer: str, environment: str, **fields: Any) -> Change:
    kind, _, name = proposer.partition(":")
    return Change(f"chg-{uuid.uuid4().hex[:8]}", Who(name, kind), environment, **fields)


def summary(percent: float) -> dict[str, Any]:
    return {"blast_radius": {"nodes": 1, "resources": 1, "percent": percent}}


SMALL = summary(5.0)

ALICE = Principal("alice", "human")      # approver everywhere
BOB = Principal("bob", "human")          # approver in production only
CAROL = Principal("carol", "human")      # security in production
DAVE = Principal("dave", "human")        # executor everywhere
ERIN = Principal("erin", "human")        # planner everywhere
APPROVER_BOT = Principal("approver-bot", "agent")   # approver everywhere
PLANNER_BOT = Principal("planner-bot", "agent")     # planner everywhere


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def approvals(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Approvals]:
    tmp = tmp_path_factory.mktemp(f"approvals-{request.param}")
    with database_url(str(request.param), tmp, "approvals") as url:
        engine = create_engine(url)
        create_all(engine)
        rbac = Rbac(engine, None, environments=("development", "staging", "production"))
        rbac.grant(ALICE, "approver")
        rbac.grant(BOB, "approver", "production")
        rbac.grant(CAROL, "security", "production")
        rbac.grant(DAVE, "executor")
        rbac.grant(ERIN, "planner")
        rbac.grant(APPROVER_BOT, "approver")
        rbac.grant(PLANNER_BOT, "planner")
        try:
            yield Approvals(engine, ApprovalRules.defaults(), rbac)
        finally:
            engine.dispose()


def approve(approvals: Approvals, chg: Change, actor: Principal,
            **kwargs: Any) -> None:
    approvals.record(chg, actor, "approve", chg.head, str(chg.impact_digest), **kwargs)


# -- the rules, as a table --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environment", "proposer", "kind", "percent", "approvals", "humans"),
    [
        ("development", "human:erin", "normal", 5.0, 0, 0),
        ("development", "agent:planner-bot", "normal", 90.0, 0, 0),
        ("staging", "human:erin", "normal", 5.0, 1, 0),
        ("staging", "agent:planner-bot", "normal", 5.0, 1, 1),
        ("staging", "human:erin", "normal", 25.0, 1, 0),      # not *over* 25%
        ("staging", "human:erin", "normal", 25.01, 2, 0),
        ("staging", "human:erin", "normal", None, 2, 0),      # unknown: fail closed
        ("production", "human:erin", "normal", 5.0, 1, 1),
        ("production", "agent:planner-bot", "normal", 30.0, 2, 1),
        ("production", "human:erin", "promotion", 30.0, 2, 1),
        ("production", "human:dave", "rollback", 90.0, 1, 1),  # fast path: no blast rule
        ("staging", "human:dave", "rollback", 5.0, 1, 0),
        ("staging", "agent:planner-bot", "rollback", 5.0, 1, 1),
        ("development", "human:dave", "rollback", 5.0, 0, 0),  # never stricter than normal
        ("qa", "human:erin", "normal", 5.0, 1, 0),             # unlisted: the defaults
    ],
)
def test_default_rules(environment: str, proposer: str, kind: str, percent: float | None,
                       approvals: int, humans: int) -> None:
    chg = change(proposer, environment, kind=kind)
    need = ApprovalRules.defaults().requirement(
        chg, None if percent is None else summary(percent))
    assert (need.approvals, need.humans) == (approvals, humans), need.reasons
    assert need.roles == (("approver", "executor") if kind == "rollback" else ("approver",))


def test_example_approvals_yaml_is_the_defaults() -> None:
    config = ROOT / "examples" / "config"
    rules = load_approval_rules(config, roles=list(load_roles(config)))
    assert rules.source == str(config / "approvals.yaml")
    assert replace(rules, source=None).to_json() == ApprovalRules.defaults().to_json()
    assert load_approval_rules(None) == ApprovalRules.defaults()


def test_custom_rules_overlay_defaults(tmp_path: Path) -> None:
    (tmp_path / "approvals.yaml").write_text(
        "defaults: {approvals: 2, humans: 1}\n"
        "environments:\n"
        "  production:\n"
        "    approvals: 3\n"
        "    roles: [security]\n"
        "    blast_radius: {percent: 10}\n"
        "    rollback: {approvals: 2}\n"
        "  development: {approvals: 0}\n"
        "blast_radius: {percent: 50, approvals: 4}\n"
        "agent_authored: {humans: 2}\n", encoding="utf-8")
    rules = load_approval_rules(tmp_path)
    prod = rules.for_environment("production")
    assert (prod.approvals, prod.humans, prod.roles) == (3, 1, ("security",))
    assert prod.blast_radius is not None
    assert (prod.blast_radius.percent, prod.blast_radius.approvals) == (10.0, 4)
    assert (prod.rollback.approvals, prod.rollback.roles) == (2, ("approver", "executor"))
    staging = rules.for_environment("staging")  # not listed: the file's defaults
    assert (staging.approvals, staging.humans) == (2, 1)
    need = rules.requirement(change("agent:planner-bot", "production"), summary(11))
    assert (need.approvals, need.humans) == (4, 2)
    assert rules.requirement(change("agent:planner-bot", "development"), None).approvals == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("environments:\n  production: {approvals: one}\n",
         r"approvals.yaml:2: environments.production.approvals: expected an integer of at "
         r"least 0, not the string 'one'"),
        ("environments:\n  production: {approvals: true}\n",
         r"approvals.yaml:2: environments.production.approvals: expected an integer"),
        ("environments:\n  production:\n    roles: [aprover]\n",
         r"approvals.yaml:3: environments.production.roles.0: unknown role 'aprover' \(did you "
         r"mean 'approver'\?\); known: admin, approver, debugger"),
        ("environments:\n  production: {approvals: 1, humans: 2}\n",
         r"approvals.yaml:2: environments.production.humans: 2 human approvals cannot exceed "
         r"the 1 approvals required"),
        ("environments:\n  prod: {approvals: 1}\n",
         r"approvals.yaml:2: environments.prod: unknown environment 'prod'; known: "
         r"development, production, staging"),
        ("environments:\n  production: {aprovals: 1}\n",
         r"approvals.yaml:2: environments.production.aprovals: unknown field 'aprovals' \(did "
         r"you mean 'approvals'\?\); known: approvals, blast_radius, humans, roles, rollback"),
        ("blast_radius: {percent: 150}\n",
         r"approvals.yaml:1: blast_radius.percent: expected a percentage between 0 and 100, "
         r"not the integer 150"),
        ("blast_radius:\n  approvals: 0\n",
         r"approvals.yaml:2: blast_radius.approvals: expected an integer of at least 1"),
        ("rollback: {roles: []}\n",
         r"approvals.yaml:1: rollback.roles: expected a non-empty list of role names"),
        ("defaults: {blast_radius: {percent: 5}}\n",
         r"approvals.yaml:1: defaults.blast_radius: unknown field 'blast_radius'"),
        ("agent_authored: {humans: -1}\n",
         r"approvals.yaml:1: agent_authored.humans: expected an integer of at least 0, not "
         r"the integer -1"),
        ("aproval: 1\n", r"approvals.yaml:1: aproval: unknown field 'aproval'"),
        ("- 1\n", r"approvals.yaml:1: expected a mapping, not a list"),
        ("environments: [production]\n",
         r"approvals.yaml:1: environments: expected a mapping of environment name to rule"),
        ("defaults: {approvals: 1}\ndefaults: {approvals: 2}\n",
         r"approvals.yaml:2: duplicate key 'defaults'"),
        ("defaults: {approvals: [\n", r"approvals.yaml:2: invalid YAML"),
    ],
)
def test_approvals_yaml_errors(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "approvals.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ApprovalRulesError) as caught:
        load_approval_rules(tmp_path, environments=("development", "staging", "production"))
    assert re.search(message, str(caught.value)), str(caught.value)


def test_custom_roles_are_known_to_rules() -> None:
    text = "environments:\n  production: {roles: [release-manager]}\n"
    with pytest.raises(ApprovalRulesError, match="unknown role 'release-manager'"):
        parse_approval_rules(text, "approvals.yaml")
    rules = parse_approval_rules(text, "approvals.yaml",
                                 roles=[*load_roles(None), "release-manager"])
    assert rules.for_environment("production").roles == ("release-manager",)


# -- separation of duties ---------------------------------------------------------------------


def test_self_approval_refused(approvals: Approvals) -> None:
    chg = change("agent:planner-bot", "production")
    with pytest.raises(SelfApprovalError) as caught:
        approve(approvals, chg, PLANNER_BOT)
    assert str(caught.value) == (f"{chg.id} was proposed by agent:planner-bot; it cannot "
                                 "approve its own change")
    # An approver is refused too, whatever the kind or case of the name it comes back under.
    mine = change("human:alice", "staging")
    with pytest.raises(SelfApprovalError, match="they cannot approve their own change"):
        approve(approvals, mine, ALICE)
    with pytest.raises(SelfApprovalError):
        approve(approvals, mine, Principal("Alice", "agent"))
    assert approvals.records(chg.id) == []
    assert approvals.records(mine.id) == []


def test_human_approval_in_production(approvals: Approvals) -> None:
    chg = change("agent:planner-bot", "production")
    status = approvals.status(chg, SMALL)
    assert not status.satisfied
    assert status.missing == ["1 more approval by a human with role approver in production"]
    # Planners, executors and operators do not approve.
    for outsider in (ERIN, DAVE, Principal.authenticated("operator", "t", "ops")):
        with pytest.raises(Forbidden, match="lacks permission change:approve in "
                                                   "environment production"):
            approve(approvals, chg, outsider)
    # An agent's approval never counts as the human one.
    with pytest.raises(HumanApprovalRequired, match=r"approver-bot is an agent and every "
                                                    r"approval .* must come from a human"):
        approve(approvals, chg, APPROVER_BOT, impact_summary=SMALL)
    approve(approvals, chg, ALICE, comment="  looks right  ")
    status = approvals.status(chg, SMALL)
    assert status.satisfied
    assert status.missing == []
    assert [r.approver for r in status.valid_approvals] == ["human:alice"]
    assert status.valid_approvals[0].comment == "looks right"
    assert status.valid_approvals[0].roles == ("approver",)


def test_security_counts_as_approver_and_admin_as_any(approvals: Approvals) -> None:
    chg = change("human:erin", "production")
    approve(approvals, chg, CAROL)
    assert approvals.status(chg, SMALL).satisfied
    other = change("human:erin", "production")
    approve(approvals, other, Principal.authenticated("admin", "t", "root"))
    status = approvals.status(other, SMALL)
    assert status.satisfied, status.missing
    assert status.valid_approvals[0].roles == ("admin",)


def test_environment_scope_of_approvers(approvals: Approvals) -> None:
    chg = change("human:erin", "staging")
    with pytest.raises(Forbidden, match="human:bob lacks permission change:approve in "
                                               "environment staging"):
        approve(approvals, chg, BOB)
    with pytest.raises(Forbidden, match="carol lacks permission change:approve in "
                                               "environment staging"):
        approve(approvals, chg, CAROL)


def test_agent_approvals(approvals: Approvals) -> None:
    # Staging, human-authored: an agent approver's approval counts.
    chg = change("human:erin", "staging")
    approve(approvals, chg, APPROVER_BOT, impact_summary=SMALL)
    assert approvals.status(chg, SMALL).satisfied
    # Staging, agent-authored: a human is needed, so the agent's approval is refused.
    by_agent = change("agent:planner-bot", "staging")
    with pytest.raises(HumanApprovalRequired, match="proposed by an agent"):
        approve(approvals, by_agent, APPROVER_BOT, impact_summary=SMALL)
    # Production over the blast radius: 2 approvals, 1 human; an agent may be the second.
    wide = change("human:erin", "production")
    approve(approvals, wide, APPROVER_BOT, impact_summary=summary(40))
    status = approvals.status(wide, summary(40))
    assert status.missing == ["1 more approval by a human with role approver in production"]
    approve(approvals, wide, BOB)
    assert approvals.status(wide, summary(40)).satisfied
    # ... but with a small blast radius the agent's approval is not needed and not counted
    # as a human: one human approval still suffices, and is present.
    assert approvals.status(wide, SMALL).satisfied


def test_blast_radius_needs_two(approvals: Approvals) -> None:
    chg = change("human:erin", "staging")
    approve(approvals, chg, ALICE)
    assert approvals.status(chg, summary(25)).satisfied
    status = approvals.status(chg, summary(33.34))
    assert not status.satisfied
    assert status.missing == ["1 more approval with role approver in staging"]
    assert any("blast radius 33.34% of staging is over 25%" in r
               for r in status.requirement.reasons)
    assert not approvals.status(chg, None).satisfied  # unknown radius: fail closed
    approve(approvals, chg, APPROVER_BOT)
    assert approvals.status(chg, summary(33.34)).satisfied
    # The same approver twice is one approval.
    again = change("human:erin", "staging")
    approve(approvals, again, ALICE)
    approve(approvals, again, ALICE)
    status = approvals.status(again, summary(50))
    assert len(status.valid_approvals) == 1
    assert not status.satisfied
    assert [v.reason for v in status.void_approvals] == [
        "superseded by a later verdict of the same approver"]


# -- binding to head and impact digest --------------------------------------------------------


def test_approval_void_after_new_head(approvals: Approvals) -> None:
    chg = change("human:erin", "production")
    approve(approvals, chg, ALICE)
    assert approvals.status(chg, SMALL).satisfied
    moved = replace(chg, head=HEAD2, impact_digest=DIGEST2)
    status = approvals.status(moved, SMALL)
    assert not status.satisfied
    assert status.valid_approvals == []
    assert [v.reason for v in status.void_approvals] == [
        f"given for head {HEAD1[:12]}; the change is now at {HEAD2[:12]}"]
    assert status.missing == ["1 more approval by a human with role approver in production"]
    # Approving what one reviewed earlier is refused once the change has moved on.
    # The refusal names the change's current head and digest in full (message and fields).
    with pytest.raises(StaleApprovalError, match=f"now at head {HEAD2} \\(impact report "
                                                 f"{DIGEST2}\\), not {HEAD1} as reviewed") as err:
        approvals.record(moved, ALICE, "approve", HEAD1, DIGEST1)
    assert (err.value.head, err.value.digest) == (HEAD2, DIGEST2)
    assert approvals.records(moved.id)[-1].head == HEAD1  # nothing more was recorded
    assert len(approvals.records(moved.id)) == 1
    approve(approvals, moved, ALICE)
    status = approvals.status(moved, SMALL)
    assert status.satisfied
    assert len(status.void_approvals) == 1


def test_approval_void_after_new_digest(approvals: Approvals) -> None:
    chg = change("human:erin", "staging")
    approve(approvals, chg, ALICE)
    reanalysed = replace(chg, impact_digest=DIGEST2)
    status = approvals.status(reanalysed, SMALL)
    assert not status.satisfied
    assert status.void_approvals[0].reason == (
        f"given for impact report {DIGEST1}; it is now {DIGEST2}")
    with pytest.raises(StaleApprovalError, match=f"impact report is now {DIGEST2}") as err:
        approvals.record(reanalysed, ALICE, "approve", HEAD1, DIGEST1)
    assert (err.value.head, err.value.digest) == (HEAD1, DIGEST2)
    unanalysed = replace(chg, impact_digest=None)
    with pytest.raises(StaleApprovalError, match="has no impact analysis yet"):
        approvals.record(unanalysed, ALICE, "approve", HEAD1, DIGEST1)


def test_rejection_blocks_until_the_approver_changes_their_mind(approvals: Approvals) -> None:
    chg = change("human:erin", "staging")
    approve(approvals, chg, APPROVER_BOT)
    approvals.record(chg, ALICE, "reject", chg.head, DIGEST1, "breaks nginx")
    status = approvals.status(chg, SMALL)
    assert not status.satisfied
    assert status.missing == ["rejected by human:alice: breaks nginx (the rejection stands "
                              "until they approve this head)"]
    approve(approvals, chg, ALICE)
    assert approvals.status(chg, SMALL).satisfied
    with pytest.raises(ApprovalError, match="verdict 'maybe' is invalid"):
        approvals.record(chg, ALICE, "maybe", chg.head, DIGEST1)
    with pytest.raises(Forbidden, match="lacks permission change:reject"):
        approvals.record(chg, ERIN, "reject", chg.head, DIGEST1)


def test_revoking_the_role_voids_the_approval(approvals: Approvals) -> None:
    name = f"temp-{uuid.uuid4().hex[:6]}"
    approvals.rbac.grant(name, "approver", "staging")
    chg = change("human:erin", "staging")
    approve(approvals, chg, Principal(name, "human"))
    assert approvals.status(chg, SMALL).satisfied
    approvals.rbac.revoke_role(name, "approver", "staging")
    status = approvals.status(chg, SMALL)
    assert not status.satisfied
    assert status.void_approvals[0].reason == (
        f"human:{name} no longer holds a role that counts in staging (approver)")


def test_development_needs_no_approval(approvals: Approvals) -> None:
    status = approvals.status(change("agent:planner-bot", "development"), summary(100))
    assert status.satisfied
    assert status.requirement.approvals == 0


def test_rollback_fast_path(approvals: Approvals) -> None:
    rollback = change("human:erin", "staging", kind="rollback")
    # An executor may approve a rollback (and then deploy it) ...
    approve(approvals, rollback, DAVE)
    assert approvals.status(rollback, summary(90)).satisfied
    # ... but not a normal change,
    normal = change("human:erin", "staging")
    with pytest.raises(Forbidden, match="human:dave lacks permission change:approve"):
        approve(approvals, normal, DAVE)
    # and never a rollback it proposed itself.
    own = change("human:dave", "staging", kind="rollback")
    with pytest.raises(SelfApprovalError):
        approve(approvals, own, DAVE)
    # In production a human is still needed; an executor human qualifies.
    prod = change("human:erin", "production", kind="rollback")
    assert approvals.status(prod, None).missing == [
        "1 more approval by a human with role approver or executor in production"]
    approve(approvals, prod, DAVE)
    assert approvals.status(prod, None).satisfied


def test_status_json_is_sorted_and_complete(approvals: Approvals) -> None:
    chg = change("human:erin", "production")
    approve(approvals, chg, ALICE)
    document = approvals.status(replace(chg, head=HEAD2), SMALL).to_json()
    assert list(document) == sorted(document)
    assert document["satisfied"] is False
    assert document["void_approvals"][0]["approver"] == {"kind": "human", "name": "alice"}
    assert document["requirement"]["roles"] == ["approver"]


# -- properties -------------------------------------------------------------------------------

_APPROVERS = [ALICE, BOB, CAROL, APPROVER_BOT, Principal.authenticated("admin", "t", "root")]


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.sampled_from(range(len(_APPROVERS))),
                                st.sampled_from(["approve", "reject"]),
                                st.booleans()), max_size=6),
       proposer=st.sampled_from(["human:erin", "agent:planner-bot"]),
       percent=st.sampled_from([5.0, 30.0]))
def test_status_invariants(approvals: Approvals, steps: list[tuple[int, str, bool]],
                           proposer: str, percent: float) -> None:
    """Whatever happens, counted approvals are current, distinct, and meet the rule."""
    chg = change(proposer, "production")
    for index, verdict, amend in steps:
        if amend:  # the change gets a new head and is re-analysed
            chg = replace(chg, head=uuid.uuid4().hex, impact_digest=f"sha256:{uuid.uuid4()}")
        try:
            approvals.record(chg, _APPROVERS[index], verdict, chg.head, str(chg.impact_digest),
                             impact_summary=summary(percent))
        except HumanApprovalRequired:
            assert _APPROVERS[index] == APPROVER_BOT
    status = approvals.status(chg, summary(percent))
    valid = status.valid_approvals
    assert all(r.head == chg.head and r.impact_digest == chg.impact_digest for r in valid)
    assert len({r.approver for r in valid}) == len(valid)
    assert all(r.approver_name != chg.proposer.name for r in valid)
    humans = sum(r.approver_kind == "human" for r in valid)
    need = status.requirement
    assert status.satisfied == (not status.rejections and len(valid) >= need.approvals
                                and humans >= need.humans)
    assert len(status.valid_approvals) + len(status.void_approvals) + len(
        status.rejections) == len(approvals.records(chg.id))
