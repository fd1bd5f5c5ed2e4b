"""The audit log against someone with write access to the database, on a fresh install.

Each test starts a real server (uvicorn, TLS) on a fresh data directory, lets it write a
handful of audit entries through ordinary requests (no checkpoint has ever been taken by
hand), then plays the attacker on the database with the append-only triggers lifted, as a
database administrator could, but without ``audit.key``. ``steward audit verify`` (the CLI,
reading the database and the witness file directly) must name what was done. Tests that
need a second checkpoint give the server a :class:`ManualClock` and move it past the
checkpoint interval instead of sleeping through it.
"""

from __future__ import annotations

import contextlib
import http.server
import itertools
import json
import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from steward.access import tables
from steward.access.audit import AuditLog
from steward.access.checkpoints import KEY_FILE, Checkpoint
from steward.access.witness import Witness
from steward.cli.main import run
from steward.clock import ManualClock
from steward.server.app import create_app
from steward.server.config import ServerConfig, load_config
from steward.server.db import SERVER_ENGINE
from steward.server.errors import ConfigError
from steward.server.services import build_services
from steward.store.db import make_engine
from tests.access.test_audit import attack, rehash_from
from tests.e2e.harness import database_url, init_data_dir
from tests.server.serving import serving

BACKENDS = ["sqlite", "postgresql"]


@dataclass
class Install:
    config: ServerConfig
    client: httpx.Client
    engine: Engine
    admin_token: str
    #: The server's clock when the test moves time itself (None: the real one).
    clock: ManualClock | None = None

    def request(self, count: int) -> None:
        """``count`` audited requests: the admin making a join token, and a refused token."""
        for i in range(count):
            if i % 2 == 0:
                response = self.client.post(
                    "/api/v1/tokens", json={"kind": "join", "name": f"j{i}"},
                    headers={"Authorization": f"Bearer {self.admin_token}"})
                assert response.status_code == 201, response.text
            else:
                response = self.client.get(
                    "/api/v1/nodes", headers={"Authorization": "Bearer stwa_" + "x" * 43})
                assert response.status_code == 401, response.text

    def head(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(tables.audit_head.c.last_id)).scalar_one())

    def witnessed(self) -> list[Checkpoint]:
        lines = Witness(path=self.config.audit_witness_path).read() or []
        return [line.checkpoint for line in lines if line.checkpoint is not None]

    def wait_witnessed(self, timeout: float = 10.0) -> Checkpoint:
        """The witness line that covers the current head, once the server has written it."""
        deadline = time.monotonic() + timeout
        while True:
            head = self.head()
            covering = [cp for cp in self.witnessed() if cp.size >= head]
            if covering:
                return covering[-1]
            assert time.monotonic() < deadline, f"entry {head} was not witnessed in {timeout}s"
            time.sleep(0.05)

    def pass_interval(self) -> None:
        """Move the server's clock past the checkpoint interval: the next one is due."""
        assert self.clock is not None, "use the manual_install fixture"
        self.clock.advance((self.config.audit_checkpoint_interval or 0.0) + 0.1)

    def verify(self, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any], str]:
        """``steward audit verify``: exit status, its JSON, and its text."""
        capsys.readouterr()
        status = run(["audit", "verify", "--data-dir", str(self.config.data_dir), "--json"])
        document = json.loads(capsys.readouterr().out)
        assert run(["audit", "verify", "--data-dir", str(self.config.data_dir)]) == status
        return status, document, capsys.readouterr().out


@contextlib.contextmanager
def served(config: ServerConfig, clock: ManualClock | None) -> Iterator[httpx.Client]:
    """The server of ``config``, on ``clock`` when given (its services closed after it)."""
    if clock is None:
        with serving(create_app(config), config) as client:
            yield client
        return
    services = build_services(config, clock=clock)
    try:
        with serving(create_app(config, services=services), config) as client:
            yield client
    finally:
        services.close()


@contextlib.contextmanager
def installed(backend: str, tmp_path: Path, clock: ManualClock | None) -> Iterator[Install]:
    with database_url(backend, tmp_path, "witness") as url:
        data_dir, admin_token = init_data_dir(tmp_path, url)
        config = load_config(data_dir)
        engine = make_engine(url, **SERVER_ENGINE)
        try:
            with served(config, clock) as client:
                yield Install(config, client, engine, admin_token, clock)
        finally:
            engine.dispose()


@pytest.fixture(params=BACKENDS)
def install(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Install]:
    with installed(str(request.param), tmp_path, None) as install:
        yield install


@pytest.fixture(params=BACKENDS)
def manual_install(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Install]:
    """An install whose server runs on a :class:`ManualClock`: time moves when told to."""
    with installed(str(request.param), tmp_path, ManualClock()) as install:
        yield install


def problems_of(document: dict[str, Any]) -> list[str]:
    return [str(p["problem"]) for p in document["problems"]]


