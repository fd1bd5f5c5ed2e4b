"""``steward change …`` and ``steward identity …``: the change pipeline over the REST API.

Every command is a thin client: the server authorises, applies the rules and audits, so
the CLI, the REST API and MCP can never disagree about what is allowed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from steward.cli.server_cmds import _short_times, _table
from steward.cli.settings import Settings, settings, with_connection
from steward.errors import UsageError

change_app = typer.Typer(help="Propose, analyse, approve, deploy and roll back changes.",
                         no_args_is_help=True)
identity_app = typer.Typer(help="Human and agent identities, their tokens and roles.",
                           no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the JSON document.")]
HeadOption = Annotated[str | None, typer.Option(
    "--head", help="The head commit you reviewed (default: the change's current head, "
    "shown before it is sent).")]
DigestOption = Annotated[str | None, typer.Option(
    "--digest", help="The impact digest you reviewed (default: the change's current one, "
    "shown before it is sent).")]


def _print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def _summary(change: dict[str, Any]) -> None:
    """The few lines a reviewer needs: state, what it waits for, impact and policy."""
    typer.echo(f"{change['id']} [{change['state']}] {change['title']}")
    typer.echo(f"  proposer     {change['proposer']['kind']}:{change['proposer']['name']}")
    typer.echo(f"  environment  {change['environment']}  base {change['base'][:12]}  "
               f"head {change['head'][:12]}")
    impact = change.get("impact")
    if impact:
        summary = impact.get("summary", {})
        blast = summary.get("blast_radius", {})
        typer.echo(f"  impact       {summary.get('nodes_affected', 0)} node(s) affected "
                   f"({blast.get('percent', 0)}% of {change['environment']}), "
                   f"{summary.get('nodes_failed', 0)} failing; risk {summary.get('risk')}")
    policy = change.get("policy")
    if policy:
        for result in policy.get("results", []):
            mark = "pass" if result["passed"] else "FAIL"
            typer.echo(f"  policy       {mark} {result['name']} ({result['level']})")
            for message in result["messages"][:5]:
                typer.echo(f"                 - {message}")
    gates = change.get("gates") or {}
    for item in gates.get("waiting_for", []):
        typer.echo(f"  waiting for  {item}")
    if change.get("next_states"):
        typer.echo(f"  next states  {', '.join(change['next_states'])}")


def _read_edit(spec: str) -> tuple[str, str | None]:
    path, sep, source = spec.partition("=")
    if not sep or not path:
        raise UsageError(f"--edit {spec!r}: expected REPO_PATH=LOCAL_FILE (or REPO_PATH= to "
                         "delete the file)")
    if not source:
        return path, None
    try:
        return path, Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--edit {spec!r}: cannot read {source}: {exc.strerror}") from None


@change_app.command("propose")
@with_connection
def propose(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--to", help="Target environment.")],
    message: Annotated[str, typer.Option("--message", "-m", help="What and why.")],
    branch: Annotated[str | None, typer.Option(help="A branch pushed to desired.git.")] = None,
    edit: Annotated[list[str] | None, typer.Option(
        help="REPO_PATH=LOCAL_FILE: the new content of a file (repeatable; "
             "REPO_PATH= deletes).")] = None,
    patch: Annotated[Path | None, typer.Option(help="A unified diff to apply.")] = None,
    base: Annotated[str | None, typer.Option(help="Base commit (default: the tip).")] = None,
    title: Annotated[str | None, typer.Option(help="Title (default: the message's first "
                                                   "line).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Turn a branch or file edits into a change; it is analysed at once."""
    given = sum(x is not None and x != [] for x in (branch, edit, patch))
    if given != 1:
        raise UsageError("give exactly one of --branch, --edit (repeatable) or --patch")
    body: dict[str, Any] = {"environment": to, "message": message,
                            "title": title or message.strip().splitlines()[0][:255]}
    if branch is not None:
        body["branch"] = branch
    elif edit:
        body["edits"] = dict(_read_edit(spec) for spec in edit)
    elif patch is not None:
        try:
            body["patch"] = patch.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--patch: cannot read {patch}: {exc.strerror}") from None
    if base is not None:
        body["base"] = base
    with settings(ctx).client() as client:
        change = client.request("POST", "/api/v1/changes", json_body=body)
    if as_json:
        _print_json(change)
    else:
        _summary(change)


