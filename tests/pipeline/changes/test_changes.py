"""Change records: proposals on a real git repository, the state machine, on both backends.

Every test uses a real bare repository (``DesiredStateRepo.create`` from a small desired
state) and a real database (SQLite file, and a fresh PostgreSQL database).
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, delete, func, select

from steward.access.principal import Principal
from steward.errors import NotFoundError
from steward.gitrepo import Author, DesiredStateRepo
from steward.pipeline.changes.model import change_counter, change_history
from steward.pipeline.changes.model import changes as changes_table
from steward.pipeline.changes.records import (
    Change,
    ChangeConflict,
    ChangeError,
    ChangeNotFound,
    Changes,
    IllegalTransition,
    InvalidProposal,
    StaleProposal,
)
from steward.pipeline.changes.states import (
    STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    ChangeState,
    action_for,
    next_states,
)
from steward.pipeline.schema import create_all
from tests.e2e.harness import database_url, write_repo

ENVIRONMENTS = ("development", "staging", "production")
AGENT = Principal("planner-bot", "agent", ("planner",))
ALICE = Principal("alice", "human", ("approver",))
BOB = Principal("bob", "human", ("executor",))
DIGEST = "sha256:" + "a" * 64
GREETING = "profiles/app.yaml"


def _greeting_profile(text: str) -> str:
    return (
        "parameters:\n"
        "  token: {type: string, default: {secret: app_token}}\n"
        "resources:\n"
        "  directory[/etc/app]:\n    mode: \"0755\"\n"
        f"  file[/etc/app/greeting]:\n    content: \"{text} {{{{ node }}}}\\n\"\n"
        "    mode: \"0644\"\n"
        "  file[/etc/app/token]:\n    content: \"{{ params.token }}\"\n    mode: \"0600\"\n"
    )


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def chg_repo(tmp_path: Path) -> DesiredStateRepo:
    source = write_repo(tmp_path / "source")
    (source / "data").mkdir()
    (source / "data" / "common.yaml").write_text("app::owner: ops\n", encoding="utf-8")
    return DesiredStateRepo.create(tmp_path / "desired.git", source, ENVIRONMENTS,
                                   Author("Steward", "steward@localhost"),
                                   default="production", cache_dir=tmp_path / "cache")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def chg_database(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One database per backend for this module (creating PostgreSQL ones takes seconds)."""
    tmp = tmp_path_factory.mktemp(f"changes-{request.param}")
    with database_url(str(request.param), tmp, "changes") as url:
        engine = create_engine(url)
        create_all(engine)
        try:
            yield engine
        finally:
            engine.dispose()


@pytest.fixture
def chg_engine(chg_database: Engine) -> Engine:
    """The module's database, emptied of change records (each test has a new repository)."""
    with chg_database.begin() as conn:
        for table in (change_history, changes_table, change_counter):
            conn.execute(delete(table))
    return chg_database


@pytest.fixture
def svc(chg_engine: Engine, chg_repo: DesiredStateRepo) -> Changes:
    return Changes(chg_engine, chg_repo, environments=ENVIRONMENTS)


def _propose(svc: Changes, text: str = "hi", env: str = "production",
             actor: Principal = AGENT, **kw: object) -> Change:
    return svc.propose_edits(actor, env, edits={GREETING: _greeting_profile(text)},
                             title=f"greet with {text}", message="why: testing", **kw)  # type: ignore[arg-type]


def _change_branches(repo: DesiredStateRepo) -> list[str]:
    return sorted(b for b in repo.branches() if b.startswith("changes/"))


def _deploy(svc: Changes, change: Change, actor: Principal = BOB) -> Change:
    """What deploy does to the records and the branch (the rollout is deploy.py's)."""
    svc.set_impact(change.id, DIGEST, expected_head=change.head)
    svc.transition(change.id, "analysed", actor)
    svc.transition(change.id, "approved", ALICE, expected_head=change.head,
                   expected_impact=DIGEST)
    svc.transition(change.id, "deploying", actor)
    svc.repo.merge(into=change.environment, commit=change.head,
                   author=Author(actor.name, actor.git_email), message=f"Deploy {change.id}")
    return svc.transition(change.id, "deployed", actor)