def test_a_fresh_install_witnesses_every_append_within_a_second(
        install: Install, capsys: pytest.CaptureFixture[str]) -> None:
    install.request(5)
    started = time.monotonic()
    cp = install.wait_witnessed()
    assert time.monotonic() - started < 3
    status, document, text = install.verify(capsys)
    assert status == 0, document
    assert document["witnessed_checkpoint"]["size"] == cp.size == document["last_entry"]
    assert document["unwitnessed_entries"] == 0
    assert f"witnessed through entry {cp.size}" in text
    # The signing key is in the data directory, never in the database.
    key = (install.config.data_dir / KEY_FILE).read_bytes()
    with install.engine.connect() as conn:
        for table in (tables.audit, tables.audit_checkpoints, tables.audit_head):
            dump = repr(list(conn.execute(select(table))))
            assert "PRIVATE KEY" not in dump
            assert key.decode() not in dump


def test_deleting_the_tail_is_caught_and_the_missing_entries_named(
        install: Install, capsys: pytest.CaptureFixture[str]) -> None:
    install.request(6)
    cp = install.wait_witnessed()
    keep = cp.size - 3
    with install.engine.connect() as conn:
        kept_hash = conn.execute(select(tables.audit.c.entry_hash)
                                 .where(tables.audit.c.id == keep)).scalar_one()
    # The thorough attacker: the tail, the checkpoint rows and the head all go back.
    attack(install.engine, f"DELETE FROM steward_audit WHERE id > {keep}",
           "DELETE FROM steward_audit_checkpoints",
           "UPDATE steward_audit_head SET last_id = :i, last_hash = :h",
           params={"i": keep, "h": kept_hash})
    status, document, text = install.verify(capsys)
    assert status == 1
    assert document["first_bad_entry"] == keep + 1
    assert any(f"entries {keep + 1}..{cp.size} are missing: the witness" in p
               and "(truncation)" in p for p in problems_of(document)), document
    assert f"entry {keep + 1}: entries {keep + 1}..{cp.size} are missing" in text


def test_a_chain_recomputed_after_an_edit_is_caught_by_the_witness(
        install: Install, capsys: pytest.CaptureFixture[str]) -> None:
    install.request(4)
    cp = install.wait_witnessed()
    # Edit entry 2 and recompute every hash after it, and drop the checkpoint rows it can
    # no longer sign: the chain in the database is consistent again.
    attack(install.engine, "UPDATE steward_audit SET outcome = 'allowed', reason = NULL "
                           "WHERE id = 2", "DELETE FROM steward_audit_checkpoints")
    rehash_from(install.engine, 2)
    status, document, _text = install.verify(capsys)
    assert status == 1
    found = problems_of(document)
    assert not any("was edited" in p for p in found), "the chain itself is consistent"
    assert any(f"..{cp.size} were rewritten: the witness" in p for p in found), found
    # The rewrite is placed after the last witness line that still matches (entry 1 was
    # witnessed alone if the server signed it before the next request came).
    assert document["first_bad_entry"] in (1, 2)


def test_an_edited_row_is_named(install: Install, capsys: pytest.CaptureFixture[str]) -> None:
    install.request(4)
    install.wait_witnessed()
    attack(install.engine, "UPDATE steward_audit SET actor = 'human:mallory' WHERE id = 3")
    status, document, text = install.verify(capsys)
    assert status == 1
    assert document["first_bad_entry"] == 3
    assert "entry 3: entry 3 was edited: its content does not match its hash" in text


def test_a_witness_file_cut_back_to_an_older_line_is_caught(
        manual_install: Install, capsys: pytest.CaptureFixture[str]) -> None:
    install = manual_install
    install.request(2)
    install.pass_interval()
    install.wait_witnessed()
    install.pass_interval()
    install.request(2)
    install.pass_interval()
    install.wait_witnessed()
    path = install.config.audit_witness_path
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) >= 2
    path.write_bytes(lines[0])
    status, document, _text = install.verify(capsys)
    assert status == 1
    assert any("are not in the witness" in p and "cut back or edited" in p
               for p in problems_of(document)), document
    # A forged line (no key) is refused by its signature and does not count.
    forged = json.loads(lines[-1]) | {"size": 10_000}
    path.write_bytes(b"".join(lines) + json.dumps(forged).encode() + b"\n")
    status, document, _text = install.verify(capsys)
    assert status == 1
    assert any(f"{path}:{len(lines) + 1}" in p and "signature is invalid" in p
               for p in problems_of(document)), document
    assert document["witnessed_checkpoint"]["size"] < 10_000


