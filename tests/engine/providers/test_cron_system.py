"""The cron provider against Debian's real crontab(1), in a Debian root."""

from __future__ import annotations

import pytest

from tests.engine.providers.debian_root import ChrootSession
from tests.engine.providers.node import (
    EXIT_PENDING,
    Node,
    assert_noop_predicts,
    assert_unchanged,
    edge,
    resource,
)

pytestmark = pytest.mark.chroot

UNMANAGED = (
    "# my own comment\n"
    "MAILTO=me@example.com\n"
    "*/5 * * * * /usr/local/bin/mine\n"
    "\n"
    "@reboot /usr/local/bin/boot-thing\n"
)


@pytest.fixture
def crontabs(debian_root: ChrootSession) -> ChrootSession:
    """root's crontab holds only unmanaged lines; cronuser exists, with no crontab."""
    debian_root.sh("id cronuser >/dev/null 2>&1 || useradd -M cronuser\n"
                   "crontab -r -u cronuser 2>/dev/null || true\n"
                   "userdel notyet 2>/dev/null || true\n")
    debian_root.run(["crontab", "-u", "root", "-"], input=UNMANAGED)
    return debian_root


def crontab(session: ChrootSession, user: str = "root") -> str:
    return session.run(["crontab", "-l", "-u", user]).stdout


def backup(**overrides: object) -> dict[str, object]:
    params: dict[str, object] = {"command": "/usr/local/bin/backup --all", "minute": "0",
                                 "hour": "3", "environment": ["PATH=/usr/bin:/bin"]}
    params.update(overrides)
    return resource("cron", "backup", **params)


BLOCK = "# Steward: backup\nPATH=/usr/bin:/bin\n0 3 * * * /usr/local/bin/backup --all\n"


def test_entry_is_added_and_other_lines_are_kept(node: Node, crontabs: ChrootSession) -> None:
    noop = node.apply([backup()], noop=True, record=True)
    assert noop.calls == [["crontab", "-l", "-u", "root"]]
    real = node.apply([backup()])
    assert_noop_predicts(noop, real)
    assert real.changes() == [("cron[backup]", "ensure", "absent", "present")]
    assert crontab(crontabs) == UNMANAGED + "\n" + BLOCK
    assert_unchanged(node.apply([backup()]))


def test_changes_are_predicted_and_made_in_place(node: Node, crontabs: ChrootSession) -> None:
    node.apply([backup()])
    crontabs.run(["crontab", "-u", "root", "-"],
                 input=crontab(crontabs) + "# a line added later by someone else\n")
    changed = backup(minute="30", hour="4", weekday="1", command="/usr/local/bin/backup",
                     environment=["PATH=/usr/bin:/bin", "MAILTO=ops@example.com"])
    noop = node.apply([changed], noop=True)
    real = node.apply([changed])
    assert_noop_predicts(noop, real)
    assert real.changes() == [
        ("cron[backup]", "schedule", "0 3 * * *", "30 4 * * 1"),
        ("cron[backup]", "command", "/usr/local/bin/backup --all", "/usr/local/bin/backup"),
        ("cron[backup]", "environment", ["PATH=/usr/bin:/bin"],
         ["PATH=/usr/bin:/bin", "MAILTO=ops@example.com"]),
    ]
    assert crontab(crontabs) == (
        UNMANAGED + "\n# Steward: backup\nPATH=/usr/bin:/bin\nMAILTO=ops@example.com\n"
        "30 4 * * 1 /usr/local/bin/backup\n# a line added later by someone else\n"
    )
    assert_unchanged(node.apply([changed]))


def test_special_schedule(node: Node, crontabs: ChrootSession) -> None:
    node.apply([backup()])
    daily = backup(special="@daily")
    noop = node.apply([daily], noop=True)
    real = node.apply([daily])
    assert_noop_predicts(noop, real)
    assert real.changes() == [("cron[backup]", "schedule", "0 3 * * *", "@daily")]
    assert crontab(crontabs).endswith("@daily /usr/local/bin/backup --all\n")
    assert_unchanged(node.apply([daily]))


def test_drift_is_corrected(node: Node, crontabs: ChrootSession) -> None:
    node.apply([backup()])
    edited = crontab(crontabs).replace("0 3 * * *", "0 5 * * *")
    crontabs.run(["crontab", "-u", "root", "-"], input=edited)
    run = node.apply([backup()])
    assert run.changes() == [("cron[backup]", "schedule", "0 5 * * *", "0 3 * * *")]
    assert run.resource("cron[backup]")["corrective_change"] is True
    assert crontab(crontabs) == UNMANAGED + "\n" + BLOCK


def test_absent_removes_only_the_managed_block(node: Node, crontabs: ChrootSession) -> None:
    node.apply([backup()])
    gone = [resource("cron", "backup", ensure="absent")]
    noop = node.apply(gone, noop=True)
    real = node.apply(gone)
    assert_noop_predicts(noop, real)
    assert real.changes() == [("cron[backup]", "ensure", "present", "absent")]
    assert "Steward" not in crontab(crontabs)
    assert crontab(crontabs).startswith(UNMANAGED)
    assert_unchanged(node.apply(gone))


def test_each_crontab_is_read_once_per_run(node: Node, crontabs: ChrootSession) -> None:
    catalog = [
        resource("cron", "one", user="cronuser", command="/bin/true", minute="1"),
        resource("cron", "two", user="cronuser", command="/bin/true", minute="2"),
        backup(),
    ]
    noop = node.apply(catalog, noop=True, record=True)
    assert sorted(noop.calls) == [["crontab", "-l", "-u", "cronuser"],
                                  ["crontab", "-l", "-u", "root"]]
    real = node.apply(catalog, record=True)
    assert_noop_predicts(noop, real)
    assert len(real.calls_of("crontab", "-l")) == 2
    assert real.calls_of("crontab", "-u") == [["crontab", "-u", "cronuser", "-"]] * 2 + [
        ["crontab", "-u", "root", "-"]]
    assert crontab(crontabs, "cronuser") == (
        "# Steward: one\n1 * * * * /bin/true\n\n# Steward: two\n2 * * * * /bin/true\n")
    assert_unchanged(node.apply(catalog))


def test_a_missing_user_fails_or_is_pending_behind_its_creation(
    node: Node, crontabs: ChrootSession
) -> None:
    entry = resource("cron", "later", user="notyet", command="/bin/true")
    alone = node.apply([entry])
    assert alone.status("cron[later]") == "failed"
    assert alone.resource("cron[later]")["message"] == "user notyet not found (for its crontab)"

    catalog = [resource("user", "notyet"), entry]
    edges = [edge("user[notyet]", "cron[later]", "required-by")]
    noop = node.apply(catalog, edges, noop=True)
    assert noop.code == EXIT_PENDING
    assert noop.statuses() == {"user[notyet]": "noop", "cron[later]": "pending"}
    real = node.apply(catalog, edges)
    assert real.statuses() == {"user[notyet]": "changed", "cron[later]": "changed"}
    assert crontab(crontabs, "notyet") == "# Steward: later\n* * * * * /bin/true\n"


def test_crontab_rejects_a_bad_schedule(node: Node, crontabs: ChrootSession) -> None:
    run = node.apply([backup(minute="61")])
    assert run.status("cron[backup]") == "failed"
    message = run.resource("cron[backup]")["message"]
    assert message.startswith("writing the crontab of root: 'crontab -u root -' exited 1")
    assert "bad minute" in message
    assert crontab(crontabs) == UNMANAGED