# -- proposing ----------------------------------------------------------------------------------


def test_propose_edits_records_commit_and_branch(svc: Changes) -> None:
    tip = svc.repo.tip("production")
    change = _propose(svc, "howdy")
    assert change.id == "chg-1"
    assert (change.state, change.kind, change.parent) == ("proposed", "normal", None)
    assert change.base == tip
    assert change.branch == "changes/chg-1"
    assert svc.repo.branches()["changes/chg-1"] == change.head
    assert svc.repo.tip("production") == tip  # nothing reaches the environment
    assert b"howdy {{ node }}" in (svc.repo.read_file(change.head, GREETING) or b"")
    assert svc.repo.changed_files(change.base, change.head) == [GREETING]
    commit = svc.repo.log(change.head, 1)[0]
    assert (commit["author_name"], commit["author_email"]) == (
        "planner-bot", "planner-bot@agent.steward.invalid")
    assert commit["subject"] == "greet with howdy"
    assert "Proposed-by: agent:planner-bot" in commit["message"]
    assert change.proposer.name == "planner-bot"
    assert change.proposer.kind == "agent"

    [entry] = svc.history(change.id)
    assert (entry.action, entry.from_state, entry.to_state, entry.actor) == (
        "propose", None, "proposed", "agent:planner-bot")
    assert entry.detail is not None
    assert entry.detail["files"] == [GREETING]
    assert svc.get(change.id) == change


def test_change_json_is_versioned_and_sorted(svc: Changes) -> None:
    change = _propose(svc)
    document = change.to_json()
    assert list(document) == sorted(document)
    assert document["format"] == 1
    assert document["proposer"] == {"kind": "agent", "name": "planner-bot"}
    assert document["next_states"] == ["analysed", "rejected"]
    assert document["created_at"].endswith("Z")
    json.dumps(document)  # serialisable as is
    history = svc.history(change.id)[0].to_json()
    assert list(history) == sorted(history)


def test_ids_are_sequential_and_listed_in_order(svc: Changes) -> None:
    first = _propose(svc, "one")
    second = _propose(svc, "two", env="staging")
    third = _propose(svc, "three", env="staging")
    assert [first.id, second.id, third.id] == ["chg-1", "chg-2", "chg-3"]
    assert [c.id for c in svc.list()] == ["chg-1", "chg-2", "chg-3"]
    assert [c.id for c in svc.list(environment="staging")] == ["chg-2", "chg-3"]
    svc.reject("chg-2", ALICE, "not needed")
    assert [c.id for c in svc.list(state="proposed")] == ["chg-1", "chg-3"]
    with pytest.raises(ChangeError, match="unknown change state 'open'"):
        svc.list(state="open")


