"""The README's main job, run for real: ``steward demo`` starts an embedded server, enrolls three
sandboxed pull agents, enforces, drifts, queries, and cleans up after itself."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}


def demo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "steward", "demo", *args], cwd=cwd,
                          capture_output=True, text=True, env=_env(), timeout=300, check=False)


def _port(stdout: str) -> int:
    match = re.search(r"serving https://127\.0\.0\.1:(\d+)", stdout)
    assert match, stdout
    return int(match.group(1))


def _refuses(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _section(stdout: str, question: str) -> str:
    """The output of one question: from its heading to the next blank line."""
    start = stdout.index(question)
    end = stdout.find("\n\n", start)
    return stdout[start:end if end != -1 else None]


def test_the_main_job(tmp_path: Path) -> None:
    proc = demo(cwd=tmp_path)
    out = tmp_path / "demo-output"
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "demo succeeded" in proc.stdout
    # The server ran on loopback and was stopped at the end.
    assert _refuses(_port(proc.stdout))
    assert (out / "server.log").is_file()

    # Noop, enforce, in sync; drift corrected; a failure found and repaired.
    for step, code in (("4. First run, in noop", 8), ("5. Enforce", 2), ("6. Enforce again", 0)):
        section = proc.stdout[proc.stdout.index(step):]
        section = section[:section.index("\n== ")]
        assert section.count(f": exit {code}: ") == 3, section
    drifted = _section(proc.stdout, "Which nodes drifted in the last hour?")
    assert "web1" in drifted
    assert "db1" in drifted
    assert "web2" not in drifted
    assert "/etc/motd" in drifted
    assert "/etc/steward/db_password" in drifted
    failed = _section(proc.stdout, "Which nodes failed?")
    assert "web2" in failed
    assert "web1" not in failed
    changed = _section(proc.stdout, "Which nodes changed in the last hour?")
    assert all(node in changed for node in ("web1", "web2", "db1"))
    nginx = _section(proc.stdout, "Which nodes have nginx in their catalog?")
    assert "web1" in nginx
    assert "web2" in nginx
    assert "db1" not in nginx
    assert "13 agent runs, 13 reports stored" in proc.stdout
    # The debugger agent's read-only task finds what is in the way; remediation is refused.
    investigated = proc.stdout[proc.stdout.index("16. A debugger agent investigates"):]
    investigated = investigated[:investigated.index("\n== ")]
    assert '"type": "directory"' in investigated
    assert "task:run" in investigated

    # The secret: only in db1's enforced file (and its agent's own catalog cache).
    enforced = out / "nodes" / "db1" / "etc" / "steward" / "db_password"
    secret = enforced.read_text(encoding="utf-8")
    assert len(secret) >= 16
    assert oct(enforced.stat().st_mode & 0o777) == "0o600"
    allowed = {enforced, out / "nodes" / "db1" / "var" / "lib" / "steward" / "agent" /
               "catalog.json"}
    holders = {path for path in out.rglob("*")
               if path.is_file() and secret.encode() in path.read_bytes()}
    assert holders <= allowed, holders
    # No secret and no token in what the user sees.
    tokens = [(out / "data" / "admin.token").read_text().strip(),
              (out / "join.token").read_text().strip()]
    for value in (secret, *tokens):
        assert value not in proc.stdout
        assert value not in proc.stderr


def test_refuses_to_wipe_a_directory_it_did_not_make(tmp_path: Path) -> None:
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    proc = demo("--workdir", str(precious), cwd=tmp_path)
    assert proc.returncode != 0
    assert "refusing to wipe" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (precious / "notes.txt").read_text() == "keep me"


def test_a_bad_repository_is_a_clear_error(tmp_path: Path) -> None:
    proc = demo("--repo", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert proc.returncode != 0
    assert "not a desired-state repository" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_interrupted_demo_stops_its_server(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-u", "-m", "steward", "demo"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=_env())
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 240
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("== 4.") or time.monotonic() > deadline:
            break
    assert any(line.startswith("== 4.") for line in lines), "".join(lines)
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    output = "".join(lines) + rest
    assert proc.returncode == 130, output
    assert "demo interrupted; the server is stopped" in output
    assert _refuses(_port(output))
