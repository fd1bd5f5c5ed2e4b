"""``steward agent`` as a user meets it: flags, durations, and failures without a server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from steward.agent.cli import parse_duration
from steward.errors import UsageError
from tests.e2e.harness import free_port, steward, steward_env


def test_durations() -> None:
    assert parse_duration("30m", "x") == 1800
    assert parse_duration("90s", "x") == 90
    assert parse_duration("1.5h", "x") == 5400
    assert parse_duration("500ms", "x") == 0.5
    assert parse_duration("7d", "x") == 7 * 86400
    assert parse_duration("5", "x") == 300  # bare numbers are minutes, as in Puppet
    with pytest.raises(UsageError, match="use a duration"):
        parse_duration("soon", "--interval")


def test_the_agent_needs_a_server_and_https(tmp_path: Path) -> None:
    missing = steward("agent", "--once", "--root", str(tmp_path), env=steward_env())
    assert missing.returncode == 1
    assert "--server (or $STEWARD_SERVER) is required" in missing.stderr
    plain = steward("agent", "--once", "--root", str(tmp_path), "--server", "http://x:1")
    assert plain.returncode == 1
    assert "must be https://" in plain.stderr
    assert "Traceback" not in missing.stderr + plain.stderr


def test_no_server_and_no_cached_catalog_is_a_clean_failure(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    state = tmp_path / "root" / "var/lib/steward/agent"
    state.mkdir(parents=True)
    server = f"https://127.0.0.1:{free_port()}"
    (state / "credential.json").write_text(json.dumps(
        {"certname": "lonely", "server": server, "token": "stwn_x"}))
    proc = steward("agent", "--once", "--server", server, "--certname", "lonely",
                   "--root", str(tmp_path / "root"))
    assert proc.returncode == 1
    assert "server unavailable" in proc.stderr
    assert "no cached catalog" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_agent_does_not_import_the_server_stack() -> None:
    code = ("import sys, steward.agent.cli, steward.agent.run, steward.agent.client; "
            "print([m for m in ('fastapi', 'sqlalchemy', 'typer', 'httpx', 'pydantic') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_one_agent_per_state_directory(tmp_path: Path) -> None:
    from steward.agent.errors import AgentError
    from steward.agent.state import AgentState

    first = AgentState(tmp_path)
    second = AgentState(tmp_path)
    with first.locked(), pytest.raises(AgentError, match="another steward agent"), \
            second.locked():
        pass


def test_sigterm_stops_a_waiting_daemon_at_once(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "steward", "agent", "--server",
         f"https://127.0.0.1:{free_port()}", "--certname", "t1", "--root",
         str(tmp_path / "root"), "--interval", "1h"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=steward_env(),
    )
    try:
        time.sleep(1.5)
        started = time.monotonic()
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
        assert time.monotonic() - started < 3
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "stopped" in out
    assert not os.path.exists(tmp_path / "root" / "var/lib/steward/agent/credential.json")