def test_concurrent_proposals_get_distinct_ids(svc: Changes) -> None:
    results: list[Change] = []
    errors: list[BaseException] = []

    def propose(n: int) -> None:
        try:
            results.append(_propose(svc, f"parallel {n}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=propose, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    ids = sorted(c.number for c in results)
    assert ids == list(range(1, 9))
    assert _change_branches(svc.repo) == sorted(f"changes/chg-{n}" for n in range(1, 9))
    for change in results:
        assert svc.repo.branches()[change.branch] == change.head


def test_unknown_change(svc: Changes) -> None:
    with pytest.raises(ChangeNotFound, match="no change 'chg-9'") as caught:
        svc.get("chg-9")
    assert isinstance(caught.value, NotFoundError)
    assert caught.value.http_status == 404
    with pytest.raises(ChangeNotFound):
        svc.history("chg-9")
    with pytest.raises(ChangeNotFound):
        svc.transition("chg-9", "analysed", ALICE)


def _nothing_recorded(svc: Changes) -> None:
    assert svc.list() == []
    assert _change_branches(svc.repo) == []
    with svc.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(change_history)).scalar() == 0


def test_head_that_does_not_load_is_refused_with_file_and_line(svc: Changes) -> None:
    bad = "resources:\n  file[/etc/x]:\n    content: \"{{ nope( }}\"\n"
    with pytest.raises(InvalidProposal, match=r"does not load, so nothing was recorded") as err:
        svc.propose_edits(AGENT, "production", edits={"profiles/bad.yaml": bad},
                          title="broken template")
    assert "profiles/bad.yaml" in str(err.value)
    assert ":3" in str(err.value)  # the line of the expression
    with pytest.raises(InvalidProposal, match=r"roles/base\.yaml"):
        svc.propose_edits(AGENT, "production", edits={"roles/base.yaml": "profiles: [\n"},
                          title="broken yaml")
    _nothing_recorded(svc)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"edits": {}}, "edits: no files given"),
        ({}, "exactly one"),
        ({"edits": {"a": "x"}, "patch": "x"}, "exactly one"),
        ({"edits": {"../etc/passwd": "x"}}, "'..' components"),
        ({"edits": {".git/config": "x"}}, "'.git' is reserved"),
        ({"edits": {"/abs": "x"}}, "relative"),
        ({"edits": {GREETING: 3}}, "content must be text"),
        ({"patch": "   "}, "patch: empty"),
        ({"patch": "not a diff\n"}, "does not apply"),
        ({"edits": {GREETING: None, "nope.yaml": None}}, "cannot delete 'nope.yaml'"),
        ({"edits": {"data/common.yaml": "app::owner: ops\n"}}, "changes nothing"),
    ],
)
def test_malformed_proposals(svc: Changes, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidProposal, match=message):
        svc.propose_edits(AGENT, "production", title="t", **kwargs)  # type: ignore[arg-type]
    _nothing_recorded(svc)


@pytest.mark.parametrize(
    ("environment", "message"),
    [("qa", "'qa' is not an environment; known: development, staging, production"),
     ("changes/chg-1", "is not an environment")],
)
def test_unknown_environment(svc: Changes, environment: str, message: str) -> None:
    with pytest.raises(InvalidProposal, match=message):
        _propose(svc, env=environment)


def test_environment_must_have_a_branch(chg_engine: Engine, chg_repo: DesiredStateRepo) -> None:
    svc = Changes(chg_engine, chg_repo, environments=(*ENVIRONMENTS, "qa"))
    with pytest.raises(InvalidProposal, match="environment 'qa' has no branch"):
        _propose(svc, env="qa")
    # Without a configured list, any branch outside changes/ is an environment.
    open_svc = Changes(chg_engine, chg_repo)
    assert _propose(open_svc, env="staging").environment == "staging"


def test_title_rules(svc: Changes) -> None:
    with pytest.raises(InvalidProposal, match="title: give the change a one-line title"):
        svc.propose_edits(AGENT, "production", edits={"x.txt": "x"}, title="  ")
    with pytest.raises(InvalidProposal, match="at most 200 characters"):
        svc.propose_edits(AGENT, "production", edits={"x.txt": "x"}, title="x" * 201)
    change = svc.propose_edits(AGENT, "production", edits={"x.txt": "x"},
                               title="two\nlines")
    assert change.title == "two lines"


def _move_environment(repo: DesiredStateRepo, env: str, edits: dict[str, str | None]) -> str:
    tip = repo.tip(env)
    new = repo.commit(parent=tip, author=Author("carol", "carol@example.org"),
                      message="meanwhile", edits=edits)
    repo.set_branch(env, new, expected=tip)
    return new