@change_app.command("list")
@with_connection
def list_changes(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(help="Only changes in this state.")] = None,
    environment: Annotated[str | None, typer.Option(help="Only this environment.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Changes, oldest first."""
    params = {k: v for k, v in (("state", state), ("environment", environment)) if v}
    with settings(ctx).client() as client:
        rows = client.request("GET", "/api/v1/changes", params=params)
    if as_json:
        _print_json(rows)
        return
    if not rows:
        typer.echo("(no changes)")
        return
    _table(_short_times([{"id": r["id"], "state": r["state"], "environment": r["environment"],
                          "proposer": f"{r['proposer']['kind']}:{r['proposer']['name']}",
                          "kind": r["kind"], "title": r["title"], "updated": r["updated_at"]}
                         for r in rows]))


@change_app.command("show")
@with_connection
def show(
    ctx: typer.Context,
    change_id: Annotated[str, typer.Argument(help="chg-N")],
    as_json: JsonOption = False,
) -> None:
    """A change: state, impact summary, policy verdicts, approvals, history."""
    with settings(ctx).client() as client:
        change = client.request("GET", f"/api/v1/changes/{change_id}")
    if as_json:
        _print_json(change)
        return
    _summary(change)
    typer.echo("  history")
    for entry in change.get("history", []):
        typer.echo(f"    {entry['at']}  {entry['actor']}  {entry['action']} → "
                   f"{entry['to_state']}")


@change_app.command("impact")
@with_connection
def impact(
    ctx: typer.Context,
    change_id: Annotated[str, typer.Argument(help="chg-N")],
    again: Annotated[bool, typer.Option("--again", help="Re-run the analysis first.")] = False,
    live: Annotated[bool, typer.Option(
        "--live", help="Re-run the analysis and ask the affected nodes to run the proposed "
        "catalog in noop: what would really change on each machine, drift included.")] = False,
    live_timeout: Annotated[float, typer.Option(
        "--timeout", help="With --live: seconds to wait for the nodes' reports.")] = 120.0,
    as_json: JsonOption = False,
) -> None:
    """What will happen if this change runs: nodes, resources, before → after."""
    if live and not 0 < live_timeout <= 900:
        raise UsageError(f"--timeout {live_timeout:g}: between 0 and 900 seconds")
    # A live analysis answers once the nodes have reported (or the timeout passed).
    wait = live_timeout + 120.0 if live else 60.0
    with settings(ctx).client(timeout=wait) as client:
        if live:
            client.request("POST", f"/api/v1/changes/{change_id}/analyse",
                           json_body={"live": True, "timeout": live_timeout})
        elif again:
            client.request("POST", f"/api/v1/changes/{change_id}/analyse")
        if as_json:
            _print_json(client.request("GET", f"/api/v1/changes/{change_id}/impact"))
            return
        text = client.request_text("GET", f"/api/v1/changes/{change_id}/impact",
                                   params={"format": "text"})
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _reviewed(client: Any, change_id: str, head: str | None, digest: str | None,
              verb: str) -> dict[str, Any]:
    """The head and digest a verdict (or deploy) binds to, shown before it is sent.

    Given ``--head``/``--digest`` pin what the reviewer read; otherwise the change's current
    ones are read and shown, so the server refuses (409) if the change moves on meanwhile.
    """
    if head is None or digest is None:
        change = client.request("GET", f"/api/v1/changes/{change_id}")
        head = change["head"] if head is None else head
        digest = change.get("impact_digest") if digest is None else digest
    if digest is None and verb != "rejecting":
        raise UsageError(f"{change_id} has no impact report of head {head} yet: run 'steward "
                         f"change impact {change_id} --again' and review it first")
    typer.echo(f"{verb} {change_id} at head {head}, impact report {digest or '(none)'}",
               err=True)
    return {"head": head, "digest": digest}


def _review(where: Settings, action: str, change_id: str, body: dict[str, Any], as_json: bool,
            *, head: str | None, digest: str | None, verb: str) -> None:
    with where.client() as client:
        body = {**body, **_reviewed(client, change_id, head, digest, verb)}
        change = client.request("POST", f"/api/v1/changes/{change_id}/{action}",
                                json_body=body)
    if as_json:
        _print_json(change)
    else:
        _summary(change)


@change_app.command("approve")
@with_connection
def approve(
    ctx: typer.Context,
    change_id: Annotated[str, typer.Argument(help="chg-N")],
    comment: Annotated[str | None, typer.Option("--message", "-m")] = None,
    head: HeadOption = None, digest: DigestOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve the head and impact report you reviewed (never your own change).

    Shows the head and digest it approves; refused if the change moved on from them.
    """
    _review(settings(ctx), "approve", change_id, {"comment": comment}, as_json, head=head,
            digest=digest, verb="approving")


@change_app.command("reject")
@with_connection
def reject(
    ctx: typer.Context,
    change_id: Annotated[str, typer.Argument(help="chg-N")],
    reason: Annotated[str, typer.Option("--message", "-m")],
    head: HeadOption = None, digest: DigestOption = None,
    as_json: JsonOption = False,
) -> None:
    """Reject the head and impact report you reviewed."""
    _review(settings(ctx), "reject", change_id, {"reason": reason}, as_json, head=head,
            digest=digest, verb="rejecting")


@change_app.command("override")
@with_connection
def override(
    ctx: typer.Context,
    change_id: Annotated[str, typer.Argument(help="chg-N")],
    policy: Annotated[str, typer.Argument(help="The soft-mandatory policy's name.")],
    reason: Annotated[str, typer.Option("--message", "-m")],
    head: HeadOption = None, digest: DigestOption = None,
    as_json: JsonOption = False,
) -> None:
    """Override a failing soft-mandatory policy (recorded, bound to the report you read)."""
    _review(settings(ctx), "override", change_id, {"policy": policy, "reason": reason},
            as_json, head=head, digest=digest, verb="overriding on")


@change_app.command("validate")
@with_connection
def validate(
    ctx: typer.Context,
    change_id: Annotated[str, typer.Argument(help="chg-N")],
    verdict: Annotated[str, typer.Option(help="pass or fail")],
    evidence: Annotated[str, typer.Option(help="What was checked.")] = "",
) -> None:
    """Record a validator's verdict on the change's current impact report."""
    with settings(ctx).client() as client:
        result = client.request("POST", f"/api/v1/changes/{change_id}/validate",
                                json_body={"verdict": verdict, "evidence": evidence})
    typer.echo(f"{change_id}: validation {result['verdict']} recorded by {result['actor']}")


def _follow(client: Any, deployment_id: str, timeout: float) -> dict[str, Any]:
    """Poll the deployment, drawing a progress bar, until it finishes."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    deadline = time.monotonic() + timeout
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[status]}"), transient=False) as progress:
        bar = None
        while True:
            deployment: dict[str, Any] = client.request(
                "GET", f"/api/v1/deployments/{deployment_id}")
            counts = deployment["counts"]
            total = max(1, len(deployment["nodes"]))
            done = counts["succeeded"] + counts["failed"] + counts["skipped"]
            status = (f"{counts['succeeded']} ok, {counts['failed']} failed, "
                      f"{counts['running']} running")
            if bar is None:
                bar = progress.add_task(f"{deployment_id} ({deployment['change']})",
                                        total=total, status=status)
            progress.update(bar, completed=done, status=status)
            if deployment["state"] != "running" and \
                    deployment.get("change_state") != "deploying":
                return deployment
            if time.monotonic() > deadline:
                raise UsageError(f"{deployment_id} is still running after {timeout:g} s; "
                                 f"follow it with 'steward change show {deployment['change']}'")
            time.sleep(0.5)


@change_app.command("deploy")
@with_connection
def deploy(
    ctx: typer.Context,
    change_id: Annotated[str, typer.Argument(help="chg-N")],
    canary: Annotated[int, typer.Option(help="Nodes in the first batch.")] = 1,
    batch_size: Annotated[str, typer.Option(help="Later batches: a count or N%.")] = "25%",
    max_failures: Annotated[int, typer.Option(
        help="Halt after a batch with at least this many failed nodes.")] = 1,
    node_timeout: Annotated[float, typer.Option(help="Seconds to wait for each node.")] = 600,
    auto_rollback: Annotated[bool, typer.Option(help="Roll back automatically on halt.")] = False,
    wait: Annotated[bool, typer.Option(help="Follow the rollout until it ends.")] = True,
    timeout: Annotated[float, typer.Option(help="Give up following after this long.")] = 3600,
    head: Annotated[str | None, typer.Option(
        "--head", help="The approved head commit (default: the change's, shown).")] = None,
    digest: Annotated[str | None, typer.Option(
        "--digest", help="The approved impact digest (default: the change's, shown).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Merge an approved change and roll it out in batches (halts on failures).

    Sends the head and digest it deploys; refused unless the change was approved at them.
    """
    strategy = {"canary": canary, "batch_size": batch_size, "max_failures": max_failures,
                "node_timeout": node_timeout, "auto_rollback": auto_rollback}
    with settings(ctx).client() as client:
        reviewed = _reviewed(client, change_id, head, digest, "deploying")
        deployment = client.request("POST", f"/api/v1/changes/{change_id}/deploy",
                                    json_body={"strategy": strategy, **reviewed})
        if wait:
            deployment = _follow(client, deployment["id"], timeout)
    if as_json:
        _print_json(deployment)
        return
    typer.echo(f"{deployment['id']}: {deployment['state']}"
               + (f" — {deployment['detail']}" if deployment.get("detail") else ""))
    if wait:
        _table([{"batch": n["batch"], "node": n["certname"], "status": n["status"],
                 "detail": n["detail"]} for n in deployment["nodes"]])
        if deployment["state"] != "succeeded":
            raise typer.Exit(1)


@change_app.command("rollback")
@with_connection
def rollback(
    ctx: typer.Context,
    change_id: Annotated[str, typer.Argument(help="chg-N (deployed or failed)")],
    deploy_now: Annotated[bool, typer.Option(
        "--deploy/--no-deploy", help="Deploy the rollback once approved.")] = True,
    as_json: JsonOption = False,
) -> None:
    """Create the reverting change, analyse it, approve it on the fast path, deploy it."""
    with settings(ctx).client() as client:
        change = client.request("POST", f"/api/v1/changes/{change_id}/rollback")
        if not as_json:
            _summary(change)
        if deploy_now and change["state"] == "approved":
            deployment = client.request(
                "POST", f"/api/v1/changes/{change['id']}/deploy",
                json_body={"strategy": {"canary": 0, "batch_size": "100%",
                                        "max_failures": 1_000_000},
                           "head": change["head"], "digest": change["impact_digest"]})
            deployment = _follow(client, deployment["id"], 3600)
            if not as_json:
                typer.echo(f"{deployment['id']}: {deployment['state']}")
            change = client.request("GET", f"/api/v1/changes/{change['id']}")
    if as_json:
        _print_json(change)


@change_app.command("promote")
@with_connection
def promote(
    ctx: typer.Context,
    change_id: Annotated[str, typer.Argument(help="chg-N (deployed)")],
    to: Annotated[str, typer.Option("--to", help="The next environment.")],
    as_json: JsonOption = False,
) -> None:
    """Propose a deployed change to the next environment; it runs the pipeline again."""
    with settings(ctx).client() as client:
        change = client.request("POST", f"/api/v1/changes/{change_id}/promote",
                                json_body={"environment": to})
    if as_json:
        _print_json(change)
    else:
        _summary(change)


@change_app.command("trace")
@with_connection
def trace(
    ctx: typer.Context,
    change_id: Annotated[str, typer.Argument(help="chg-N")],
    as_json: JsonOption = False,
) -> None:
    """From proposal to the per-node reports that enforced it (also: steward audit trace)."""
    with settings(ctx).client() as client:
        document = client.request("GET", f"/api/v1/changes/{change_id}/trace")
    if as_json:
        _print_json(document)
        return
    render_trace(document)


def render_trace(document: dict[str, Any]) -> None:
    change = document["change"]
    typer.echo(f"{change['id']} [{change['state']}] {change['title']}")
    _table(_short_times([{"id": e["id"], "at": e["at"], "actor": e["actor"],
                          "action": e["action"], "target": e["target"],
                          "outcome": e["outcome"], "reason": e.get("reason")}
                         for e in document["audit"]]), title="audit trail")
    if document["reports"]:
        _table([{"deployment": r["deployment"], "node": r["certname"], "status": r["status"],
                 "report": r["report"], "commit": r["commit"][:12]}
                for r in document["reports"]], title="reports that enforced it")


# -- identities --------------------------------------------------------------------------------


@identity_app.command("create")
@with_connection
def identity_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The identity's name.")],
    kind: Annotated[str, typer.Option(help="human or agent")] = "human",
    role: Annotated[list[str] | None, typer.Option(
        help="ROLE or ROLE@ENVIRONMENT (repeatable).")] = None,
    expires_in: Annotated[float | None, typer.Option(help="Token lifetime, seconds.")] = None,
) -> None:
    """Create a human or agent identity with roles; prints its token once."""
    if kind not in ("human", "agent"):
        raise UsageError(f"--kind {kind!r}: human or agent")
    with settings(ctx).client() as client:
        created = client.request("POST", "/api/v1/identities", json_body={
            "name": name, "kind": kind, "roles": role or [], "expires_in": expires_in})
    roles = ", ".join(f"{b['role']}@{b['environment']}" for b in created["roles"]) or "none"
    typer.echo(f"created {kind} {name} (token id {created['id']}; roles: {roles})", err=True)
    typer.echo(created["token"])


@identity_app.command("list")
@with_connection
def identity_list(
    ctx: typer.Context,
) -> None:
    """Role bindings of every identity."""
    with settings(ctx).client() as client:
        rows = client.request("GET", "/api/v1/identities")
    if not rows:
        typer.echo("(no role bindings)")
        return
    _table(_short_times(rows))


@identity_app.command("grant")
@with_connection
def identity_grant(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="kind:name or a human's name.")],
    role: Annotated[str, typer.Argument(help="ROLE or ROLE@ENVIRONMENT")],
) -> None:
    """Grant a role, everywhere or in one environment."""
    role_name, _, env = role.partition("@")
    with settings(ctx).client() as client:
        client.request("POST", f"/api/v1/identities/{name}/roles",
                       json_body={"role": role_name, "environment": env or "*"})
    typer.echo(f"granted {role_name} in {env or 'every environment'} to {name}")


@identity_app.command("revoke-role")
@with_connection
def identity_revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="kind:name or a human's name.")],
    role: Annotated[str, typer.Argument(help="ROLE or ROLE@ENVIRONMENT")],
) -> None:
    """Revoke a role binding; effective on the next request."""
    role_name, _, env = role.partition("@")
    with settings(ctx).client() as client:
        client.request("DELETE", f"/api/v1/identities/{name}/roles/{role_name}",
                       params={"environment": env or "*"})
    typer.echo(f"revoked {role_name} in {env or 'every environment'} from {name}")


def register(app: typer.Typer) -> None:
    from steward.cli.audit_cmds import audit_app

    audit_app.command("trace")(trace)
    app.add_typer(change_app, name="change")
    app.add_typer(identity_app, name="identity")