def test_verify_counts_the_entries_newer_than_the_latest_checkpoint(
        install: Install, capsys: pytest.CaptureFixture[str]) -> None:
    install.request(3)
    cp = install.wait_witnessed()
    # Entries appended by a writer that witnesses nothing (a process that died before its
    # checkpoint): they are the unwitnessed window, reported, not a failure.
    silent = AuditLog(install.engine, checkpoint_interval=None)
    for i in range(4):
        silent.record(actor="system", action="test.append", target=f"n:{i}",
                      outcome="succeeded")
    status, document, text = install.verify(capsys)
    assert status == 0, document
    assert document["witnessed_checkpoint"]["size"] == cp.size
    assert document["unwitnessed_entries"] == document["last_entry"] - cp.size >= 4
    assert f"{document['unwitnessed_entries']} newer entries not yet witnessed" in text


def test_a_burst_of_appends_is_checkpointed_at_most_once_a_second(
        install: Install, capsys: pytest.CaptureFixture[str]) -> None:
    """Requests to the server and a second writer on the same database and witness file
    (another server process): together at most one checkpoint per second, none late."""
    other = AuditLog(install.engine, key_path=install.config.data_dir / KEY_FILE,
                     witness=Witness(path=install.config.audit_witness_path))
    stop = time.monotonic() + 3.5

    def second_process() -> None:
        while time.monotonic() < stop:
            other.record(actor="system", action="burst", target="n:other",
                         outcome="succeeded")

    thread = threading.Thread(target=second_process)
    thread.start()
    while time.monotonic() < stop:
        install.request(2)
    thread.join()
    other.close()
    install.wait_witnessed()
    witnessed = install.witnessed()
    times = [cp.at for cp in witnessed]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert len(witnessed) >= 3
    # close() signs at once; every other checkpoint waits out the interval.
    assert sum(1 for gap in gaps if gap < 0.99) <= 1, gaps
    assert len(witnessed) <= 3.5 + 3
    # Every entry was witnessed soon after it was appended: the window stays bounded.
    with install.engine.connect() as conn:
        entries = list(conn.execute(select(tables.audit.c.id, tables.audit.c.at)))
    for entry_id, stored in entries:
        at = stored if stored.tzinfo else stored.replace(tzinfo=UTC)
        first = next(cp for cp in witnessed if cp.size >= entry_id)
        assert (first.at - at).total_seconds() < 2.5, (entry_id, at, first)
    status, document, _text = install.verify(capsys)
    assert status == 0, document
    assert document["unwitnessed_entries"] == 0
    assert datetime.now(UTC) > times[-1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_external_witnesses_receive_every_checkpoint(backend: str, tmp_path: Path) -> None:
    """A command (the line on stdin) and a URL (POSTed) configured in config.json get the
    same signed lines as the witness file: a copy the database's attacker cannot reach."""
    received: list[bytes] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    collector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    copy = tmp_path / "external.jsonl"
    try:
        with database_url(backend, tmp_path, "external") as url:
            data_dir, admin_token = init_data_dir(tmp_path, url)
            document = json.loads((data_dir / "config.json").read_text(encoding="utf-8"))
            document["audit_witness_command"] = [
                sys.executable, "-c",
                f"import sys; open({str(copy)!r}, 'ab').write(sys.stdin.buffer.read())"]
            document["audit_witness_url"] = f"http://127.0.0.1:{collector.server_port}/cp"
            (data_dir / "config.json").write_text(json.dumps(document), encoding="utf-8")
            config = load_config(data_dir)
            engine = make_engine(url, **SERVER_ENGINE)
            clock = ManualClock()
            try:
                with served(config, clock) as client:
                    install = Install(config, client, engine, admin_token, clock)
                    install.request(3)
                    install.pass_interval()
                    install.wait_witnessed()
                    install.pass_interval()
                    install.request(2)
                    install.pass_interval()
                    install.wait_witnessed()
            finally:
                engine.dispose()
        local = config.audit_witness_path.read_bytes().splitlines()
        assert len(local) >= 2
        assert copy.read_bytes().splitlines() == local
        assert [line.rstrip(b"\n") for line in received] == local
    finally:
        collector.shutdown()
        collector.server_close()


def test_bad_witness_settings_are_refused_naming_the_setting(tmp_path: Path) -> None:
    data_dir, _token = init_data_dir(tmp_path, f"sqlite:///{tmp_path / 'c.db'}")
    document = json.loads((data_dir / "config.json").read_text(encoding="utf-8"))
    for setting, value, needle in (
            ("audit_witness_url", "ftp://x/", "audit_witness_url must be an http(s) URL"),
            ("audit_witness_command", "ship it", "audit_witness_command must be a list"),
            ("audit_checkpoint_interval", 0, "audit_checkpoint_interval must be in")):
        (data_dir / "config.json").write_text(json.dumps({**document, setting: value}),
                                              encoding="utf-8")
        with pytest.raises(ConfigError, match=re.escape(needle)) as caught:
            load_config(data_dir)
        assert str(data_dir / "config.json") in str(caught.value)
