"""Verifying the audit log: every entry's hash and link, the head, every checkpoint, and
the witness, in one snapshot while the server keeps appending.

What each problem means, and what verification cannot see (the unwitnessed window), is in
docs/audit.md; :func:`verify` is :meth:`steward.access.audit.AuditLog.verify`'s work.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, DateTime, Engine, Row, inspect, select, type_coerce

from steward.access import tables
from steward.access.audit_entries import (
    ENTRY_COLUMNS,
    GENESIS_HASH,
    HEAD_ID,
    AuditError,
    entry_hash,
    fields_of,
    format_time,
    hash_values,
)
from steward.access.checkpoints import Checkpoint, key_id
from steward.access.witness import Witness, WitnessLine
from steward.store import db as store_db

#: Problems listed by one verification; the rest are counted.
MAX_PROBLEMS = 1000


@dataclass(slots=True)
class VerifyResult:
    """What :meth:`AuditLog.verify` found; ``problems`` are ``{"entry_id", "problem"}``."""

    ok: bool
    entries_checked: int
    checkpoints_checked: int
    problems: list[dict[str, Any]] = field(default_factory=list)
    last_entry: int = 0
    #: The latest witnessed checkpoint that verified (None: no witness, or none in it).
    witnessed: Checkpoint | None = None
    #: Entries newer than ``witnessed`` (all of them when nothing is witnessed): the window
    #: in which a deletion or rewrite would not be detected.
    unwitnessed_entries: int = 0
    #: Where the witness was read from (None: verified without a witness).
    witness_path: str | None = None

    @property
    def first_bad_entry(self) -> int | None:
        """The lowest entry id any problem names (None when no entry is named)."""
        ids = [p["entry_id"] for p in self.problems if p["entry_id"] is not None]
        return min(ids) if ids else None

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries_checked": self.entries_checked,
                "checkpoints_checked": self.checkpoints_checked,
                "last_entry": self.last_entry, "first_bad_entry": self.first_bad_entry,
                "problems": self.problems, "witness": self.witness_path,
                "witnessed_checkpoint": self.witnessed.to_json() if self.witnessed else None,
                "unwitnessed_entries": self.unwitnessed_entries}


class Problems:
    """What one verification found so far, at most :data:`MAX_PROBLEMS` of it listed."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.suppressed = 0

    def add(self, entry_id: int | None, problem: str) -> None:
        if len(self.items) < MAX_PROBLEMS:
            self.items.append({"entry_id": entry_id, "problem": problem})
        else:
            self.suppressed += 1

    def result(self) -> list[dict[str, Any]]:
        items = sorted(self.items, key=lambda p: (p["entry_id"] is None, p["entry_id"] or 0))
        if self.suppressed:
            items.append({"entry_id": None,
                          "problem": f"{self.suppressed} more problems are not listed"})
        return items


