"""Control-plane commands: ``init``, ``server``, ``node``, ``token``, ``query``, ``agent``.

Registered on the main typer app by :func:`register`. Imports of the server stack happen
inside the commands, so ``steward --help`` stays quick.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from steward.cli.settings import settings, with_connection, with_data_dir

node_app = typer.Typer(help="Enroll, list, revoke and run nodes.", no_args_is_help=True)
token_app = typer.Typer(help="Create and revoke join and operator tokens.",
                        no_args_is_help=True)


_ISO = re.compile(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$")


def _short_times(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Listing timestamps to the second, so a table fits a terminal."""
    def short(value: Any) -> Any:
        match = _ISO.match(value) if isinstance(value, str) else None
        return f"{match.group(1)} {match.group(2)}" if match else value

    return [{key: short(value) for key, value in row.items()} for row in rows]


def _table(rows: list[dict[str, Any]], columns: list[str] | None = None,
           title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(column)) for column in columns))
    Console().print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
        return text if len(text) <= 200 else text[:199] + "…"
    return str(value)


# -- init and server -------------------------------------------------------------------------


@with_data_dir
def init(
    ctx: typer.Context,
    database_url: Annotated[str | None, typer.Option(
        envvar="STEWARD_DATABASE_URL",
        help="postgresql://USER@HOST/DB (default: SQLite in the data directory)."),
    ] = None,
    repo: Annotated[Path | None, typer.Option(
        help="Import this directory's files as the first commit of the desired-state git "
             "repository (default: examples/repo)."),
    ] = None,
    environment: Annotated[list[str] | None, typer.Option(
        "--environment",
        help="An environment, i.e. a branch of the repository (repeatable; default: "
             "development, staging, production)."),
    ] = None,
    versioned: Annotated[bool, typer.Option(
        "--versioned/--unversioned",
        help="--unversioned: use --repo in place as one plain tree for every environment "
             "(no git, no change pipeline)."),
    ] = True,
    host: Annotated[str, typer.Option(help="Address the server listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port the server listens on.")] = 8150,
    san: Annotated[list[str] | None, typer.Option(
        help="Extra name or address for the server certificate (repeatable)."),
    ] = None,
    save_token: Annotated[bool, typer.Option(
        help="Save the admin token (0600) for this machine's CLI."),
    ] = True,
) -> None:
    """Create a data directory: CA and server certificate, database, repository, admin token."""
    import os

    from steward.server.config import ADMIN_TOKEN_FILE, make_private
    from steward.server.db import redact_url
    from steward.server.init import init_data_dir

    data_dir = settings(ctx).data_dir
    umask = os.umask(0o077)  # every file of the data directory is the server user's alone
    try:
        result = init_data_dir(data_dir, database_url=database_url, repo=repo,
                               environments=environment, versioned=versioned, host=host,
                               port=port, names=san, save_admin_token=save_token)
        config = result.config
        if versioned:
            from steward.pipeline.policy import install_default_policies

            install_default_policies(config.data_dir)
            make_private(config.data_dir)
    finally:
        os.umask(umask)  # in-process callers (tests) keep theirs
    typer.echo(f"Initialised Steward data directory {config.data_dir}")
    typer.echo(f"  CA certificate  {config.ca_cert}")
    typer.echo(f"                  SHA-256 {result.ca_fingerprint}")
    typer.echo(f"  database        {redact_url(config.database_url)}")
    if versioned:
        typer.echo(f"  repository      {config.repo_path} (git clone {config.repo_path})")
        typer.echo(f"  environments    {', '.join(config.environments)} (one branch each)")
    else:
        typer.echo(f"  repository      {config.repo_path} (unversioned)")
    typer.echo(f"  server URL      {config.server_url}")
    typer.echo("")
    typer.echo("Admin token (shown once; the server keeps only its hash):")
    typer.echo(f"  {result.admin_token}")
    if save_token:
        typer.echo(f"  saved for this machine's CLI in {config.data_dir / ADMIN_TOKEN_FILE} "
                   "(mode 0600)")
    typer.echo("")
    typer.echo(f"Next: steward server --data-dir {data_dir}")


