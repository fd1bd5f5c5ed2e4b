"""Task parts over SSH for real: the bundle's ``task`` command run in sshd-fronted Debian roots.

The task document (sensitive values included) travels on stdin only: the tests check the
commands sent, the output and the result for the secret, that ``sudo`` makes the task run as
root, that the SSH command timeout covers the task's own timeout, and that a host that is not
there is a TransportError naming it. The first tests need no sshd: they run the bundle's
``task`` command locally, as the host's python3 would.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from steward.transport import TransportError
from steward.transport.bundle import Bundle
from steward.transport.ssh import TASK_TIMEOUT_MARGIN, open_session, run_task
from tests.transport.sshd import SSHNode

SECRET = "s3cr3t-never-leaves-stdin"


def document(script: str, *, name: str = "probe", script_name: str = "probe.sh",
             params: dict[str, Any] | None = None, sensitive: tuple[str, ...] = (),
             timeout: int = 30, noop: bool = False) -> dict[str, Any]:
    """A task document as ``JobStore.claim`` hands it over."""
    return {"job": "job-test", "task": name, "noop": noop, "timeout": timeout,
            "script_name": script_name, "script": script, "params": params or {},
            "sensitive": list(sensitive)}


def local_task(bundle: Bundle, stdin: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``python3 -I -S BUNDLE task``: what the host runs, minus SSH."""
    return subprocess.run([sys.executable, "-I", "-S", str(bundle.path), "task"], input=stdin,
                          capture_output=True, text=True, cwd=tmp_path, check=False,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})


# --- the bundle's task command, locally ------------------------------------------------------


def test_the_bundle_runs_a_task_document_from_stdin(bundle: Bundle, tmp_path: Path) -> None:
    task = document('echo "token=$PT_token who=$PT_who noop=$PT__noop"; cat',
                    params={"token": SECRET, "who": "ops"}, sensitive=("token",), noop=True)
    done = local_task(bundle, json.dumps(task), tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["state"] == "succeeded"
    assert result["exit_code"] == 0
    # Parameters as PT_* and as the JSON object on stdin; the secret cut out of both.
    assert "token=[redacted] who=ops noop=true" in result["output"]
    assert '"who": "ops"' in result["output"]
    assert SECRET not in done.stdout + done.stderr


def test_a_python_task_returns_a_structured_result(bundle: Bundle, tmp_path: Path) -> None:
    script = ("import json, sys\np = json.load(sys.stdin)\n"
              "print(json.dumps({'echo': p['token'], 'n': p['n']}))\n")
    task = document(script, script_name="probe.py", params={"token": SECRET, "n": 3},
                    sensitive=("token",))
    result = json.loads(local_task(bundle, json.dumps(task), tmp_path).stdout)
    assert result["state"] == "succeeded"
    assert result["result"] == {"echo": "[redacted]", "n": 3}


@pytest.mark.parametrize(("stdin", "message"), [
    ("{not json", "stdin:1:2: the task document is not valid JSON"),
    ("[]", "stdin: the task document must be a JSON object"),
    (json.dumps({"task": "t", "script_name": "t.sh"}), "the task document has no 'script'"),
    (json.dumps(document("true", params={"p": SECRET}) | {"params": [SECRET]}),
     "the task document's 'params' must be dict"),
])
def test_an_unusable_document_is_a_clear_error(bundle: Bundle, tmp_path: Path, stdin: str,
                                               message: str) -> None:
    done = local_task(bundle, stdin, tmp_path)
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert SECRET not in done.stderr
    assert done.stdout == ""


# --- over SSH ---------------------------------------------------------------------------------


@pytest.mark.chroot
@pytest.mark.slow
def test_a_task_runs_in_the_node_with_its_secret_on_stdin_only(node_a: SSHNode,
                                                              bundle: Bundle) -> None:
    script = ('echo "$(hostname -s 2>/dev/null) $PT_token" > /tmp/steward-task-ran\n'
              'echo "uid=$(id -u) token=$PT_token"\ncat\necho "to stderr: $PT_token" >&2\n')
    task = document(script, params={"token": SECRET}, sensitive=("token",))

    async def go() -> tuple[dict[str, Any], list[str]]:
        async with open_session(node_a.target(), bundle) as session:
            return await session.run_task(task), session.commands

    result, commands = asyncio.run(go())
    assert result["state"] == "succeeded", result
    assert result["exit_code"] == 0
    assert "uid=0 token=[redacted]" in result["output"]
    assert "[stderr]\nto stderr: [redacted]" in result["output"]
    assert SECRET not in json.dumps(result)
    assert not any(SECRET in command for command in commands)
    assert commands[-1].endswith(" task")
    # It ran inside the node's root (with the real value), not on the host.
    assert SECRET in node_a.session.read("/tmp/steward-task-ran")
    assert not Path("/tmp/steward-task-ran").exists()


@pytest.mark.chroot
@pytest.mark.slow
def test_a_failing_task_is_a_result_not_a_transport_error(node_a: SSHNode,
                                                          bundle: Bundle) -> None:
    result = asyncio.run(run_task(node_a.target(), document("echo half; exit 3"),
                                  bundle=bundle))
    assert (result["state"], result["exit_code"]) == ("failed", 3)
    assert result["output"].startswith("half")


@pytest.mark.chroot
@pytest.mark.slow
def test_sudo_runs_the_task_as_root(with_sudo: SSHNode, bundle: Bundle) -> None:
    task = document('id -un; echo "$PT_token"', params={"token": SECRET},
                    sensitive=("token",))

    async def go(sudo: bool) -> tuple[dict[str, Any], list[str]]:
        target = with_sudo.target(user="deploy", sudo=sudo)
        async with open_session(target, bundle) as session:
            return await session.run_task(task), session.commands

    plain, _ = asyncio.run(go(False))
    assert plain["output"].splitlines()[0] == "deploy"
    elevated, commands = asyncio.run(go(True))
    assert elevated["state"] == "succeeded", elevated
    assert elevated["output"].splitlines() == ["root", "[redacted]"]
    assert commands[-1].startswith("sudo -n -- python3 ")
    assert not any(SECRET in command for command in commands)


@pytest.mark.chroot
@pytest.mark.slow
def test_the_ssh_timeout_covers_the_tasks_timeout(node_a: SSHNode, bundle: Bundle) -> None:
    # A 1 s command timeout on the target does not cut a task allowed 10 s.
    target = node_a.target(command_timeout=1.0)
    result = asyncio.run(run_task(target, document("sleep 2; echo done", timeout=10),
                                  bundle=bundle))
    assert (result["state"], result["output"].strip()) == ("succeeded", "done")
    # The runner on the host kills a task at its own timeout, well within the margin.
    assert TASK_TIMEOUT_MARGIN >= 5
    killed = asyncio.run(run_task(target, document("echo started; sleep 30", timeout=1),
                                  bundle=bundle))
    assert killed["state"] == "timeout", killed
    assert "task killed after 1 seconds" in killed["output"]
    assert "started" in killed["output"]


@pytest.mark.chroot
@pytest.mark.slow
def test_an_unreachable_host_is_a_transport_error_naming_it(node_a: SSHNode,
                                                            bundle: Bundle) -> None:
    target = node_a.target(port=1)
    with pytest.raises(TransportError) as caught:
        asyncio.run(run_task(target, document("true", params={"token": SECRET},
                                              sensitive=("token",)), bundle=bundle))
    assert target.label in str(caught.value)
    assert "cannot connect" in str(caught.value)
    assert SECRET not in str(caught.value)
