"""The user and group providers against the real shadow tools, in a Debian root."""

from __future__ import annotations

import json

import pytest

from tests.engine.providers.debian_root import ChrootSession
from tests.engine.providers.node import (
    Node,
    assert_noop_predicts,
    assert_unchanged,
    edge,
    resource,
)

pytestmark = pytest.mark.chroot

HASH_1 = "$6$stewardsalt$Ivd8H0bYw0m5R2a3n8Yl8c3eXr1nV0uYQ1hA7G9dK2pLqW4sT6zB5xC9vN3mJ0fE"
HASH_2 = "$6$othersalt$Qm2Zr5Lp9Xk1Vw7Tn4Hy6Cd8Bf3Gs0Ja5Eu2Io7Pl1Ky9Mx4Nb6Vc8Zt3Rq0We"


def passwd(session: ChrootSession, name: str) -> list[str] | None:
    for line in session.read("/etc/passwd").splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields
    return None


def group(session: ChrootSession, name: str) -> list[str] | None:
    for line in session.read("/etc/group").splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields
    return None


def members_of(session: ChrootSession, user: str) -> list[str]:
    return sorted(
        fields[0]
        for fields in (line.split(":") for line in session.read("/etc/group").splitlines())
        if user in fields[3].split(",")
    )


def shadow_hash(session: ChrootSession, name: str) -> str | None:
    for line in session.read("/etc/shadow").splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields[1]
    return None


@pytest.fixture
def fresh(debian_root: ChrootSession) -> ChrootSession:
    """None of the users and groups these tests create exist (tests may run in any order)."""
    debian_root.sh(
        "for u in alice bob carol svc; do userdel -r $u 2>/dev/null || true; done\n"
        "for g in devs ops svc steward-g steward-sys steward-clash; do\n"
        "  groupdel $g 2>/dev/null || true\n"
        "done\n"
        "rm -rf /srv/alice /home/alice /home/bob\n"
    )
    return debian_root


def test_group_lifecycle_with_drift(node: Node, fresh: ChrootSession) -> None:
    debian_root = fresh
    wanted = [resource("group", "steward-g", gid=3001)]
    noop = node.apply(wanted, noop=True, record=True)
    assert noop.calls == []  # read through the C library, nothing run
    real = node.apply(wanted)
    assert_noop_predicts(noop, real)
    assert real.changes() == [("group[steward-g]", "ensure", "absent", "present")]
    assert group(debian_root, "steward-g") == ["steward-g", "x", "3001", ""]
    assert_unchanged(node.apply(wanted))

    debian_root.run(["groupmod", "-g", "3002", "steward-g"])  # drift
    fixed = node.apply(wanted)
    assert fixed.changes() == [("group[steward-g]", "gid", 3002, 3001)]
    assert fixed.resource("group[steward-g]")["corrective_change"] is True
    assert group(debian_root, "steward-g")[2] == "3001"  # type: ignore[index]

    moved = [resource("group", "steward-g", gid=3003)]
    noop = node.apply(moved, noop=True)
    real = node.apply(moved)
    assert_noop_predicts(noop, real)
    assert real.resource("group[steward-g]")["corrective_change"] is False

    gone = [resource("group", "steward-g", ensure="absent")]
    noop = node.apply(gone, noop=True)
    real = node.apply(gone)
    assert_noop_predicts(noop, real)
    assert group(debian_root, "steward-g") is None
    assert_unchanged(node.apply(gone))


def test_system_group_and_gid_conflict(node: Node, fresh: ChrootSession) -> None:
    debian_root = fresh
    run = node.apply([resource("group", "steward-sys", system=True)])
    assert run.status("group[steward-sys]") == "changed"
    assert int(group(debian_root, "steward-sys")[2]) < 1000  # type: ignore[index]
    clash = node.apply([resource("group", "steward-clash", gid=0)])
    assert clash.status("group[steward-clash]") == "failed"
    message = clash.resource("group[steward-clash]")["message"]
    assert "groupadd -g 0 steward-clash" in message
    assert "GID '0' already exists" in message


def full_user(**overrides: object) -> list[dict[str, object]]:
    params: dict[str, object] = {
        "uid": 4001, "gid": "devs", "groups": ["users", "ops"], "home": "/home/alice",
        "shell": "/bin/bash", "comment": "Alice Example", "managehome": True,
        "password": {"__sensitive__": "alice-password"},
    }
    params.update(overrides)
    return [resource("group", "devs", gid=4100), resource("group", "ops", gid=4101),
            resource("user", "alice", **params)]


USER_EDGES = [edge("group[devs]", "user[alice]", "required-by"),
              edge("group[ops]", "user[alice]", "required-by")]


def test_user_created_idempotent_and_hash_never_shown(node: Node, fresh: ChrootSession) -> None:
    debian_root = fresh
    secrets = {"alice-password": HASH_1}
    noop = node.apply(full_user(), USER_EDGES, noop=True, secrets=secrets, record=True)
    assert {c[0] for c in noop.calls} <= {"getent"}, noop.calls
    real = node.apply(full_user(), USER_EDGES, secrets=secrets, record=True)
    assert_noop_predicts(noop, real)
    assert real.changes() == [
        ("group[devs]", "ensure", "absent", "present"),
        ("group[ops]", "ensure", "absent", "present"),
        ("user[alice]", "ensure", "absent", "present"),
    ]
    assert passwd(debian_root, "alice") == [
        "alice", "x", "4001", "4100", "Alice Example", "/home/alice", "/bin/bash"]
    assert members_of(debian_root, "alice") == ["ops", "users"]
    assert shadow_hash(debian_root, "alice") == HASH_1
    home = debian_root.path("/home/alice")
    assert home.is_dir()
    assert home.stat().st_uid == 4001
    # The hash went to chpasswd on stdin, never on a command line.
    assert ["chpasswd", "-e"] in real.calls
    assert not any(HASH_1 in " ".join(call) for call in real.calls)

    again = node.apply(full_user(), USER_EDGES, secrets=secrets)
    assert_unchanged(again)
    for run in (noop, real, again):
        assert HASH_1 not in run.stdout + run.stderr
    assert HASH_1 not in json.dumps(node.apply(full_user(), USER_EDGES, secrets=secrets,
                                               noop=True).report)


