"""The tamper-evident audit log on SQLite and PostgreSQL: chain, checkpoints, verification.

Tampering is done as an attacker with database access would: the append-only triggers are
lifted and rows are edited with raw SQL.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, insert, select, text, update

from steward.access import tables
from steward.access.audit import AuditLog
from steward.access.audit_entries import (
    ENTRY_DOMAIN,
    GENESIS_HASH,
    AuditError,
    EntryFields,
    encode_parameters,
    entry_document,
    entry_hash,
)
from steward.access.checkpoints import Checkpoint, ensure_audit_key, key_id
from steward.access.principal import Principal
from steward.access.tokens import new_token
from steward.access.witness import WITNESS_FILE, Witness
from steward.catalog.canonical import canonical_json
from steward.catalog.redaction import REDACTED, is_secret_key
from steward.server.db import SERVER_ENGINE
from steward.server.migrate import MIGRATIONS, migrate
from steward.store.db import make_engine
from tests.e2e.harness import database_url

BACKENDS = ["sqlite", "postgresql"]


@dataclass
class AuditDb:
    url: str
    engine: Engine
    log: AuditLog
    data_dir: Path

    def rows(self) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(tables.audit).order_by(tables.audit.c.id)))


@pytest.fixture(params=BACKENDS)
def audit_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuditDb]:
    with database_url(str(request.param), tmp_path, "audit") as url:
        engine = make_engine(url, **SERVER_ENGINE)
        migrate(engine)
        key = ensure_audit_key(tmp_path)
        try:
            log = AuditLog(engine, key_path=key, checkpoint_interval=None,
                           witness=Witness(path=tmp_path / WITNESS_FILE))
            yield AuditDb(url, engine, log, tmp_path)
        finally:
            engine.dispose()


def attack(engine: Engine, *statements: str, params: dict[str, Any] | None = None) -> None:
    """Run raw SQL with the append-only triggers lifted, as a database admin could."""
    with engine.begin() as conn:
        sqlite = conn.dialect.name == "sqlite"
        for table in ("steward_audit", "steward_audit_checkpoints"):
            if sqlite:
                conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_update"))
                conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_delete"))
            else:
                conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        for statement in statements:
            conn.execute(text(statement), params or {})
        if not sqlite:
            for table in ("steward_audit", "steward_audit_checkpoints"):
                conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))


def fill(log: AuditLog, count: int, *, every: int = 5, **extra: Any) -> None:
    """Append ``count`` entries, checkpointing each time the log reaches a multiple of
    ``every`` (what the background writer does by time, done here by count)."""
    for i in range(count):
        entry = log.record(actor=Principal.authenticated("operator", "t1", "alice"),
                           action="node.run", target=f"node:web{i}", outcome="succeeded",
                           parameters={"noop": i % 2 == 0, "n": i}, remote="127.0.0.1",
                           **extra)
        if every and entry["id"] % every == 0:
            log.checkpoint()


def rehash_from(engine: Engine, first: int) -> None:
    """The thorough attacker: recompute every hash from entry ``first`` on, and the head."""
    with engine.connect() as conn:
        rows = list(conn.execute(select(tables.audit).where(tables.audit.c.id >= first - 1)
                                 .order_by(tables.audit.c.id)))
    prev = rows[0].entry_hash if first > 1 else GENESIS_HASH
    statements, values = [], {}
    for row in rows if first == 1 else rows[1:]:
        digest = entry_hash(EntryFields(
            id=row.id, at=row.at, actor=row.actor, actor_kind=row.actor_kind,
            action=row.action, target=row.target, parameters=row.parameters,
            outcome=row.outcome, reason=row.reason, remote=row.remote,
            request_id=row.request_id), prev)
        statements.append(f"UPDATE steward_audit SET prev_hash = :p{row.id}, "
                          f"entry_hash = :h{row.id} WHERE id = {row.id}")
        values[f"p{row.id}"], values[f"h{row.id}"] = prev, digest
        prev = digest
    # The unique index on prev_hash forbids the intermediate states of an in-place update.
    attack(engine, "UPDATE steward_audit SET prev_hash = 'x' || id, entry_hash = NULL "
                   f"WHERE id >= {first}", *statements,
           f"UPDATE steward_audit_head SET last_hash = '{prev}'", params=values)


# -- the chain ---------------------------------------------------------------------------------


def test_entries_form_a_hash_chain_with_signed_checkpoints(audit_db: AuditDb) -> None:
    fill(audit_db.log, 12)
    rows = audit_db.rows()
    assert [r.id for r in rows] == list(range(1, 13))
    prev = GENESIS_HASH
    for row in rows:
        assert row.prev_hash == prev
        fields = EntryFields(id=row.id, at=row.at, actor=row.actor, actor_kind=row.actor_kind,
                             action=row.action, target=row.target, parameters=row.parameters,
                             outcome=row.outcome, reason=row.reason, remote=row.remote,
                             request_id=row.request_id)
        document = canonical_json(entry_document(fields, prev)).encode("utf-8")
        assert row.entry_hash == hashlib.sha256(ENTRY_DOMAIN + document).hexdigest()
        prev = row.entry_hash
    assert audit_db.log.head() == (12, prev)
    checkpoints = audit_db.log.checkpoints()
    assert [(c.id, c.size) for c in checkpoints] == [(1, 5), (2, 10)]
    assert checkpoints[0].prev_signature is None
    assert checkpoints[1].prev_signature == checkpoints[0].signature
    assert checkpoints[1].head_hash == rows[9].entry_hash
    result = audit_db.log.verify()
    assert result.ok, result.problems
    assert (result.entries_checked, result.checkpoints_checked) == (12, 2)


def test_record_keeps_the_old_signature_and_fills_the_new_fields(audit_db: AuditDb) -> None:
    identity = Principal.authenticated("node", "t9", "web1", "web1")
    entry = audit_db.log.record(actor=identity, action="GET /api/v1/nodes/web2/catalog",
                                target="web2", outcome="denied", reason="not yours",
                                remote="10.0.0.1")
    assert entry["actor"] == "node:web1"
    assert entry["actor_kind"] == "node"
    assert entry["parameters"] is None
    assert len(entry["request_id"]) == 32
    anonymous = audit_db.log.record(actor=None, action="whoami", target=None,
                                    outcome="denied", request_id="req-1")
    assert anonymous["actor"] == "anonymous"
    assert anonymous["request_id"] == "req-1"
    agent = audit_db.log.record(actor="planner-bot", actor_kind="agent", action="propose",
                                target="change:chg-3", outcome="succeeded",
                                parameters={"environment": "production"}, request_id="req-1")
    assert (agent["actor"], agent["actor_kind"]) == ("planner-bot", "agent")
    assert [e["id"] for e in audit_db.log.entries(request_id="req-1")] == [3, 2]
    with pytest.raises(ValueError, match="outcome"):
        audit_db.log.record(actor=None, action="x", target=None, outcome="maybe")


def test_a_caller_can_record_inside_its_own_transaction(audit_db: AuditDb) -> None:
    def change_that_fails() -> None:
        with audit_db.engine.begin() as conn:
            audit_db.log.record(actor="x", action="approve", target="change:chg-1",
                                outcome="succeeded", conn=conn)
            raise RuntimeError("the caller's change fails")

    with pytest.raises(RuntimeError):
        change_that_fails()
    assert audit_db.rows() == []
    assert audit_db.log.head() == (0, GENESIS_HASH)
    with audit_db.engine.begin() as conn:
        audit_db.log.record(actor="x", action="approve", target="change:chg-1",
                            outcome="succeeded", conn=conn)
    assert audit_db.log.verify().ok


def test_concurrent_writers_never_fork_the_chain(audit_db: AuditDb) -> None:
    # The background writer signs while 8 threads append: at most once per 0.2 s.
    log = AuditLog(audit_db.engine, key_path=audit_db.log.key_path, checkpoint_interval=0.2,
                   witness=audit_db.log.witness)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def writer(n: int) -> None:
        try:
            start.wait()
            for i in range(25):
                log.record(actor=f"writer{n}", action="write", target=f"node:n{n}-{i}",
                           outcome="allowed", parameters={"i": i})
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    rows = audit_db.rows()
    assert [r.id for r in rows] == list(range(1, 201))
    assert len({r.prev_hash for r in rows}) == 200
    assert all(rows[i].prev_hash == rows[i - 1].entry_hash for i in range(1, 200))
    log.close()  # the last checkpoint
    sizes = [c.size for c in log.checkpoints()]
    assert sizes == sorted(set(sizes))
    assert sizes[-1] == 200
    result = log.verify()
    assert result.ok, result.problems
    assert result.entries_checked == 200


def test_the_database_refuses_a_fork_even_from_a_writer_that_bypasses_the_log(
        audit_db: AuditDb) -> None:
    fill(audit_db.log, 2)
    first = audit_db.rows()[0]
    values = {c: getattr(first, c) for c in first._fields}
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), audit_db.engine.begin() as conn:
        conn.execute(insert(tables.audit).values({**values, "id": 99, "entry_hash": "f" * 64}))


# -- what verification detects ----------------------------------------------------------------


def test_an_edited_entry_is_detected(audit_db: AuditDb) -> None:
    fill(audit_db.log, 10)
    attack(audit_db.engine, "UPDATE steward_audit SET outcome = 'denied' WHERE id = 4")
    result = audit_db.log.verify()
    assert not result.ok
    assert result.first_bad_entry == 4
    assert result.problems == [{"entry_id": 4, "problem": "entry 4 was edited: its content "
                                                          "does not match its hash"}]


def test_an_edited_parameter_is_detected(audit_db: AuditDb) -> None:
    fill(audit_db.log, 3)
    attack(audit_db.engine, "UPDATE steward_audit SET parameters = :p WHERE id = 2",
           params={"p": '{"n": 1, "noop": false}'})
    assert audit_db.log.verify().first_bad_entry == 2


def test_a_deleted_entry_is_detected(audit_db: AuditDb) -> None:
    fill(audit_db.log, 10)
    attack(audit_db.engine, "DELETE FROM steward_audit WHERE id = 6")
    result = audit_db.log.verify()
    assert not result.ok
    assert result.first_bad_entry == 6
    assert "entry 6 is missing" in result.problems[0]["problem"]
    assert result.entries_checked == 9


def test_deleting_the_first_entry_is_detected(audit_db: AuditDb) -> None:
    fill(audit_db.log, 3)
    attack(audit_db.engine, "DELETE FROM steward_audit WHERE id = 1")
    assert audit_db.log.verify().first_bad_entry == 1


def test_truncation_is_detected_by_the_head_and_the_checkpoints(audit_db: AuditDb) -> None:
    fill(audit_db.log, 12)  # checkpoints at 5 and 10
    attack(audit_db.engine, "DELETE FROM steward_audit WHERE id > 8")
    result = audit_db.log.verify()
    assert result.first_bad_entry == 9
    assert any("truncation" in p["problem"] for p in result.problems)
    # The attacker also moves the head back: checkpoint 2 still covers entries 9 and 10.
    eighth = audit_db.rows()[-1]
    attack(audit_db.engine, "UPDATE steward_audit_head SET last_id = 8, last_hash = :h",
           params={"h": eighth.entry_hash})
    result = audit_db.log.verify()
    assert result.problems[0] == {
        "entry_id": 9,
        "problem": "checkpoint 2 (entries 1..10) is beyond the last entry 8: entries 9..10 "
                   "were deleted (truncation)",
    }
    # The witness file too, even if the checkpoint rows were dropped as well.
    attack(audit_db.engine, "DELETE FROM steward_audit_checkpoints")
    result = audit_db.log.verify()
    assert [p["entry_id"] for p in result.problems] == [9]
    assert "entries 9..10 are missing: the witness" in result.problems[0]["problem"]


def test_a_rewrite_with_recomputed_hashes_is_caught_by_the_checkpoints(
        audit_db: AuditDb) -> None:
    log = audit_db.log
    fill(log, 7, every=2)  # checkpoints at 2, 4, 6
    attack(audit_db.engine, "UPDATE steward_audit SET reason = 'nothing to see' WHERE id = 3")
    rehash_from(audit_db.engine, 3)
    result = log.verify()
    assert not result.ok
    assert result.first_bad_entry == 3
    assert "entries 3..4 were rewritten" in result.problems[0]["problem"]
    # Every entry is consistent on its own: only the signed heads give the rewrite away.
    assert all("rewritten" in p["problem"] for p in result.problems)


def test_a_forged_checkpoint_is_detected(audit_db: AuditDb) -> None:
    fill(audit_db.log, 7)  # checkpoint 1 at 5
    rehash_from(audit_db.engine, 2)
    rows = audit_db.rows()
    genuine = audit_db.log.checkpoints()[0]
    # Re-signing needs the key: the attacker signs with its own.
    forger = Ed25519PrivateKey.generate()
    forged = Checkpoint(id=1, size=5, head_hash=rows[4].entry_hash, at=genuine.at,
                        prev_signature=None, key_id=key_id(forger.public_key()))
    signature = forger.sign(forged.message()).hex()
    attack(audit_db.engine,
           "UPDATE steward_audit_checkpoints SET head_hash = :h, key_id = :k, signature = :s "
           "WHERE id = 1", params={"h": forged.head_hash, "k": forged.key_id, "s": signature})
    problems = audit_db.log.verify().problems
    assert any("not this log's key" in p["problem"] for p in problems), problems
    # Or it claims the genuine key id: the signature does not verify.
    attack(audit_db.engine, "UPDATE steward_audit_checkpoints SET key_id = :k WHERE id = 1",
           params={"k": genuine.key_id})
    problems = audit_db.log.verify().problems
    assert any("signature is invalid" in p["problem"] for p in problems), problems


def test_a_checkpoint_chain_with_a_removed_link_is_detected(audit_db: AuditDb) -> None:
    fill(audit_db.log, 16)  # checkpoints at 5, 10, 15
    attack(audit_db.engine, "DELETE FROM steward_audit_checkpoints WHERE id = 2")
    problems = audit_db.log.verify().problems
    assert any("checkpoints 2..2 are missing" in p["problem"] for p in problems)


def test_verification_needs_the_key_to_trust_checkpoints(audit_db: AuditDb) -> None:
    fill(audit_db.log, 5)
    keyless = AuditLog(audit_db.engine)
    result = keyless.verify()
    assert not result.ok
    assert "no public key" in result.problems[0]["problem"]
    public = audit_db.log.signing_key().public_key()
    assert keyless.verify(public_key=public).ok


def test_checkpoints_on_demand(audit_db: AuditDb) -> None:
    with pytest.raises(AuditError, match="empty"):
        audit_db.log.checkpoint()
    fill(audit_db.log, 3)
    first = audit_db.log.checkpoint()
    assert (first.id, first.size) == (1, 3)
    assert audit_db.log.checkpoint() == first  # nothing new: the same head
    fill(audit_db.log, 2)  # entry 5 is an automatic one
    assert [(c.id, c.size) for c in audit_db.log.checkpoints()] == [(1, 3), (2, 5)]
    assert audit_db.log.verify().ok


def test_the_signing_key_is_private_and_made_once(tmp_path: Path) -> None:
    path = ensure_audit_key(tmp_path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    before = path.read_bytes()
    assert ensure_audit_key(tmp_path) == path
    assert path.read_bytes() == before
    assert b"PUBLIC KEY" in (tmp_path / "audit.pub").read_bytes()


# -- legacy rows -------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_migration_chains_entries_written_before_the_chain(backend: str,
                                                               tmp_path: Path) -> None:
    with database_url(backend, tmp_path, "audit_legacy") as url:
        engine = make_engine(url, **SERVER_ENGINE)
        try:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            with engine.begin() as conn:
                config.attributes["connection"] = conn
                command.upgrade(config, "0001")
            with engine.begin() as conn:
                for rid in (1, 2, 5):  # a sequence skips the ids of rolled-back inserts
                    conn.execute(text(
                        "INSERT INTO steward_audit (id, at, actor, actor_kind, action, target, "
                        "outcome, reason, remote) VALUES (:id, :at, 'admin:admin', 'admin', "
                        "'GET /api/v1/nodes', NULL, 'allowed', NULL, '127.0.0.1')"),
                        {"id": rid, "at": datetime(2025, 1, rid, tzinfo=UTC).replace(
                            tzinfo=None if backend == "sqlite" else UTC)})
            migrate(engine)
            log = AuditLog(engine, key_path=ensure_audit_key(tmp_path))
            assert log.verify().ok
            new = log.record(actor="admin:admin", action="after", target=None,
                             outcome="allowed")
            assert new["id"] == 6
            assert log.verify().ok
            attack(engine, "DELETE FROM steward_audit WHERE id = 2")
            result = log.verify()
            assert result.first_bad_entry == 5
            assert "does not link to entry 1" in result.problems[0]["problem"]
        finally:
            engine.dispose()


# -- redaction ----------------------------------------------------------------------------------


def test_secrets_are_redacted_from_parameters_reason_and_target(audit_db: AuditDb) -> None:
    token = new_token("admin")
    entry = audit_db.log.record(
        actor="admin:admin", action="token.create", target=f"token:{token}",
        outcome="succeeded", reason=f"used {token} to log in",
        parameters={
            "password": "hunter2", "name": "ci", "nested": {"apiKey": "k-123",
                                                            "ssh_private_key": "-----BEGIN"},
            "list": [token, {"client-secret": "s"}], "database": "postgresql://u:pw@db/x",
            "header": "Bearer abcdefghijklmnop", "count": 3, "ratio": float("nan"),
            "tokens": ["a", "b"], "keyboard": "qwerty",
        })
    with audit_db.engine.connect() as conn:
        stored = conn.execute(text("SELECT parameters, reason, target FROM steward_audit"
                                   )).one()
    for secret in (token, "hunter2", "k-123", "BEGIN", ":pw@", "abcdefghijklmnop"):
        assert secret not in "".join(stored), secret
    assert entry["parameters"] == {
        "password": REDACTED, "name": "ci",
        "nested": {"apiKey": REDACTED, "ssh_private_key": REDACTED},
        "list": [REDACTED, {"client-secret": REDACTED}],
        "database": f"postgresql://u:{REDACTED}@db/x", "header": f"Bearer {REDACTED}",
        "count": 3, "ratio": "nan", "tokens": REDACTED, "keyboard": "qwerty",
    }
    assert entry["reason"] == f"used {REDACTED} to log in"
    assert entry["target"] == f"token:{REDACTED}"
    assert audit_db.log.verify().ok


@pytest.mark.parametrize(("name", "sensitive"), [
    ("password", True), ("db_password", True), ("apiToken", True), ("client-secret", True),
    ("sshKey", True), ("ssh_key_file", True), ("tokens", True), ("Authorization", True),
    ("secret_id", True), ("password_hash", True),
    ("token_id", False), ("tokenId", False), ("key_kind", False), ("secret_name", False),
    ("keyboard", False), ("monkey", False), ("environment", False), ("name", False),
])
def test_which_keys_are_credentials(name: str, sensitive: bool) -> None:
    assert is_secret_key(name) is sensitive


_KEY = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEY, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(document=st.dictionaries(_KEY, _JSON, max_size=6),
       secret_key=st.sampled_from(["password", "db_password", "apiToken", "SECRET", "key",
                                   "x-api-key", "privateKey", "credentials"]))
def test_no_sensitive_value_or_token_survives_redaction(document: dict[str, Any],
                                                        secret_key: str) -> None:
    token = new_token("node")
    document = {**document, secret_key: "the-secret-value", "note": f"x {token} y",
                "deep": [{secret_key: {"a": "the-secret-value"}}]}
    stored = encode_parameters(document)
    assert stored is not None
    assert "the-secret-value" not in stored
    assert token not in stored
    assert stored == canonical_json(json.loads(stored))  # canonical, so hashing is exact
    assert is_secret_key(secret_key)


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(id_=st.integers(1, 2**62), at=st.datetimes(timezones=st.just(UTC)),
       strings=st.tuples(_TEXT, _TEXT, _TEXT, _TEXT, _TEXT),
       optional=st.tuples(*(st.none() | _TEXT for _ in range(5))),
       prev=st.text("0123456789abcdef", min_size=64, max_size=64))
def test_the_fast_hash_is_the_documented_canonical_json(
        id_: int, at: datetime, strings: tuple[str, ...], optional: tuple[str | None, ...],
        prev: str) -> None:
    fields = EntryFields(id=id_, at=at, actor=strings[0], actor_kind=strings[1],
                         action=strings[2], outcome=strings[3], target=optional[0],
                         parameters=optional[1], reason=optional[2], remote=optional[3],
                         request_id=optional[4])
    document = canonical_json(entry_document(fields, prev)).encode("utf-8")
    assert entry_hash(fields, prev) == hashlib.sha256(ENTRY_DOMAIN + document).hexdigest()


# -- reading -----------------------------------------------------------------------------------


def test_entries_filter_by_target_prefix_and_request(audit_db: AuditDb) -> None:
    for target in ("change:chg-3", "change:chg-3/node:web1", "change:chg-30",
                   "change:chg-3:approval", "node:web1", "change:chg_3"):
        audit_db.log.record(actor="x", action="a", target=target, outcome="allowed",
                            request_id=f"r-{target}")
    trace = audit_db.log.for_target("change:chg-3")
    assert [e["target"] for e in trace] == ["change:chg-3", "change:chg-3/node:web1",
                                            "change:chg-3:approval"]
    assert [e["target"] for e in audit_db.log.for_target("node:")] == ["node:web1"]
    assert [e["target"] for e in audit_db.log.for_target("change:")][-1] == "change:chg_3"
    assert [e["target"] for e in audit_db.log.entries(request_id="r-node:web1")] == \
        ["node:web1"]
    assert [e["id"] for e in audit_db.log.entries(limit=2)] == [6, 5]
    assert [e["id"] for e in audit_db.log.entries(after_id=4, oldest_first=True)] == [5, 6]


def test_audit_entries_are_queryable_in_pql(audit_db: AuditDb) -> None:
    from steward.server.services import open_store

    log = audit_db.log
    node = Principal.authenticated("node", "n", "web1", "web1")
    log.record(actor=node, action="catalog", target="node:web2", outcome="denied",
               reason="not yours", parameters={"environment": "production", "limit": 10})
    log.record(actor="admin:admin", action="token.create", target="token:abc",
               outcome="succeeded", parameters={"kind": "join"})
    log.record(actor=node, action="facts", target="node:web1", outcome="allowed")
    log.record(actor=None, action="whoami", target=None, outcome="denied")
    store = open_store(audit_db.url)
    try:
        assert store.query('audit[actor, action] { outcome = "denied" }') == [
            {"actor": "node:web1", "action": "catalog"},
            {"actor": "anonymous", "action": "whoami"},
        ]
        rows = store.query('audit { parameters.environment = "production" }')
        assert len(rows) == 1
        row = rows[0]
        assert set(row) == {"id", "at", "actor", "actor_kind", "action", "target", "outcome",
                            "reason", "remote", "request_id", "parameters"}
        assert row["parameters"] == {"environment": "production", "limit": 10}
        assert row["id"] == 1
        assert row["at"].endswith("Z")
        assert store.query("audit[id] { parameters.limit > 5 }") == [{"id": 1}]
        assert store.query('audit[actor_kind, count()] { action ~ "^(catalog|facts)$" '
                           "group by actor_kind }") == [{"actor_kind": "node", "count": 2}]
        assert store.query('audit[id] { at > "2000-01-01T00:00:00Z" and target ~ "^token:" '
                           "}") == [{"id": 2}]
        assert store.query("audit[id] { parameters is null order by id desc }") == \
            [{"id": 4}, {"id": 3}]
    finally:
        store.close()


def test_verifying_100k_entries_takes_seconds(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'big.db'}", **SERVER_ENGINE)
    try:
        migrate(engine)
        log = AuditLog(engine, key_path=ensure_audit_key(tmp_path), checkpoint_interval=None)
        fill(log, 3)
        last_id, last_hash = log.head()
        start, rows = datetime.now(UTC), []
        for i in range(last_id + 1, 100_001):
            fields = EntryFields(id=i, at=start + timedelta(microseconds=i),
                                 actor="operator:bob", actor_kind="operator",
                                 action="GET /api/v1/nodes", target=f"node:web{i % 100}",
                                 parameters='{"limit":10}', outcome="allowed", reason=None,
                                 remote="127.0.0.1", request_id=f"{i:032x}")
            digest = entry_hash(fields, last_hash)
            rows.append({name: getattr(fields, name) for name in fields.__slots__}
                        | {"prev_hash": last_hash, "entry_hash": digest})
            last_id, last_hash = i, digest
        with engine.begin() as conn:
            conn.execute(insert(tables.audit), rows)
            conn.execute(update(tables.audit_head).values(last_id=last_id, last_hash=last_hash))
        log.checkpoint()
        began = time.perf_counter()
        result = log.verify()
        elapsed = time.perf_counter() - began
        assert result.ok
        assert result.entries_checked == 100_000
        assert elapsed < 15, f"verify took {elapsed:.1f}s"
    finally:
        engine.dispose()


# -- the command line ------------------------------------------------------------------------


@pytest.fixture
def data_dir(audit_db: AuditDb) -> Path:
    """A data directory whose config points at the test database (what the CLI reads)."""
    (audit_db.data_dir / "config.json").write_text(json.dumps({
        "format": 1, "database_url": audit_db.url, "repo": "repo",
    }), encoding="utf-8")
    return audit_db.data_dir


def test_cli_verify_exit_codes(audit_db: AuditDb, data_dir: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    from steward.cli.main import run

    fill(audit_db.log, 6)
    assert run(["audit", "verify", "--data-dir", str(data_dir)]) == 0
    assert "audit log intact: 6 entries, 1 signed checkpoints" in capsys.readouterr().out
    assert run(["audit", "checkpoint", "--data-dir", str(data_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["size"] == 6
    assert run(["audit", "log", "--data-dir", str(data_dir), "--json", "--limit", "2"]) == 0
    assert [e["id"] for e in json.loads(capsys.readouterr().out)] == [5, 6]
    assert run(["audit", "log", "--data-dir", str(data_dir), "--actor", "nobody"]) == 0
    assert "(no entries)" in capsys.readouterr().out

    attack(audit_db.engine, "UPDATE steward_audit SET target = 'node:db1' WHERE id = 3")
    assert run(["audit", "verify", "--data-dir", str(data_dir)]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out
    assert "first bad entry: 3" in out
    assert "entry 3: entry 3 was edited" in out
    assert run(["audit", "verify", "--data-dir", str(data_dir), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["first_bad_entry"] == 3

    assert run(["audit", "verify", "--data-dir", str(data_dir / "missing")]) == 2
    assert "not a Steward data directory" in capsys.readouterr().err