def verify(engine: Engine, witness: Witness | None, public_key: Ed25519PublicKey | None,
           *, batch: int = 5000) -> VerifyResult:
    """Check every entry's hash and link, the head, every checkpoint and the witness.

    Detects edited entries (hash mismatch), deleted ones (id gap, broken link),
    truncation (a checkpoint or the head beyond the last entry) and rewrites that
    recomputed the hashes (a checkpoint's head no longer matches). Without ``public_key``
    checkpoints cannot be trusted and each is reported. Streams the log in batches of
    ``batch`` rows.
    """
    problems = Problems()
    # Read before the snapshot: every witnessed entry is then in it (lines are written
    # after their entries commit). Read again after: every checkpoint row in the
    # snapshot is then in the file (lines are fsynced before their rows commit).
    before = witness.read() if witness is not None else None
    path = witness.path if witness is not None else None
    with _snapshot(engine) as conn:
        _check_schema(conn)
        head = conn.execute(select(tables.audit_head)
                            .where(tables.audit_head.c.id == HEAD_ID)).one_or_none()
        checkpoints = [Checkpoint.from_row(row) for row in conn.execute(
            select(tables.audit_checkpoints).order_by(tables.audit_checkpoints.c.id))]
        after = witness.read() if witness is not None else None
        witnessed = _check_witness_lines(before, path, public_key, problems)
        legacy = head.legacy_through if head is not None else 0
        signed_sizes = {c.size for c in checkpoints} | {w.size for _, w in witnessed}
        hashes_at: dict[int, str | None] = {}
        count, last_id, last_hash = 0, 0, GENESIS_HASH
        for rows in _batches(conn, batch):
            count += len(rows)
            for row in rows:
                (rid, at, actor, actor_kind, action, target, parameters, outcome, reason,
                 remote, request_id, prev, stored) = row
                if (rid != last_id + 1 or prev != last_hash or stored is None
                        or hash_values(rid, format_time(at), actor, actor_kind, action,
                                       target, parameters, outcome, reason, remote,
                                       request_id, prev) != stored):
                    _check_entry(row, last_id, last_hash, legacy, problems)
                if rid in signed_sizes:
                    hashes_at[rid] = stored
                last_id, last_hash = rid, stored or ""
    _check_head(head, last_id, last_hash, problems)
    _check_checkpoints(checkpoints, hashes_at, last_id, public_key, problems)
    latest: Checkpoint | None = None
    witness_path = None
    if witness is not None:
        witness_path = str(witness.path)
        latest = _check_witnessed(witnessed, path, hashes_at, last_id, problems)
        _check_witness_complete(after, path, checkpoints, problems)
    listed = problems.result()
    return VerifyResult(ok=not listed, entries_checked=count,
                        checkpoints_checked=len(checkpoints), problems=listed,
                        last_entry=last_id, witnessed=latest,
                        unwitnessed_entries=max(0, last_id - (latest.size if latest else 0)),
                        witness_path=witness_path)


def _check_witness_lines(lines: list[WitnessLine] | None, path: Path | None,
                         public_key: Ed25519PublicKey | None,
                         problems: Problems) -> list[tuple[int, Checkpoint]]:
    """The witness file's checkpoints whose signature verifies, as (line, checkpoint)."""
    if lines is None:
        return []
    expected_key = key_id(public_key) if public_key is not None else None
    valid: list[tuple[int, Checkpoint]] = []
    for line in lines:
        where = f"{path}:{line.line}"
        cp = line.checkpoint
        if cp is None:
            problems.add(None, f"{where}: {line.error} (the witness file was edited)")
            continue
        name = f"{where}: witnessed checkpoint {cp.id} (entries 1..{cp.size})"
        if public_key is None:
            problems.add(None, f"{name}: no public key to check its signature with "
                               "(audit.key or --public-key)")
            continue
        if cp.key_id != expected_key:
            problems.add(None, f"{name} is signed by key {cp.key_id[:16]}..., not this "
                               f"log's key {(expected_key or '')[:16]}...: forged")
            continue
        try:
            public_key.verify(bytes.fromhex(cp.signature), cp.message())
        except (InvalidSignature, ValueError):
            problems.add(None, f"{name}: the signature is invalid (the line was forged "
                               "or altered)")
            continue
        if valid and cp.size < valid[-1][1].size:
            problems.add(None, f"{name} records fewer entries than line {valid[-1][0]} "
                               f"({valid[-1][1].size}): the witness file was reordered")
        valid.append((line.line, cp))
    return valid


