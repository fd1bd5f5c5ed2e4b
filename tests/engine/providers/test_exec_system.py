"""The exec provider running real commands through /bin/sh, in a Debian root."""

from __future__ import annotations

import time

import pytest

from tests.engine.providers.debian_root import ChrootSession
from tests.engine.providers.node import (
    EXIT_FAILED,
    EXIT_PENDING,
    Node,
    assert_noop_predicts,
    assert_unchanged,
    edge,
    resource,
)

pytestmark = pytest.mark.chroot


@pytest.fixture
def scratch(debian_root: ChrootSession) -> ChrootSession:
    """An empty /srv/t for each test's files."""
    debian_root.sh("rm -rf /srv/t && mkdir -p /srv/t")
    return debian_root


def test_creates_is_checked_even_in_noop(node: Node, scratch: ChrootSession) -> None:
    made = [resource("exec", "make", command="echo made > /srv/t/made", creates="/srv/t/made")]
    noop = node.apply(made, noop=True)
    real = node.apply(made)
    assert_noop_predicts(noop, real)
    assert real.changes() == [("exec[make]", "executed", "notrun", "echo made > /srv/t/made")]
    assert real.events("exec[make]")[0]["message"] == "executed 'echo made > /srv/t/made'"
    assert scratch.read("/srv/t/made") == "made\n"
    assert_unchanged(node.apply(made, noop=True))
    assert_unchanged(node.apply(made))
    # Drift: the file goes away behind the engine's back, so the command runs again.
    scratch.run(["rm", "/srv/t/made"])
    again = node.apply(made)
    assert again.changes() == real.changes()
    assert scratch.read("/srv/t/made") == "made\n"


def test_unsafe_guards_are_not_run_in_noop(node: Node, scratch: ChrootSession) -> None:
    guarded = [resource("exec", "guarded", command="touch /srv/t/ran",
                        unless="touch /srv/t/guard-ran; false")]
    noop = node.apply(guarded, noop=True)
    assert noop.code == EXIT_PENDING
    assert noop.status("exec[guarded]") == "pending"
    assert noop.resource("exec[guarded]")["message"].startswith(
        "would run unless guards say otherwise: onlyif/unless not evaluated in noop")
    assert not scratch.path("/srv/t/guard-ran").exists()
    assert not scratch.path("/srv/t/ran").exists()

    real = node.apply(guarded)
    assert real.status("exec[guarded]") == "changed"
    assert scratch.path("/srv/t/guard-ran").exists()
    assert scratch.path("/srv/t/ran").exists()


def test_noop_safe_guards_predict_exactly(node: Node, scratch: ChrootSession) -> None:
    flagged = [resource("exec", "flag", command="touch /srv/t/flag",
                        unless="test -f /srv/t/flag", noop_safe=True)]
    noop = node.apply(flagged, noop=True)
    real = node.apply(flagged)
    assert_noop_predicts(noop, real)
    assert_unchanged(node.apply(flagged, noop=True))
    assert_unchanged(node.apply(flagged))

    gated = [resource("exec", "gated", command="touch /srv/t/gated-ran",
                      onlyif="test -f /srv/t/go", noop_safe=True)]
    assert_unchanged(node.apply(gated))
    assert not scratch.path("/srv/t/gated-ran").exists()
    scratch.write("/srv/t/go", "")
    noop = node.apply(gated, noop=True)
    real = node.apply(gated)
    assert_noop_predicts(noop, real)
    assert scratch.path("/srv/t/gated-ran").exists()


def test_a_guard_that_cannot_run_is_an_error(node: Node, scratch: ChrootSession) -> None:
    run = node.apply([resource("exec", "typo", command="touch /srv/t/x",
                               unless="test-file-exists /srv/t/x")])
    assert run.code == EXIT_FAILED
    message = run.resource("exec[typo]")["message"]
    assert message.startswith(
        "unless guard 'test-file-exists /srv/t/x' could not run its command (exit 127)")
    assert not scratch.path("/srv/t/x").exists()


def test_refreshonly_runs_only_when_notified(node: Node, scratch: ChrootSession) -> None:
    catalog = [
        resource("exec", "config", command="echo v1 > /srv/t/config",
                 creates="/srv/t/config"),
        resource("exec", "reload", command="echo reloaded >> /srv/t/reloads",
                 refreshonly=True),
    ]
    edges = [edge("exec[config]", "exec[reload]", "notifies")]
    noop = node.apply(catalog, edges, noop=True)
    assert noop.statuses() == {"exec[config]": "noop", "exec[reload]": "noop"}
    assert [e["message"] for e in noop.events("exec[reload]")] == [
        "would have refreshed (triggered by exec[config])"]
    assert not scratch.path("/srv/t/reloads").exists()

    real = node.apply(catalog, edges)
    assert real.statuses() == {"exec[config]": "changed", "exec[reload]": "changed"}
    assert [e["message"] for e in real.events("exec[reload]")] == [
        "executed 'echo reloaded >> /srv/t/reloads' (triggered by exec[config])"]
    assert scratch.read("/srv/t/reloads") == "reloaded\n"

    assert_unchanged(node.apply(catalog, edges))
    assert scratch.read("/srv/t/reloads") == "reloaded\n"


