"""Nothing in the data directory is readable by another user of the server host.

It holds the CA and TLS keys, the audit signing key, the secrets store and its key, the admin
token, the database (every report, token hash and audit entry), the desired-state repository
and the audit witness. Each is created 0600 (directories 0700) by ``steward init`` and by the
server, whatever the umask they were started with: checked after init and after a real
``steward server`` process has enrolled a node, compiled its catalog, stored its facts,
committed a change to ``desired.git``, checkpointed the audit log and shut down.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from steward.secrets.store import SecretStore
from steward.server.init import init_data_dir
from tests.e2e.harness import (
    SECRET_VALUE,
    Server,
    call,
    create_identity,
    database_url,
    free_port,
    ok,
    write_repo,
)


@contextlib.contextmanager
def loose_umask() -> Iterator[None]:
    """Run as a careless operator's shell would: files 0644, directories 0755 by default."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def exposed(data_dir: Path) -> list[str]:
    """Every path under ``data_dir`` (itself included) that group or others can access."""
    found = []
    for root, dirs, files in os.walk(data_dir):
        for path in (Path(root), *(Path(root) / name for name in (*dirs, *files))):
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode) and stat.S_IMODE(mode) & 0o077:
                found.append(f"{path.relative_to(data_dir.parent)} {stat.S_IMODE(mode):04o}")
    return sorted(set(found))


def test_init_creates_everything_private(tmp_path: Path) -> None:
    with loose_umask():
        result = init_data_dir(tmp_path / "data", port=free_port())
    data_dir = result.config.data_dir
    for name in ("steward.db", "audit.key", "audit.pub", "secrets.key", "admin.token",
                 "config.json", "tls/ca.key", "tls/ca.crt", "tls/server.key",
                 "desired.git/HEAD"):
        assert (data_dir / name).exists(), name
    assert exposed(data_dir) == []


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_server_that_has_run_leaves_everything_private(backend: str, tmp_path: Path) -> None:
    with database_url(backend, tmp_path, "perms") as url, loose_umask():
        port = free_port()
        result = init_data_dir(tmp_path / "data", database_url=url,
                               repo=write_repo(tmp_path / "repo"), port=port)
        data_dir = result.config.data_dir
        SecretStore(data_dir).set("app_token", SECRET_VALUE)  # secrets.enc, loose umask
        # A file added by hand with the loose umask, as an operator might: tightened at start.
        (data_dir / "notes.txt").write_text("x\n", encoding="utf-8")
        server = Server(data_dir, result.admin_token, port=port)
        server.start()
        try:
            join = server.api("POST", "/api/v1/tokens", json={"kind": "join", "name": "j"})
            node = ok(call(server, "POST", "/api/v1/enroll", join["token"],
                           json={"certname": "web1"}))["token"]
            ok(call(server, "PUT", "/api/v1/nodes/web1/facts", node,
                    json={"values": {"os": {"family": "Debian"}}}))
            ok(call(server, "GET", "/api/v1/nodes/web1/catalog", node))
            planner = create_identity(server, "planner1", "agent", "planner")
            change = ok(call(server, "POST", "/api/v1/changes", planner, json={
                "environment": "staging", "title": "Greeting",
                "edits": {"profiles/app.yaml": (tmp_path / "repo" / "profiles" / "app.yaml")
                          .read_text(encoding="utf-8").replace("hello", "ahoy")}}))
            assert change["id"]
            assert exposed(data_dir) == []
            if backend == "sqlite":  # this test's database is beside the data directory
                database = Path(str(make_url(url).database))
                sidecars = [Path(f"{database}{suffix}") for suffix in ("", "-wal", "-shm")]
                assert all(path.exists() for path in sidecars)
                assert {oct(stat.S_IMODE(path.stat().st_mode)) for path in sidecars} \
                    == {"0o600"}
        finally:
            server.stop()
    assert (data_dir / "audit-witness.jsonl").stat().st_size > 0
    assert exposed(data_dir) == []