def test_stale_base_touching_the_same_file_is_refused(svc: Changes) -> None:
    old = svc.repo.tip("production")
    moved = _move_environment(svc.repo, "production", {GREETING: _greeting_profile("moved")})
    with pytest.raises(StaleProposal) as err:
        _propose(svc, "mine", base=old)
    text = str(err.value)
    assert f"base {old[:12]} is stale" in text
    assert f"production moved to {moved[:12]}" in text
    assert GREETING in text
    assert err.value.http_status == 409
    _nothing_recorded(svc)


def test_stale_base_without_conflict_is_rebased(svc: Changes) -> None:
    old = svc.repo.tip("production")
    moved = _move_environment(svc.repo, "production", {"data/common.yaml": "app::owner: web\n"})
    change = _propose(svc, "rebased", base=old[:10])  # abbreviations resolve
    assert change.base == moved
    assert svc.repo.log(change.head, 1)[0]["parents"] == moved
    assert svc.repo.changed_files(change.base, change.head) == [GREETING]
    assert svc.repo.read_file(change.head, "data/common.yaml") == b"app::owner: web\n"
    entry = svc.history(change.id)[0]
    assert entry.detail is not None
    assert entry.detail["rebased_from"] == old


def test_base_outside_the_environment_is_refused(svc: Changes) -> None:
    other = _move_environment(svc.repo, "staging", {"x.txt": "x"})
    with pytest.raises(StaleProposal, match="is not in the history of 'production'"):
        _propose(svc, base=other)
    with pytest.raises(InvalidProposal, match="base 'nosuch' is not a commit"):
        _propose(svc, base="nosuch")


def test_propose_a_patch(svc: Changes) -> None:
    helper = _propose(svc, "patched", env="staging")
    patch = svc.repo.diff(helper.base, helper.head)
    change = svc.propose_edits(ALICE, "production", patch=patch, title="via patch")
    assert svc.repo.read_file(change.head, GREETING) == svc.repo.read_file(helper.head,
                                                                          GREETING)


def _git(*args: str, cwd: Path) -> str:
    env = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": str(cwd),
           "GIT_AUTHOR_NAME": "Dana", "GIT_AUTHOR_EMAIL": "dana@example.org",
           "GIT_COMMITTER_NAME": "Dana", "GIT_COMMITTER_EMAIL": "dana@example.org",
           "PATH": "/usr/bin:/bin:/usr/local/bin"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout


def _push_branch(repo: DesiredStateRepo, tmp: Path, branch: str, start: str,
                 files: dict[str, str]) -> str:
    """A person clones the desired state, commits on a branch and pushes it."""
    work = tmp / f"clone-{branch}"
    _git("clone", "--quiet", "--branch", start, str(repo.path), str(work), cwd=tmp)
    _git("checkout", "--quiet", "-b", branch, cwd=work)
    for path, content in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(content, encoding="utf-8")
    _git("add", "-A", cwd=work)
    _git("commit", "--quiet", "-m", f"work on {branch}", cwd=work)
    _git("push", "--quiet", "origin", branch, cwd=work)
    return _git("rev-parse", "HEAD", cwd=work).strip()


def test_propose_a_pushed_branch(svc: Changes, tmp_path: Path) -> None:
    base = svc.repo.tip("production")
    head = _push_branch(svc.repo, tmp_path, "dana/greeting", "production",
                        {GREETING: _greeting_profile("from dana")})
    change = svc.propose_branch(ALICE, "dana/greeting", "production",
                                "Greet like Dana\n\nShe asked nicely.")
    assert (change.base, change.head) == (base, head)
    assert change.title == "Greet like Dana"
    assert svc.repo.branches()[change.branch] == head
    entry = svc.history(change.id)[0]
    assert entry.detail is not None
    assert entry.detail["from_branch"] == "dana/greeting"