@with_data_dir
def server(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Listen address (default: config).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default: config).")] = None,
    database_url: Annotated[str | None, typer.Option(
        envvar="STEWARD_DATABASE_URL", help="Database URL (default: config)."),
    ] = None,
    repo: Annotated[Path | None, typer.Option(help="Repository (default: config).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the control-plane server (HTTPS, with the data directory's certificate)."""
    import contextlib
    import os

    from steward.server.config import load_config, make_private

    # The configuration first: a wrong --data-dir should not wait for the server stack.
    config = load_config(settings(ctx).data_dir).with_overrides(
        host=host, port=port, database_url=database_url, repo_path=repo,
    )
    # Everything the server writes (database, witness, checkouts, git objects) is its own.
    os.umask(0o077)
    make_private(config.data_dir)

    import uvicorn
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    from steward.api.app import build_app
    from steward.catalog.redaction import install_log_redaction
    from steward.server.db import redact_url
    from steward.server.errors import UVICORN_LOGGERS, ConfigError
    from steward.server.services import build_services

    try:
        services = build_services(config)
    except (SQLAlchemyError, OSError) as exc:
        cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        text = (str(cause).strip() or type(cause).__name__).splitlines()[0]
        raise ConfigError(f"cannot open the database {redact_url(config.database_url)}: "
                          f"{text}") from None
    import gc

    # Everything loaded so far lives as long as the server: keep it out of the collector's
    # full passes, which otherwise show up as outliers in query latency.
    gc.freeze()
    typer.echo(f"Steward server on {config.server_url} (database "
               f"{redact_url(config.database_url)}, repository {config.repo_path})", err=True)
    try:
        listening = uvicorn.Config(
            build_app(config, services=services),
            host=config.host, port=config.port,
            ssl_certfile=str(config.tls_cert), ssl_keyfile=str(config.tls_key),
            log_level=log_level, timeout_graceful_shutdown=3, ws="none",
        )
        # uvicorn has configured logging now: every handler scrubs credentials from then on
        # (a token in a query string, a password in an error), with the one marker.
        install_log_redaction(*UVICORN_LOGGERS)
        running = uvicorn.Server(listening)
        with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run
            running.run()
        if not running.started:
            raise SystemExit(3)  # uvicorn's STARTUP_FAILURE, as uvicorn.run exits with
    finally:
        services.close()


# -- nodes -----------------------------------------------------------------------------------


@node_app.command("list")
@with_connection
def node_list(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="pending | approved | revoked")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List nodes with their enrollment status (pending requests included)."""
    with settings(ctx).client() as client:
        nodes = client.request("GET", "/api/v1/nodes",
                               params={"status": status} if status else None)
    if as_json:
        typer.echo(json.dumps(nodes, indent=2, sort_keys=True))
        return
    _table(_short_times(nodes), ["certname", "status", "transport", "pending_request",
                                 "last_seen_at", "last_run_at", "last_environment"])


@node_app.command("approve")
@with_connection
def node_approve(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The node's certname.")],
) -> None:
    """Approve a node's pending enrollment request; it collects its credential next poll."""
    with settings(ctx).client() as client:
        result = client.request("POST", f"/api/v1/nodes/{name}/approve")
    typer.echo(f"approved {name}" if result.get("changed") else f"{name} was already approved")


@node_app.command("revoke")
@with_connection
def node_revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The node's certname.")],
) -> None:
    """Revoke a node's credentials (or reject its request); effective on its next request."""
    with settings(ctx).client() as client:
        result = client.request("POST", f"/api/v1/nodes/{name}/revoke")
    typer.echo(f"revoked {name} ({result.get('tokens_revoked', 0)} credential(s))")


@node_app.command("run")
@with_connection
def node_run(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The node's certname.")],
    noop: Annotated[bool, typer.Option(help="Ask for a noop run.")] = False,
) -> None:
    """Ask a node to run now (a listening agent starts within seconds)."""
    with settings(ctx).client() as client:
        result = client.request("POST", f"/api/v1/nodes/{name}/run", json_body={"noop": noop})
    typer.echo(f"run requested for {name} (request {result['request_id']})")


@node_app.command("add-ssh")
@with_connection
def node_add_ssh(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The node's certname.")],
    host: Annotated[str, typer.Option(help="SSH host name or address.")],
    port: Annotated[int, typer.Option(help="SSH port.")] = 22,
    user: Annotated[str, typer.Option(help="SSH user.")] = "root",
    key_file: Annotated[str | None, typer.Option(help="Private key (on the server).")] = None,
    sudo: Annotated[bool, typer.Option(help="Run the engine with sudo.")] = False,
    known_hosts: Annotated[str | None, typer.Option(
        help="known_hosts file (on the server) holding the host's key.")] = None,
    trust_on_first_use: Annotated[bool, typer.Option(
        help="Record the host key on first contact.")] = False,
) -> None:
    """Add an agentless node: the server pushes its catalog over SSH on a schedule."""
    body = {"certname": name, "host": host, "port": port, "user": user, "key_file": key_file,
            "sudo": sudo, "known_hosts": known_hosts, "trust_on_first_use": trust_on_first_use}
    with settings(ctx).client() as client:
        client.request("POST", "/api/v1/nodes", json_body=body)
    typer.echo(f"added SSH node {name} ({user}@{host}:{port})")


# -- tokens ----------------------------------------------------------------------------------


@token_app.command("create")
@with_connection
def token_create(
    ctx: typer.Context,
    kind: Annotated[str, typer.Option(help="join (enroll nodes) or operator.")] = "join",
    name: Annotated[str | None, typer.Option(help="A label (default: the kind).")] = None,
    expires: Annotated[str | None, typer.Option(
        help="Lifetime such as 1h, 7d (join tokens default to 24h).")] = None,
    uses: Annotated[int | None, typer.Option(help="Join tokens: how many enrollments.")] = None,
) -> None:
    """Create a token and print it (the only time it is shown)."""
    from steward.agent.cli import parse_duration
    from steward.errors import UsageError

    if kind not in ("join", "operator"):
        raise UsageError(f"--kind {kind!r}: use join or operator")
    body: dict[str, Any] = {"kind": kind, "name": name or kind, "max_uses": uses}
    if expires is not None:
        body["expires_in"] = parse_duration(expires, "--expires")
    with settings(ctx).client() as client:
        created = client.request("POST", "/api/v1/tokens", json_body=body)
    typer.echo(created["token"])
    details = [f"id {created['id']}", f"kind {created['kind']}"]
    if created.get("expires_at"):
        details.append(f"expires {created['expires_at']}")
    if created.get("max_uses"):
        details.append(f"{created['max_uses']} use(s)")
    typer.echo("(" + ", ".join(details) + "; shown once)", err=True)


@token_app.command("list")
@with_connection
def token_list(
    ctx: typer.Context,
    include_revoked: Annotated[bool, typer.Option(help="Show revoked tokens too.")] = False,
) -> None:
    """List tokens (metadata only; tokens are never shown again)."""
    with settings(ctx).client() as client:
        tokens = client.request("GET", "/api/v1/tokens",
                                params={"include_revoked": include_revoked})
    _table(_short_times(tokens), ["id", "kind", "name", "certname", "created_at", "expires_at",
                                  "uses", "max_uses", "revoked_at"])


@token_app.command("revoke")
@with_connection
def token_revoke(
    ctx: typer.Context,
    token_id: Annotated[str, typer.Argument(help="The token's id (see 'token list').")],
) -> None:
    """Revoke a token by id; effective on its next use."""
    with settings(ctx).client() as client:
        client.request("DELETE", f"/api/v1/tokens/{token_id}")
    typer.echo(f"revoked token {token_id}")


# -- query -----------------------------------------------------------------------------------


@with_connection
def query(
    ctx: typer.Context,
    pql: Annotated[str, typer.Argument(help="A PQL query, or an AST as JSON.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON result.")] = False,
    limit: Annotated[int | None, typer.Option(help="At most this many results.")] = None,
    offset: Annotated[int | None, typer.Option(help="Skip this many results.")] = None,
    order_by: Annotated[str | None, typer.Option(
        help='JSON, e.g. \'[{"field": "certname", "order": "asc"}]\'.')] = None,
) -> None:
    """Query the state store with PQL (PuppetDB's query language), over the server's API."""
    params: dict[str, Any] = {"query": pql}
    for key, value in (("limit", limit), ("offset", offset), ("order_by", order_by)):
        if value is not None:
            params[key] = value
    with settings(ctx).client() as client:
        rows = client.request("GET", "/pdb/query/v4", params=params)
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        return
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        sys.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
        return
    if not rows:
        typer.echo("(no results)")
        return
    _table(rows)
    typer.echo(f"{len(rows)} result(s)", err=True)


def agent_help(ctx: typer.Context) -> None:
    """Run the pull agent on this node (see 'steward agent --help')."""
    from steward.agent.cli import main as agent_main

    raise typer.Exit(agent_main(ctx.args))


def register(app: typer.Typer) -> None:
    """Add the control-plane commands to the main CLI."""
    app.command("init")(init)
    app.command("server")(server)
    app.add_typer(node_app, name="node")
    app.add_typer(token_app, name="token")
    app.command("query")(query)
    app.command("agent", context_settings={"allow_extra_args": True,
                                           "ignore_unknown_options": True},
                add_help_option=False)(agent_help)