def test_a_notified_exec_reruns_once_and_respects_its_guards(
    node: Node, scratch: ChrootSession
) -> None:
    trigger = resource("exec", "trigger", command="touch /srv/t/trigger",
                       creates="/srv/t/trigger")
    always = resource("exec", "count", command="echo run >> /srv/t/count")
    skipped = resource("exec", "skip", command="touch /srv/t/skip-ran", creates="/srv/t")
    edges = [edge("exec[trigger]", "exec[count]", "notifies"),
             edge("exec[trigger]", "exec[skip]", "notifies")]
    run = node.apply([trigger, always, skipped], edges)
    # Ran by itself in this run, so the notification does not run it a second time.
    assert scratch.read("/srv/t/count") == "run\n"
    assert [e["property"] for e in run.events("exec[count]")] == ["executed"]
    # Its guard (creates) says no, on refresh too.
    assert run.status("exec[skip]") == "unchanged"
    assert not scratch.path("/srv/t/skip-ran").exists()

    # Notified, but its unless guard says no: the refresh does not run it either.
    scratch.run(["rm", "/srv/t/trigger"])
    gated = resource("exec", "gated", command="echo ran >> /srv/t/gated",
                     unless="test -f /srv/t/trigger-seen", noop_safe=True)
    scratch.write("/srv/t/trigger-seen", "")
    run = node.apply([trigger, gated], [edge("exec[trigger]", "exec[gated]", "notifies")])
    assert run.status("exec[gated]") == "unchanged"
    assert not scratch.path("/srv/t/gated").exists()


def test_timeout_kills_the_whole_command(node: Node, scratch: ChrootSession) -> None:
    slow = [resource("exec", "slow", command="sleep 60; echo done > /srv/t/done", timeout=1)]
    started = time.monotonic()
    run = node.apply(slow)
    elapsed = time.monotonic() - started
    assert run.code == EXIT_FAILED
    assert run.resource("exec[slow]")["message"] == (
        "'sleep 60; echo done > /srv/t/done' did not finish within the timeout of 1s and was "
        "killed")
    assert elapsed < 15
    assert not scratch.path("/srv/t/done").exists()


def test_unexpected_exit_code_fails_with_the_output(node: Node, scratch: ChrootSession) -> None:
    failing = resource("exec", "failing", command="echo step one; echo broken >&2; exit 3")
    run = node.apply([failing])
    assert run.code == EXIT_FAILED
    message = run.resource("exec[failing]")["message"]
    assert message == ("'echo step one; echo broken >&2; exit 3' returned 3 (expected 0): "
                       "step one | broken")
    accepted = resource("exec", "failing", command="echo step one; echo broken >&2; exit 3",
                        returns=[0, 3])
    assert node.apply([accepted]).status("exec[failing]") == "changed"


def test_environment_cwd_and_user(node: Node, scratch: ChrootSession) -> None:
    scratch.run(["sh", "-c", "id runner >/dev/null 2>&1 || useradd -M runner"])
    scratch.run(["chmod", "777", "/srv/t"])
    command = 'echo "$GREETING $(pwd) $(id -un) $HOME" > /srv/t/ctx'
    ctx = [resource("exec", "ctx", command=command, environment={"GREETING": "hello"},
                    cwd="/srv", user="runner", creates="/srv/t/ctx")]
    noop = node.apply(ctx, noop=True)
    real = node.apply(ctx, record=True)
    assert_noop_predicts(noop, real)
    assert scratch.read("/srv/t/ctx") == "hello /srv runner /home/runner\n"
    assert scratch.path("/srv/t/ctx").stat().st_uid != 0
    [call] = real.calls
    assert call[:4] == ["timeout", "-k", "5", "300"]
    assert call[4:9] == ["runuser", "-u", "runner", "--", "/bin/sh"]


def test_a_missing_user_is_pending_behind_its_user_resource(
    node: Node, scratch: ChrootSession
) -> None:
    scratch.run(["sh", "-c", "userdel later 2>/dev/null || true; chmod 777 /srv/t"])
    catalog = [resource("user", "later"),
               resource("exec", "as-later", command="id -un > /srv/t/later", user="later",
                        creates="/srv/t/later")]
    edges = [edge("user[later]", "exec[as-later]", "required-by")]
    noop = node.apply(catalog, edges, noop=True)
    assert noop.statuses() == {"user[later]": "noop", "exec[as-later]": "pending"}
    assert noop.resource("exec[as-later]")["message"] == (
        "user later not found; expected after pending changes to user[later]")
    alone = node.apply(catalog[1:])
    assert alone.status("exec[as-later]") == "failed"
    real = node.apply(catalog, edges)
    assert real.statuses() == {"user[later]": "changed", "exec[as-later]": "changed"}, real.report
    assert scratch.read("/srv/t/later") == "later\n"