def test_pushed_branch_rules(svc: Changes, tmp_path: Path) -> None:
    with pytest.raises(InvalidProposal, match=r"no branch 'nosuch'.*push it first"):
        svc.propose_branch(ALICE, "nosuch", "production", "m")
    with pytest.raises(InvalidProposal, match="cannot be proposed"):
        svc.propose_branch(ALICE, "staging", "production", "m")
    bad = _push_branch(svc.repo, tmp_path, "broken", "production",
                       {"roles/base.yaml": "profiles:\n  nosuchprofile: {}\n"})
    with pytest.raises(InvalidProposal, match="does not load") as err:
        svc.propose_branch(ALICE, "broken", "production", "m")
    assert "roles/base.yaml" in str(err.value)
    assert bad  # the branch itself stays: it is the person's
    _push_branch(svc.repo, tmp_path, "conflicting", "production",
                 {GREETING: _greeting_profile("theirs")})
    _move_environment(svc.repo, "production", {GREETING: _greeting_profile("moved")})
    with pytest.raises(StaleProposal, match="merge or rebase conflicting onto production"):
        svc.propose_branch(ALICE, "conflicting", "production", "m")
    _nothing_recorded(svc)


# -- the state machine ------------------------------------------------------------------------


def test_the_whole_path(svc: Changes) -> None:
    change = _propose(svc)
    with pytest.raises(IllegalTransition, match="has no impact report yet"):
        svc.transition(change.id, "analysed", AGENT)
    svc.set_impact(change.id, DIGEST, expected_head=change.head)
    deployed = _deploy(svc, change)
    assert deployed.state == "deployed"
    assert [(e.action, e.from_state, e.to_state) for e in svc.history(change.id)] == [
        ("propose", None, "proposed"),
        ("impact", "proposed", "proposed"),
        ("impact", "proposed", "proposed"),
        ("analyse", "proposed", "analysed"),
        ("approve", "analysed", "approved"),
        ("deploy", "approved", "deploying"),
        ("succeed", "deploying", "deployed"),
    ]
    assert [e.actor for e in svc.history(change.id)][4] == "human:alice"


def test_illegal_transition_names_state_and_allowed_moves(svc: Changes) -> None:
    change = _propose(svc)
    with pytest.raises(IllegalTransition,
                       match=r"chg-1 is proposed: it cannot become approved "
                             r"\(allowed next: analysed, rejected\)"):
        svc.transition(change.id, "approved", ALICE)
    with pytest.raises(IllegalTransition, match="only when its head changes"):
        svc.transition(change.id, "proposed", ALICE)
    with pytest.raises(ChangeError, match="unknown change state 'done'"):
        svc.transition(change.id, "done", ALICE)
    svc.reject(change.id, ALICE, "superseded")
    with pytest.raises(IllegalTransition, match="'rejected' is final: nothing follows it"):
        svc.transition(change.id, "analysed", ALICE)
    assert svc.get(change.id).state == "rejected"
    assert svc.history(change.id)[-1].detail == {"reason": "superseded"}
    with pytest.raises(ChangeError, match="say why"):
        svc.reject(_propose(svc, "x").id, ALICE, " ")


def test_approval_bound_to_head_and_digest(svc: Changes) -> None:
    change = _propose(svc)
    svc.set_impact(change.id, DIGEST)
    svc.transition(change.id, "analysed", AGENT)
    with pytest.raises(ChangeConflict, match="was amended"):
        svc.transition(change.id, "approved", ALICE, expected_head="0" * 40)
    with pytest.raises(ChangeConflict, match="was re-analysed"):
        svc.transition(change.id, "approved", ALICE, expected_impact="sha256:" + "b" * 64)
    assert svc.get(change.id).state == "analysed"
    approved = svc.transition(change.id, "approved", ALICE, expected_head=change.head,
                              expected_impact=DIGEST)
    assert approved.state == "approved"
    # A different report voids the approval: back to analysed.
    reanalysed = svc.set_impact(change.id, "sha256:" + "c" * 64)
    assert reanalysed.state == "analysed"
    assert svc.history(change.id)[-1].detail == {
        "digest": "sha256:" + "c" * 64, "previous": DIGEST, "head": change.head,
        "approvals": "void"}
    with pytest.raises(ChangeError, match="not of the form sha256"):
        svc.set_impact(change.id, "md5:x")


