"""``steward agents run``: the reference multi-agent workflow (planner, validator, executor,
debugger), each agent on its own MCP session with its own identity.

Exit codes: 0 deployed; 3 stopped for a human approval (``steward change approve ID``, then
``steward agents run --resume ID``); 4 the deployment failed (the debugger's diagnosis is
printed) or the validator failed the change; 1 any other error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from steward.cli.settings import settings, with_connection
from steward.errors import UsageError

agents_app = typer.Typer(help="The reference multi-agent workflow over MCP.",
                         no_args_is_help=True)


@with_connection
def run(
    ctx: typer.Context,
    goal: Annotated[str | None, typer.Argument(
        help="What to achieve, e.g. 'ensure nginx runs with 4 workers on web nodes in "
             "staging'.")] = None,
    resume: Annotated[str | None, typer.Option(
        "--resume", metavar="CHANGE", help="Continue a run stopped for approval.")] = None,
    environment: Annotated[str | None, typer.Option(
        "--environment", "-e", help="Tell the planner which environment to change.")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", help="PROVIDER:MODEL or openai-compatible:BASE_URL:MODEL (default: the "
                        "assistant's model, <data-dir>/assistant.toml).")] = None,
    api_key_env: Annotated[str | None, typer.Option(
        "--api-key-env", help="Environment variable holding the model's API key.")] = None,
    tokens_file: Annotated[Path | None, typer.Option(
        "--tokens", help="JSON {role: {name, token}} for planner, validator, executor, "
                         "debugger (default: <data-dir>/agentflow/tokens.json, created as "
                         "an admin on first use).")] = None,
    transcript_file: Annotated[Path | None, typer.Option(
        "--transcript", help="Also write the transcript (JSON) here.")] = None,
) -> None:
    """Plan, validate, stop for humans if needed, deploy, and diagnose failures."""
    from steward.agentflow import Endpoint, Models
    from steward.agentflow import resume as resume_flow
    from steward.agentflow import run as run_flow
    from steward.agentflow.setup import TOKENS_FILE, RestSink, create_identities, load_tokens
    from steward.assistant.config import build_model, load_config, parse_spec

    if (goal is None) == (resume is None):
        raise UsageError("give a goal, or --resume CHANGE (not both)")
    where = settings(ctx)
    connection = where.connection()
    endpoint = Endpoint(connection.server, connection.ca_cert)
    config = parse_spec(model, api_key_env=api_key_env) if model else load_config(where.data_dir)
    models = Models.same(build_model(config))
    if tokens_file is not None:
        tokens = load_tokens(tokens_file)
    else:
        tokens = create_identities(endpoint, connection.token, where.data_dir / TOKENS_FILE)
    # Each agent files its own steps on the change through the REST API (any host).
    kwargs: dict[str, Any] = {"endpoint": endpoint, "tokens": tokens, "models": models,
                              "sink": RestSink(endpoint, tokens)}
    if resume is not None:
        result = resume_flow(resume, **kwargs)
    else:
        assert goal is not None
        result = run_flow(goal, environment=environment, **kwargs)
    if transcript_file is not None:
        transcript_file.write_text(json.dumps([s.to_json() for s in result.transcript],
                                              indent=2, sort_keys=True) + "\n",
                                   encoding="utf-8")
    for step in result.transcript:
        if step.kind == "tool_call":
            typer.echo(f"[{step.agent} {step.identity}] {step.content['tool']}")
        elif step.kind == "message":
            typer.echo(f"[{step.agent} {step.identity}] {step.content['text']}")
    if result.status == "needs_approval":
        typer.echo(f"{result.change_id} waits for approval:")
        for need in result.waiting_for:
            typer.echo(f"  - {need}")
        typer.echo(f"approve with: steward change approve {result.change_id}; then: "
                   f"steward agents run --resume {result.change_id}")
    elif result.status == "succeeded":
        state = (result.deployment or {}).get("state")
        typer.echo(f"{result.change_id} deployed ({state})")
    elif result.status == "validation_failed":
        typer.echo(f"{result.change_id}: the validator recorded 'fail'; not deployed "
                   f"(steward change show {result.change_id})")
    else:
        typer.echo(f"{result.change_id} failed")
        if result.diagnosis:
            typer.echo(f"diagnosis: {result.diagnosis}")
    raise typer.Exit(result.exit_code)


def register(app: typer.Typer) -> None:
    agents_app.command("run")(run)
    app.add_typer(agents_app, name="agents")
