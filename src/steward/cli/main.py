"""The ``steward`` command line (everything but the node-side ``apply`` and ``facts``).

The root callback collects the options shared by the commands (``--data-dir``, ``--server``,
``--token``, ``--ca-cert``, see :mod:`steward.cli.settings`), which may come before the
command or, as always, after it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from steward.cli.agents_cmds import register as register_agents_commands
from steward.cli.assistant_cmds import register as register_assistant_commands
from steward.cli.audit_cmds import register as register_audit_commands
from steward.cli.change_cmds import register as register_change_commands
from steward.cli.mcp_cmds import register as register_mcp_commands
from steward.cli.policy_cmds import register as register_policy_commands
from steward.cli.server_cmds import register as register_server_commands
from steward.cli.settings import collect, settings, with_data_dir
from steward.cli.task_cmds import register as register_task_commands
from steward.errors import StewardError, UsageError

app = typer.Typer(
    name="steward",
    help="Steward: state what infrastructure should be, predict, enforce, prove.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
secret_app = typer.Typer(help="Manage the encrypted secrets store.", no_args_is_help=True)
app.callback()(collect)
app.add_typer(secret_app, name="secret")


def _read_facts(path: Path) -> dict[str, object]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read facts file {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}:{exc.lineno}:{exc.colno}: facts are not valid JSON: {exc.msg}")\
            from exc
    if not isinstance(document, dict):
        raise UsageError(f"{path}: facts must be a JSON object")
    return document


@app.command()
@with_data_dir
def compile(
    ctx: typer.Context,
    repo: Annotated[Path, typer.Option(help="Desired-state repository directory.")],
    node: Annotated[str, typer.Option(help="Node name (certname).")],
    facts: Annotated[Path, typer.Option(help="Facts JSON file (see 'steward facts').")],
    environment: Annotated[
        str | None, typer.Option(help="Environment; overrides classification.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the catalog here, not stdout.")
    ] = None,
    secrets_out: Annotated[
        Path | None,
        typer.Option(help="Write the catalog's sensitive values to this file (mode 0600) for "
                     "'steward apply --secrets'. Never printed."),
    ] = None,
) -> None:
    """Compile a node's catalog from desired state and facts; print it as JSON."""
    from steward.compiler import compile_catalog
    from steward.language import load_repository
    from steward.secrets.store import SecretStore

    repository = load_repository(repo)
    store = SecretStore(settings(ctx).data_dir)
    result = compile_catalog(
        repository, node=node, facts=_read_facts(facts), environment=environment, secrets=store
    )
    text = result.catalog.dumps() + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
    if secrets_out is not None:
        write_private_json(secrets_out, result.sensitive_values)


def write_private_json(path: Path, document: dict[str, str]) -> None:
    """Create the file 0600 from the start, so a secret is never readable by others."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(document, handle, sort_keys=True)


@secret_app.command("set")
@with_data_dir
def secret_set(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Secret name, as referenced by {secret: NAME}.")],
) -> None:
    """Store a secret; the value is read from stdin (or prompted), never from the arguments."""
    from steward.secrets.store import SecretStore

    if sys.stdin.isatty():
        value = typer.prompt(f"value for {name}", hide_input=True, confirmation_prompt=True)
    else:
        value = sys.stdin.read().rstrip("\n")
    if not value:
        raise UsageError(f"secret {name!r}: refusing to store an empty value")
    data_dir = settings(ctx).data_dir
    SecretStore(data_dir).set(name, value)
    typer.echo(f"stored secret {name!r} in {data_dir}")


@secret_app.command("list")
@with_data_dir
def secret_list(ctx: typer.Context) -> None:
    """List secret names (never values)."""
    from steward.secrets.store import SecretStore

    for name in SecretStore(settings(ctx).data_dir).names():
        typer.echo(name)


@secret_app.command("rm")
@with_data_dir
def secret_rm(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Delete a secret."""
    from steward.secrets.store import SecretStore

    SecretStore(settings(ctx).data_dir).delete(name)
    typer.echo(f"deleted secret {name!r}")


@app.command()
def demo(
    workdir: Annotated[
        Path, typer.Option(help="Where everything goes (wiped at start): the server's data, "
                           "the sandboxed nodes' roots, server.log.")
    ] = Path("demo-output"),
    repo: Annotated[Path | None, typer.Option(help="Desired-state repository.")] = None,
) -> None:
    """The main job: a local server and three sandboxed agents enforce, drift and are queried."""
    from steward.demo import run_demo

    raise typer.Exit(run_demo(workdir, repo))


# `apply` and `facts` are dispatched to the standard-library engine before typer loads (see
# steward/__main__.py); these entries only make them show in --help.
@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             add_help_option=False)
def apply(ctx: typer.Context) -> None:
    """Apply a catalog on this node and print the report (see 'steward apply --help')."""
    from steward.engine.cli import main as node_main

    raise typer.Exit(node_main(["apply", *ctx.args]))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             add_help_option=False)
def facts(ctx: typer.Context) -> None:
    """Print this node's facts as JSON (see 'steward facts --help')."""
    from steward.engine.cli import main as node_main

    raise typer.Exit(node_main(["facts", *ctx.args]))


# The control plane: init, server, node, token, query, agent (see cli/server_cmds.py).
register_server_commands(app)
register_audit_commands(app)
register_policy_commands(app)
register_change_commands(app)
register_assistant_commands(app)
register_mcp_commands(app)
register_agents_commands(app)
register_task_commands(app)


def run(argv: list[str]) -> int:
    """Run the CLI, turning user errors into one clear line instead of a traceback."""
    try:
        app(args=argv, prog_name="steward")
    except StewardError as exc:
        typer.echo(f"steward: error: {exc}", err=True)
        return exc.exit_code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0