def test_concurrent_deploys_only_one_wins(svc: Changes) -> None:
    change = _propose(svc)
    svc.set_impact(change.id, DIGEST)
    svc.transition(change.id, "analysed", AGENT)
    svc.transition(change.id, "approved", ALICE)
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def deploy() -> None:
        barrier.wait()
        try:
            svc.transition(change.id, "deploying", BOB)
            outcomes.append("won")
        except IllegalTransition as exc:
            outcomes.append("lost" if "is deploying" in str(exc) else str(exc))

    threads = [threading.Thread(target=deploy) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["lost", "lost", "lost", "won"]
    assert [e.action for e in svc.history(change.id)].count("deploy") == 1


# -- amendments ---------------------------------------------------------------------------------


def test_amend_voids_impact_and_approvals(svc: Changes) -> None:
    change = _propose(svc, "first")
    svc.set_impact(change.id, DIGEST)
    svc.transition(change.id, "analysed", AGENT)
    svc.transition(change.id, "approved", ALICE)
    amended = svc.update_head(change.id, AGENT, edits={"data/common.yaml": "app::owner: x\n"},
                              message="also the owner", expected_head=change.head)
    assert amended.state == "proposed"
    assert amended.impact_digest is None
    assert amended.base == change.base
    assert svc.repo.log(amended.head, 1)[0]["parents"] == change.head
    assert svc.repo.branches()[change.branch] == amended.head
    entry = svc.history(change.id)[-1]
    assert (entry.action, entry.from_state, entry.to_state) == ("amend", "approved", "proposed")
    assert entry.detail is not None
    assert entry.detail["approvals"] == "void"
    assert entry.detail["files"] == ["data/common.yaml", GREETING]
    assert (entry.detail["from_head"], entry.detail["to_head"]) == (change.head, amended.head)
    with pytest.raises(ChangeConflict, match="amended meanwhile"):
        svc.update_head(change.id, AGENT, edits={"x.txt": "x"}, expected_head=change.head)


def test_amend_rules(svc: Changes, tmp_path: Path) -> None:
    _move_environment(svc.repo, "production", {"z.txt": "z"})
    change = _propose(svc, "first")
    with pytest.raises(InvalidProposal, match="does not load"):
        svc.update_head(change.id, AGENT, edits={"roles/base.yaml": "profiles: [\n"})
    assert svc.get(change.id) == change  # nothing moved
    assert svc.repo.branches()[change.branch] == change.head
    with pytest.raises(InvalidProposal, match="exactly one"):
        svc.update_head(change.id, AGENT)
    with pytest.raises(InvalidProposal, match="changes nothing relative to its base"):
        svc.update_head(change.id, AGENT, edits={GREETING: svc.repo.read_file(change.base,
                                                                                GREETING)})
    # A new head (a person pushed again) must descend from the base.
    pushed = _push_branch(svc.repo, tmp_path, "again", "production", {"x.txt": "x"})
    new = svc.update_head(change.id, ALICE, head=pushed)
    assert new.head == pushed
    assert svc.history(change.id)[-1].actor == "human:alice"
    unrelated = svc.repo.commit(parent=svc.repo.tip("staging"),
                                author=Author("e", "e@example.org"), message="m",
                                edits={"w.txt": "w"})
    with pytest.raises(InvalidProposal, match="does not descend from chg-1's base"):
        svc.update_head(change.id, ALICE, head=unrelated)
    # The environment moved on the same file since the base: the amendment is stale.
    _move_environment(svc.repo, "production", {"x.txt": "theirs"})
    with pytest.raises(StaleProposal, match=r"changed x\.txt too"):
        svc.update_head(change.id, AGENT, edits={"y.txt": "y"})
    svc.reject(change.id, ALICE, "no")
    with pytest.raises(IllegalTransition, match="only a proposed, analysed or approved"):
        svc.update_head(change.id, AGENT, edits={"x.txt": "y"})


# -- rollback and promotion ---------------------------------------------------------------------


def test_rollback_restores_the_base_tree(svc: Changes) -> None:
    change = _propose(svc, "bad idea")
    with pytest.raises(ChangeError, match="reject it instead"):
        svc.create_revert(change.id, BOB)
    _deploy(svc, change)
    tip = svc.repo.tip("production")
    rollback = svc.create_revert(change.id, BOB)
    assert (rollback.kind, rollback.parent, rollback.state) == ("rollback", change.id,
                                                                "proposed")
    assert rollback.base == tip
    assert svc.repo.tip("production") == tip  # not deployed until approved
    assert svc.repo.changed_files(change.base, rollback.head) == []
    assert svc.repo.changed_files(rollback.base, rollback.head) == [GREETING]
    assert rollback.title == f"Roll back {change.id}: greet with bad idea"
    assert not any(b.startswith("changes/rollback-") for b in svc.repo.branches())
    assert svc.history(change.id)[-1].action == "rollback_proposed"
    with pytest.raises(ChangeConflict, match=f"already has rollback {rollback.id}"):
        svc.create_revert(change.id, BOB)
    # Deploying the rollback, then marking the original rolled back.
    _deploy(svc, rollback)
    done = svc.transition(change.id, "rolled_back", BOB, detail={"by": rollback.id})
    assert done.state == "rolled_back"
    assert svc.repo.changed_files(change.base, svc.repo.tip("production")) == []


def test_rollback_after_other_work_landed(svc: Changes) -> None:
    change = _deploy(svc, _propose(svc, "bad idea"))
    other = _deploy(svc, svc.propose_edits(ALICE, "production", edits={"x.txt": "later\n"},
                                           title="later work"))
    rollback = svc.create_revert(change.id, BOB)
    head = rollback.head
    assert svc.repo.read_file(head, "x.txt") == b"later\n"  # the later work stays
    assert svc.repo.read_file(head, GREETING) == svc.repo.read_file(change.base, GREETING)
    assert other.state == "deployed"
    # When later work touched the same file, an automatic rollback is refused.
    svc.transition(rollback.id, "rejected", BOB, detail={"reason": "retry"})
    _deploy(svc, svc.propose_edits(ALICE, "production",
                                   edits={GREETING: _greeting_profile("even later")},
                                   title="same file"))
    with pytest.raises(ChangeError, match=f"{GREETING} changed in production after it"):
        svc.create_revert(change.id, BOB)


def test_revert_of_unmerged_change(svc: Changes) -> None:
    change = _propose(svc)
    svc.set_impact(change.id, DIGEST)
    svc.transition(change.id, "analysed", AGENT)
    svc.transition(change.id, "approved", ALICE)
    svc.transition(change.id, "deploying", BOB)
    with pytest.raises(ChangeError, match="never merged"):
        svc.create_revert(change.id, BOB)


def test_promotion(svc: Changes) -> None:
    change = _propose(svc, "promote me", env="staging")
    with pytest.raises(ChangeError, match="only a deployed change can be promoted"):
        svc.create_promotion(change.id, ALICE, "production")
    _deploy(svc, change)
    promoted = svc.create_promotion(change.id, ALICE, "production")
    assert (promoted.kind, promoted.parent, promoted.environment) == (
        "promotion", change.id, "production")
    assert promoted.base == svc.repo.tip("production")
    assert svc.repo.read_file(promoted.head, GREETING) == svc.repo.read_file(change.head,
                                                                            GREETING)
    assert promoted.proposer.name == "alice"
    with pytest.raises(InvalidProposal, match="already targets 'staging'"):
        svc.create_promotion(change.id, ALICE, "staging")


# -- the state machine as a property ----------------------------------------------------------

#: The diagram of docs/pipeline.md, edge by edge, plus the two documented additions
#: (deployed -> rolled_back, approved -> rejected) and amendments back to proposed.
DIAGRAM = {
    ("proposed", "analysed"), ("analysed", "analysed"), ("approved", "analysed"),
    ("analysed", "approved"), ("approved", "deploying"), ("deploying", "deployed"),
    ("deploying", "failed"), ("deploying", "rolled_back"), ("failed", "rolled_back"),
    ("deployed", "rolled_back"), ("proposed", "rejected"), ("analysed", "rejected"),
    ("approved", "rejected"), ("proposed", "proposed"), ("analysed", "proposed"),
    ("approved", "proposed"),
}


def test_table_matches_the_documented_diagram() -> None:
    assert set(TRANSITIONS) == DIAGRAM
    assert {"rejected", "rolled_back"} == TERMINAL_STATES
    for state in STATES:
        assert set(next_states(state)) == {to for frm, to in DIAGRAM if frm == state}


def _reachable() -> set[str]:
    seen, todo = {"proposed"}, ["proposed"]
    while todo:
        for nxt in next_states(todo.pop()):  # type: ignore[arg-type]
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_every_state_is_reachable_and_can_end() -> None:
    assert _reachable() == set(STATES)
    for state in STATES:  # from every state some terminal state is reachable
        seen, todo = {state}, [state]
        while todo:
            for nxt in next_states(todo.pop()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        assert seen & TERMINAL_STATES


@given(st.lists(st.sampled_from(STATES), max_size=40))
def test_random_sequences_follow_the_table(targets: list[ChangeState]) -> None:
    state: ChangeState = "proposed"
    for target in targets:
        action = action_for(state, target)
        if state in TERMINAL_STATES:
            assert action is None
        if action is not None:
            assert (state, target) in DIAGRAM
            state = target
    assert state in _reachable()


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(STATES), min_size=1, max_size=12))
def test_random_sequences_on_the_database(svc: Changes, targets: list[ChangeState]) -> None:
    """Stored changes move exactly as the table says; refused moves change nothing."""
    number = len(svc.list()) + 1  # the fixture lives across examples: a new file each time
    change = svc.propose_edits(AGENT, "development", edits={f"seq-{number}.txt": "x"},
                               title=f"sequence {number}")
    svc.set_impact(change.id, DIGEST)
    state: ChangeState = "proposed"
    entries = len(svc.history(change.id))
    for target in targets:
        legal = target != "proposed" and action_for(state, target) is not None
        if legal:
            moved = svc.transition(change.id, target, BOB)
            assert moved.state == target
            state = target
            entries += 1
        else:
            with pytest.raises(IllegalTransition) as err:
                svc.transition(change.id, target, BOB)
            expected = "only when its head changes" if target == "proposed" else f"is {state}"
            assert expected in str(err.value)
        stored = svc.get(change.id).state
        assert stored == state
        assert len(svc.history(change.id)) == entries
    if state in TERMINAL_STATES:
        for target in STATES:
            with pytest.raises(IllegalTransition, match="is final"):
                svc.transition(change.id, target if target != "proposed" else "analysed", BOB)


def test_counter_row_and_table_contents(svc: Changes) -> None:
    _propose(svc)
    with svc.engine.connect() as conn:
        row = conn.execute(select(changes_table)).one()
    assert row.branch == "changes/chg-1"
    assert row.seq == 1


def test_numbers_of_branches_left_by_an_earlier_database_are_skipped(svc: Changes) -> None:
    tip = svc.repo.tip("production")
    svc.repo.set_branch("changes/chg-1", tip, expected=None)  # e.g. a database restored
    change = _propose(svc)
    assert change.id == "chg-2"
    assert svc.repo.branches()["changes/chg-1"] == tip  # left alone
