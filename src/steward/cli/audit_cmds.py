"""``steward audit``: verify, read and checkpoint the tamper-evident audit log.

These commands open the server's database directly (from the data directory's
``config.json``): the operator runs them on the server host, and verification must not
depend on the server it is checking. See docs/audit.md.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from steward.access.audit import AuditLog

from steward.cli.settings import settings, with_data_dir

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
#: Exit status of 'audit verify' when the log could not be checked at all.
EXIT_CANNOT_VERIFY = 2

audit_app = typer.Typer(help="Verify, read and checkpoint the tamper-evident audit log.",
                        no_args_is_help=True)


@contextlib.contextmanager
def _open_log(data_dir: Path) -> Iterator[AuditLog]:
    """The audit log of the data directory's database; its key is never created here."""
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    from steward.access.audit import AuditLog
    from steward.access.audit_entries import AuditError
    from steward.access.checkpoints import KEY_FILE
    from steward.server.config import load_config
    from steward.server.db import SERVER_ENGINE, redact_url
    from steward.server.services import audit_witness
    from steward.store.db import make_engine

    config = load_config(data_dir)
    engine = make_engine(config.database_url, **SERVER_ENGINE)
    try:
        yield AuditLog(engine, key_path=config.data_dir / KEY_FILE, create_key=False,
                       checkpoint_interval=None, witness=audit_witness(config))
    except SQLAlchemyError as exc:
        cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        first = (str(cause).strip() or type(cause).__name__).splitlines()[0]
        raise AuditError(f"cannot read the audit log in {redact_url(config.database_url)}: "
                         f"{first}") from None
    finally:
        engine.dispose()


def _dump(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


@audit_app.command("verify")
@with_data_dir
def verify(
    ctx: typer.Context,
    public_key: Annotated[Path | None, typer.Option(
        help="Check checkpoints with this public key (a copy of audit.pub kept off the "
             "server) instead of the data directory's audit.key."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check every entry's hash and link, every signed checkpoint, and the log against the
    latest checkpoint in the witness file; say how many entries are newer than it.

    Exit status: 0 the log is intact, 1 problems were found (listed), 2 it could not be
    checked (no database, no key).
    """
    from steward.access.checkpoints import load_verify_key
    from steward.errors import StewardError

    try:
        key = load_verify_key(public_key) if public_key is not None else None
        with _open_log(settings(ctx).data_dir) as log:
            result = log.verify(public_key=key)
    except StewardError as exc:
        typer.echo(f"steward: error: {exc}", err=True)
        raise typer.Exit(EXIT_CANNOT_VERIFY) from None
    if as_json:
        _dump(result.to_json())
        raise typer.Exit(0 if result.ok else 1)
    if result.witnessed is not None:
        witnessed = (f"witnessed through entry {result.witnessed.size} (checkpoint "
                     f"{result.witnessed.id}, signed {result.witnessed.to_json()['at']}); "
                     f"{result.unwitnessed_entries} newer entries not yet witnessed")
    else:
        witnessed = (f"no witnessed checkpoint; {result.unwitnessed_entries} entries not "
                     "witnessed")
    if result.ok:
        typer.echo(f"audit log intact: {result.entries_checked} entries, "
                   f"{result.checkpoints_checked} signed checkpoints, {witnessed}")
    else:
        typer.echo(f"audit log FAILED verification: {len(result.problems)} problem(s) in "
                   f"{result.entries_checked} entries and {result.checkpoints_checked} "
                   f"checkpoints; first bad entry: {result.first_bad_entry or '-'}")
        for problem in result.problems:
            where = f"entry {problem['entry_id']}" if problem["entry_id"] is not None else "log"
            typer.echo(f"  {where}: {problem['problem']}")
        typer.echo(f"  ({witnessed})")
    raise typer.Exit(0 if result.ok else 1)


@audit_app.command("log")
@with_data_dir
def show_log(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="The latest this many entries.")] = 50,
    actor: Annotated[str | None, typer.Option(help="Only this actor (e.g. admin:admin).")]
    = None,
    action: Annotated[str | None, typer.Option(help="Only this action.")] = None,
    outcome: Annotated[str | None, typer.Option(
        help="Only this outcome: allowed, denied, succeeded, failed.")] = None,
    target: Annotated[str | None, typer.Option(
        help="Only this target and what is below it (change:chg-3 also matches "
             "change:chg-3/node:web1).")] = None,
    request_id: Annotated[str | None, typer.Option(help="Only this request.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show the latest audit entries, oldest of them first."""
    with _open_log(settings(ctx).data_dir) as log:
        rows = log.entries(actor=actor, action=action, outcome=outcome, target_prefix=target,
                           request_id=request_id, limit=limit)
    rows.reverse()
    if as_json:
        _dump(rows)
        return
    if not rows:
        typer.echo("(no entries)")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False)
    columns = ["id", "at", "actor", "action", "target", "outcome", "reason"]
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        at = str(row["at"])
        table.add_row(*(at[:10] + " " + at[11:19] if c == "at" else str(row[c] or "")
                        for c in columns))
    Console().print(table)


@audit_app.command("checkpoint")
@with_data_dir
def checkpoint(
    ctx: typer.Context,
    as_json: JsonOption = False,
) -> None:
    """Sign the log's current head now and witness it (the server does so within a second
    of every append; keep the JSON off the server too to detect rewrites)."""
    with _open_log(settings(ctx).data_dir) as log:
        signed = log.checkpoint()
    if as_json:
        _dump(signed.to_json())
        return
    typer.echo(f"checkpoint {signed.id}: entries 1..{signed.size}, head {signed.head_hash}, "
               f"key {signed.key_id[:16]}")


def register(app: typer.Typer) -> None:
    """Add ``steward audit`` to the main CLI."""
    app.add_typer(audit_app, name="audit")
