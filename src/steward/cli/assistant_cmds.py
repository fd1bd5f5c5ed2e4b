"""``steward ask``, ``steward assistant …`` and ``steward eval assistant``.

``ask`` is a thin client of ``POST /api/v1/ask``: the server holds the model configuration,
authorises and audits. ``assistant configure`` writes the model file into the server's
data directory; ``eval assistant`` runs the evaluation set locally on its own fixed fleet.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from steward.cli.server_cmds import _table
from steward.cli.settings import settings, with_connection, with_data_dir
from steward.errors import StewardError

assistant_app = typer.Typer(help="Configure the Infra Assistant's model.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluations (execution accuracy on a fixed fleet).",
                       no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the JSON document.")]


class EvalBelowThreshold(StewardError):
    """The evaluation's accuracy is below ``--min-accuracy``."""

    exit_code = 1


@with_connection
def ask(
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help="A question about the fleet, in plain words.")],
    limit: Annotated[int, typer.Option(help="At most this many rows.", min=1, max=1000)] = 100,
    as_json: JsonOption = False,
) -> None:
    """Ask the Infra Assistant: a model writes the PQL, Steward checks and runs it read-only."""
    with settings(ctx).client() as client:
        result = client.request("POST", "/api/v1/ask",
                                json_body={"question": question, "limit": limit})
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        return
    typer.echo(f"query: {result['query']}")
    retries = len(result.get("attempts", [])) - 1
    if retries > 0:
        typer.echo(f"       (corrected after {retries} failed attempt(s))")
    rows: list[dict[str, Any]] = result.get("rows", [])
    if rows:
        _table(rows)
    else:
        typer.echo("(no rows)")
    if result.get("truncated"):
        typer.echo(f"(first {result['limit']} rows only; pass --limit for more)")
    typer.echo(result.get("summary", ""))


@with_data_dir
def configure(
    ctx: typer.Context,
    model: Annotated[str, typer.Option(
        help="PROVIDER:MODEL, e.g. openai-compatible:http://localhost:11434/v1:qwen2.5-coder, "
             "openai:gpt-4o-mini, anthropic:claude-sonnet-4-5.")],
    api_key_env: Annotated[str | None, typer.Option(
        help="Environment variable holding the API key (the key is never stored).")] = None,
    output: Annotated[str, typer.Option(
        help="How the model returns the query: tool (default), native (JSON schema) or "
             "prompted (for local models that cannot call tools).")] = "tool",
) -> None:
    """Write the server's model configuration (<data-dir>/assistant.toml)."""
    from steward.assistant.config import parse_spec, save_config

    config = parse_spec(model, api_key_env=api_key_env, output=output)
    path = save_config(settings(ctx).data_dir, config)
    typer.echo(f"wrote {path}: {config.describe()}"
               + (f", API key from ${config.api_key_env}" if config.api_key_env else ""))


@with_data_dir
def show(ctx: typer.Context) -> None:
    """Show the configured model (never a key)."""
    from steward.assistant.config import load_config

    config = load_config(settings(ctx).data_dir)
    typer.echo(config.to_toml().rstrip())


def eval_assistant(
    model: Annotated[str, typer.Option(
        help="A model spec (see 'steward assistant configure --help') or scripted:PATH.")],
    cases: Annotated[Path | None, typer.Option(
        help="The evaluation set (default: evals/assistant/cases.yaml).")] = None,
    api_key_env: Annotated[str | None, typer.Option(
        help="Environment variable holding the API key.")] = None,
    output: Annotated[str, typer.Option(
        help="How the model returns the query: tool, native or prompted.")] = "tool",
    min_accuracy: Annotated[float, typer.Option(
        help="Exit non-zero below this accuracy (0..1).", min=0.0, max=1.0)] = 0.0,
    as_json: JsonOption = False,
) -> None:
    """Score a model's execution accuracy on the evaluation set over the fixed fleet."""
    from steward.assistant.evaluate import (
        EVALS_DIR,
        fleet_store,
        load_cases,
        model_from_spec,
        run_eval,
    )

    path = cases or (EVALS_DIR / "cases.yaml" if (EVALS_DIR / "cases.yaml").is_file()
                     else Path("evals/assistant/cases.yaml"))
    loaded = load_cases(path)
    chosen = model_from_spec(model, api_key_env=api_key_env)
    with fleet_store() as store:
        result = run_eval(chosen, loaded, store=store, model_name=model, output=output)
    if as_json:
        sys.stdout.write(json.dumps(result.to_json(), indent=2, sort_keys=True,
                                    ensure_ascii=False) + "\n")
    else:
        for item in result.results:
            mark = "PASS" if item.passed else "FAIL"
            typer.echo(f"{mark} {item.case.id}: {item.case.question}")
            typer.echo(f"     query: {item.query or '-'}  (attempts: {item.attempts})")
            if not item.passed:
                typer.echo(f"     {item.detail}")
        typer.echo(f"accuracy: {result.passed}/{len(result.results)} = "
                   f"{result.accuracy:.1%} ({model})")
    if result.accuracy < min_accuracy:
        raise EvalBelowThreshold(f"accuracy {result.accuracy:.1%} is below --min-accuracy "
                                 f"{min_accuracy:.1%}")


def register(app: typer.Typer) -> None:
    app.command("ask")(ask)
    assistant_app.command("configure")(configure)
    assistant_app.command("show")(show)
    eval_app.command("assistant")(eval_assistant)
    app.add_typer(assistant_app, name="assistant")
    app.add_typer(eval_app, name="eval")