def test_user_drift_in_shell_and_groups_is_corrected(node: Node, fresh: ChrootSession) -> None:
    debian_root = fresh
    secrets = {"alice-password": HASH_1}
    node.apply(full_user(), USER_EDGES, secrets=secrets)
    debian_root.run(["usermod", "-s", "/bin/sh", "alice"])
    debian_root.run(["usermod", "-aG", "audio", "alice"])
    fixed = node.apply(full_user(), USER_EDGES, secrets=secrets)
    assert fixed.changes() == [
        ("user[alice]", "groups", ["audio", "ops", "users"], ["ops", "users"]),
        ("user[alice]", "shell", "/bin/sh", "/bin/bash"),
    ]
    assert fixed.resource("user[alice]")["corrective_change"] is True
    assert passwd(debian_root, "alice")[6] == "/bin/bash"  # type: ignore[index]
    assert members_of(debian_root, "alice") == ["ops", "users"]
    assert_unchanged(node.apply(full_user(), USER_EDGES, secrets=secrets))


def test_user_changes_are_predicted_exactly(node: Node, fresh: ChrootSession) -> None:
    debian_root = fresh
    secrets = {"alice-password": HASH_1}
    node.apply(full_user(), USER_EDGES, secrets=secrets)
    debian_root.write("/home/alice/notes.txt", "keep me\n")
    changed = full_user(uid=4002, comment="Alice B. Example", home="/srv/alice", gid=4101,
                        groups=[])
    noop = node.apply(changed, USER_EDGES, noop=True, secrets=secrets)
    real = node.apply(changed, USER_EDGES, secrets=secrets)
    assert_noop_predicts(noop, real)
    assert real.changes() == [
        ("user[alice]", "uid", 4001, 4002),
        ("user[alice]", "gid", 4100, 4101),
        ("user[alice]", "groups", ["ops", "users"], []),
        ("user[alice]", "home", "/home/alice", "/srv/alice"),
        ("user[alice]", "comment", "Alice Example", "Alice B. Example"),
    ]
    assert passwd(debian_root, "alice") == [
        "alice", "x", "4002", "4101", "Alice B. Example", "/srv/alice", "/bin/bash"]
    assert members_of(debian_root, "alice") == []
    # managehome moved the home directory with its content (and usermod -u chowned it).
    assert debian_root.read("/srv/alice/notes.txt") == "keep me\n"
    assert not debian_root.path("/home/alice").exists()
    assert_unchanged(node.apply(changed, USER_EDGES, secrets=secrets))


def test_password_change_is_redacted(node: Node, fresh: ChrootSession) -> None:
    debian_root = fresh
    node.apply(full_user(), USER_EDGES, secrets={"alice-password": HASH_1})
    secrets = {"alice-password": HASH_2}
    noop = node.apply(full_user(), USER_EDGES, noop=True, secrets=secrets)
    real = node.apply(full_user(), USER_EDGES, secrets=secrets)
    assert_noop_predicts(noop, real)
    assert real.changes() == [("user[alice]", "password", "[redacted]", "[redacted]")]
    assert shadow_hash(debian_root, "alice") == HASH_2
    for run in (noop, real):
        text = run.stdout + run.stderr
        assert HASH_1 not in text
        assert HASH_2 not in text
    state = debian_root.read("/var/lib/steward/state.json")
    assert HASH_2 not in state


def test_user_absent_with_managehome_removes_home(node: Node, fresh: ChrootSession) -> None:
    debian_root = fresh
    node.apply([resource("user", "bob", managehome=True, shell="/bin/bash")])
    assert debian_root.path("/home/bob").is_dir()
    gone = [resource("user", "bob", ensure="absent", managehome=True)]
    noop = node.apply(gone, noop=True)
    real = node.apply(gone)
    assert_noop_predicts(noop, real)
    assert passwd(debian_root, "bob") is None
    assert not debian_root.path("/home/bob").exists()
    assert_unchanged(node.apply(gone))


def test_user_joins_the_group_named_like_it(node: Node, fresh: ChrootSession) -> None:
    debian_root = fresh
    run = node.apply([resource("group", "svc", gid=4200), resource("user", "svc", system=True)],
                     [edge("group[svc]", "user[svc]", "required-by")])
    assert run.statuses() == {"group[svc]": "changed", "user[svc]": "changed"}
    fields = passwd(debian_root, "svc")
    assert fields is not None
    assert fields[3] == "4200"
    assert int(fields[2]) < 1000


def test_a_missing_supplementary_group_fails_with_useradds_reason(
    node: Node, fresh: ChrootSession
) -> None:
    run = node.apply([resource("user", "carol", groups=["no-such-group"])])
    assert run.status("user[carol]") == "failed"
    message = run.resource("user[carol]")["message"]
    assert "useradd -G no-such-group -M carol" in message
    assert "group 'no-such-group' does not exist" in message