def _check_witnessed(witnessed: list[tuple[int, Checkpoint]], path: Path | None,
                     hashes_at: dict[int, str | None], last_id: int,
                     problems: Problems) -> Checkpoint | None:
    """The log against what the witness signed; returns the latest witnessed checkpoint.

    The latest proves entries 1..size are exactly those it signed (the chain links them
    to its head hash); the earlier lines narrow down which entries a rewrite touched.
    """
    if not witnessed:
        return None  # every entry is unwitnessed: the result says so
    line, latest = max(witnessed, key=lambda item: (item[1].size, item[1].id))
    stamp = f"{path}:{line}, signed {format_time(latest.at)}"
    if latest.size > last_id:
        missing = (f"entry {latest.size} is" if latest.size == last_id + 1
                   else f"entries {last_id + 1}..{latest.size} are")
        problems.add(last_id + 1, f"{missing} missing: the witness ({stamp}) signed "
                                  f"entries 1..{latest.size} but the log ends at entry "
                                  f"{last_id}: they were deleted (truncation)")
        return latest
    matched = 0
    for number, cp in sorted(witnessed, key=lambda item: (item[1].size, item[0])):
        if cp.size <= matched:
            continue
        found = hashes_at.get(cp.size)
        if found is None:
            problems.add(cp.size, f"entry {cp.size}, witnessed at {path}:{number}, is "
                                  "missing from the log")
            break
        if found != cp.head_hash:
            problems.add(matched + 1, f"entries {matched + 1}..{cp.size} were rewritten: "
                                      f"the witness ({path}:{number}, signed "
                                      f"{format_time(cp.at)}) signed head "
                                      f"{cp.head_hash[:16]}... for entry {cp.size}, which "
                                      f"now hashes to {found[:16]}...")
            break
        matched = cp.size
    return latest


def _check_witness_complete(lines: list[WitnessLine] | None, path: Path | None,
                            checkpoints: list[Checkpoint], problems: Problems) -> None:
    """Every checkpoint row since the first witnessed one must be in the witness file.

    Rows are committed only after their line is fsynced, so a row missing from the file
    means the file was cut back to an older line (or edited). Rows older than the first
    line predate the witness (an upgraded install) and are not required.
    """
    present = {(line.checkpoint.id, line.checkpoint.signature)
               for line in lines or () if line.checkpoint is not None}
    if not checkpoints:
        return
    if not present:
        latest = checkpoints[-1]
        problems.add(None, f"the witness {path} holds no checkpoint but the database "
                           f"holds {len(checkpoints)} (the latest signs entries "
                           f"1..{latest.size}): the witness file was deleted or emptied")
        return
    first = min(cp_id for cp_id, _ in present)
    absent = [cp for cp in checkpoints
              if cp.id >= first and (cp.id, cp.signature) not in present]
    if absent:
        latest = absent[-1]
        ids = (f"checkpoint {absent[0].id}" if len(absent) == 1
               else f"{len(absent)} checkpoints ({absent[0].id}..{latest.id})")
        problems.add(None, f"{ids} of the database, the latest signing entries "
                           f"1..{latest.size} at {format_time(latest.at)}, are not in "
                           f"the witness {path}: the witness file was cut back or edited")


def _snapshot(engine: Engine) -> Connection:
    """One consistent view for the whole verification, while the server keeps appending."""
    conn = store_db.reading(engine)
    if engine.dialect.name == "postgresql":
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
    return conn


def _check_schema(conn: Connection) -> None:
    if not inspect(conn).has_table(tables.audit_head.name):
        raise AuditError("this database's audit log predates the hash chain: start "
                         "'steward server' once so it migrates the schema, then verify")


def _batches(conn: Connection, size: int) -> Iterator[list[Any]]:
    # ``at`` without UTCDateTime's per-row conversion: format_time() takes either form.
    columns = [type_coerce(tables.audit.c.at, DateTime()).label("at") if name == "at"
               else tables.audit.c[name] for name in ENTRY_COLUMNS]
    after = None
    while True:
        query = select(*columns).order_by(tables.audit.c.id).limit(size)
        if after is not None:
            query = query.where(tables.audit.c.id > after)
        rows = list(conn.execute(query).all())
        if not rows:
            return
        yield rows
        after = rows[-1].id


