"""``steward task …`` and ``steward job show``: tasks over the REST API (docs/tasks.md).

Thin clients: the server validates the task and its parameters, checks RBAC, refuses noop
for tasks without ``supports_noop``, and audits; the CLI only parses ``--param k=v``.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer

from steward.cli.settings import settings, with_connection
from steward.errors import StewardError, UsageError

task_app = typer.Typer(help="List, show and run tasks (pre-approved actions).",
                       no_args_is_help=True)
job_app = typer.Typer(help="Task jobs and their per-node results.", no_args_is_help=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print the JSON document.")]
EnvOption = Annotated[str | None, typer.Option("--environment", "-e",
                                               help="Read the task from this environment.")]


class JobFailed(StewardError):
    """Some node's part of a job did not succeed (exit status 1 after printing)."""


def _print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def parse_params(pairs: list[str]) -> dict[str, str]:
    """``k=v`` pairs; the server types and checks them against the task's metadata."""
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {pair!r}: write NAME=VALUE")
        if key in params:
            raise UsageError(f"--param {key!r} given twice")
        params[key] = value
    return params


def print_job(job: dict[str, Any]) -> None:
    typer.echo(f"{job['id']} [{job['state']}] task {job['task']}"
               f"{' (noop)' if job['noop'] else ''} by {job['requested_by']} "
               f"in {job['environment']}")
    typer.echo(f"  nodes {job['query']}; "
               + ", ".join(f"{k} {v}" for k, v in job["counts"].items()))
    for result in job["results"]:
        typer.echo(f"  {result['certname']}: {result['state']}"
                   + (f" (exit {result['exit_code']})" if result["exit_code"] is not None
                      else ""))
        shown = result["result"] if result["result"] is not None else result["output"]
        if shown:
            text = shown if isinstance(shown, str) else json.dumps(shown, sort_keys=True)
            for line in text.strip().splitlines()[:20]:
                typer.echo(f"      {line}")


@task_app.command("list")
@with_connection
def list_tasks(ctx: typer.Context, environment: EnvOption = None,
               as_json: JsonOption = False) -> None:
    """The tasks of an environment."""
    params = {"environment": environment} if environment else None
    with settings(ctx).client() as client:
        document = client.request("GET", "/api/v1/tasks", params=params)
    if as_json:
        _print_json(document)
        return
    for task in document["tasks"]:
        kind = "read-only" if task["read_only"] else "changes"
        noop = ", noop" if task["supports_noop"] else ""
        typer.echo(f"{task['name']:<20} {kind}{noop}  {task['description']}")


@task_app.command("show")
@with_connection
def show_task(ctx: typer.Context, name: str, environment: EnvOption = None,
              as_json: JsonOption = False) -> None:
    """A task's metadata: parameters, noop support, read-only."""
    params = {"environment": environment} if environment else None
    with settings(ctx).client() as client:
        task = client.request("GET", f"/api/v1/tasks/{name}", params=params)
    if as_json:
        _print_json(task)
        return
    typer.echo(f"{task['name']} ({task['environment']} @ {task['commit'][:12]}): "
               f"{task['description']}")
    typer.echo(f"  read_only {str(task['read_only']).lower()}, supports_noop "
               f"{str(task['supports_noop']).lower()}, timeout {task['timeout']}s, "
               f"script {task['script']}")
    for pname, spec in sorted(task["parameters"].items()):
        extras = [f"{k} {spec[k]}" for k in ("default", "pattern", "enum", "minimum",
                                             "maximum") if k in spec]
        flags = [f for f in ("required", "sensitive") if spec.get(f)]
        typer.echo(f"  --param {pname}=<{spec['type']}> {' '.join(flags)} "
                   f"{'; '.join(extras)}  {spec['description']}".rstrip())


@task_app.command("run")
@with_connection
def run_task(
    ctx: typer.Context,
    name: str,
    nodes: Annotated[str, typer.Option("--nodes", help="PQL selecting the nodes.")],
    param: Annotated[list[str] | None, typer.Option("--param", help="NAME=VALUE")] = None,
    noop: Annotated[bool, typer.Option("--noop", help="Only say what it would do.")] = False,
    concurrency: Annotated[int, typer.Option(help="Nodes running it at once.")] = 10,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the results.")] = 300.0,
    as_json: JsonOption = False,
) -> None:
    """Run a task on the nodes PQL selects; waits and prints each node's result."""
    body = {"nodes": nodes, "params": parse_params(param or []), "noop": noop,
            "concurrency": concurrency}
    with settings(ctx).client() as client:
        job = client.request("POST", f"/api/v1/tasks/{name}/run", json_body=body)
        deadline = time.monotonic() + wait
        while job["state"] != "finished" and time.monotonic() < deadline:
            time.sleep(0.5)
            job = client.request("GET", f"/api/v1/jobs/{job['id']}")
    _finish(job, as_json)


@job_app.command("show")
@with_connection
def show_job(ctx: typer.Context, job_id: str, as_json: JsonOption = False) -> None:
    """A job and each node's result."""
    with settings(ctx).client() as client:
        job = client.request("GET", f"/api/v1/jobs/{job_id}")
    _finish(job, as_json)


def _finish(job: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(job)
    else:
        print_job(job)
    bad = [r["certname"] for r in job["results"] if r["state"] not in ("succeeded", "skipped")]
    if bad:
        raise JobFailed(f"job {job['id']}: not succeeded on {', '.join(bad)}")


def register(app: typer.Typer) -> None:
    app.add_typer(task_app, name="task")
    app.add_typer(job_app, name="job")