def _check_entry(row: Any, prev_id: int, prev_hash: str, legacy: int,
                 problems: Problems) -> None:
    if row.id != prev_id + 1 and row.id > legacy:
        missing = (f"entry {prev_id + 1} is" if row.id == prev_id + 2
                   else f"entries {prev_id + 1}..{row.id - 1} are")
        problems.add(prev_id + 1, f"{missing} missing: deleted from the log (the ids "
                                  f"jump from {prev_id} to {row.id})")
    elif row.prev_hash != prev_hash:
        what = f"entry {prev_id}'s hash" if prev_id else "the start of the log"
        problems.add(row.id, f"entry {row.id} does not link to {what}: an entry before "
                             "it was deleted or rewritten")
    if row.entry_hash is None:
        problems.add(row.id, f"entry {row.id} has no hash: it was not written by the log")
    elif entry_hash(fields_of(row), row.prev_hash or "") != row.entry_hash:
        problems.add(row.id, f"entry {row.id} was edited: its content does not match its "
                             "hash")


def _check_head(head: Row[Any] | None, last_id: int, last_hash: str,
                problems: Problems) -> None:
    if head is None:
        problems.add(None, "the audit head row is missing")
    elif head.last_id > last_id:
        problems.add(last_id + 1, f"the log ends at entry {last_id} but its head records "
                                  f"entry {head.last_id}: entries {last_id + 1}.."
                                  f"{head.last_id} were deleted (truncation)")
    elif head.last_id < last_id:
        problems.add(head.last_id + 1, f"entries {head.last_id + 1}..{last_id} are beyond "
                                       "the head: they were not appended by the log")
    elif last_id and head.last_hash != last_hash:
        problems.add(last_id, f"the head's hash does not match entry {last_id}: the end "
                              "of the log was rewritten")


def _check_checkpoints(checkpoints: list[Checkpoint], hashes_at: dict[int, str | None],
                       last_id: int, public_key: Ed25519PublicKey | None,
                       problems: Problems) -> None:
    expected_key = key_id(public_key) if public_key is not None else None
    prev_id, prev_signature, prev_size = 0, None, 0
    for cp in checkpoints:
        name = f"checkpoint {cp.id} (entries 1..{cp.size})"
        if cp.id != prev_id + 1:
            problems.add(None, f"checkpoints {prev_id + 1}..{cp.id - 1} are missing")
        elif cp.prev_signature != prev_signature:
            problems.add(None, f"{name} does not chain to checkpoint {prev_id}'s "
                               "signature: a checkpoint was replaced or forged")
        if expected_key is None or public_key is None:
            problems.add(None, f"{name}: no public key to check its signature with "
                               f"(audit.key or --public-key)")
        elif cp.key_id != expected_key:
            problems.add(None, f"{name} is signed by key {cp.key_id[:16]}..., not this "
                               f"log's key {expected_key[:16]}...: forged")
        else:
            try:
                public_key.verify(bytes.fromhex(cp.signature), cp.message())
            except (InvalidSignature, ValueError):
                problems.add(None, f"{name}: the signature is invalid (the checkpoint "
                                   "was forged or altered)")
        if cp.size < prev_size:
            problems.add(None, f"{name} is smaller than checkpoint {prev_id} "
                               f"({prev_size} entries)")
        if cp.size > last_id:
            problems.add(last_id + 1, f"{name} is beyond the last entry {last_id}: "
                                      f"entries {last_id + 1}..{cp.size} were deleted "
                                      "(truncation)")
        elif cp.size not in hashes_at:
            problems.add(cp.size, f"entry {cp.size}, the head of {name}, is missing")
        elif hashes_at[cp.size] != cp.head_hash:
            first = min(prev_size, cp.size - 1) + 1
            problems.add(first, f"entries {first}..{cp.size} were rewritten: {name} "
                                f"signed head {cp.head_hash[:16]}... but entry {cp.size} "
                                f"now hashes to {(hashes_at[cp.size] or '')[:16]}...")
        prev_id, prev_signature, prev_size = cp.id, cp.signature, max(prev_size, cp.size)
