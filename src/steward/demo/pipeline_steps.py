"""The main job's second half: the change pipeline, as agents and people use it.

A planner agent proposes, the impact analysis and the policies judge the change, the agent's
own approval is refused, humans override and approve, an executor agent deploys in batches;
a second change fails on the canary and halts the rollout; a debugger agent finds why with a
read-only task (and may not run a remediation one); the rollback restores it; the audit trail
traces the change, verifies, and catches a row edited in the database.
"""

from __future__ import annotations

import json
import shlex
import sqlite3
import subprocess
from typing import Any

from steward.demo.runtime import Demo, DemoError

IDENTITIES = {
    # name: (kind, roles)
    "planner-bot": ("agent", ["planner"]),
    "exec-bot": ("agent", ["executor"]),
    "debug-bot": ("agent", ["debugger"]),
    "alice": ("human", ["approver"]),
    "bob": ("human", ["approver@production"]),
}
#: The failing change's new file; on db1 a directory is in its way.
MAINTENANCE = "etc/steward/maintenance"


def _token(demo: Demo, name: str) -> str:
    return str(demo.pipeline["tokens"][name])


def _as(demo: Demo, name: str, *args: str, check: bool = True, show: bool = True) -> Any:
    """Run ``steward ARGS`` as identity ``name``; print the command and its output."""
    argv = [*args, "--data-dir", str(demo.data_dir)]
    if show:
        demo.say()
        demo.say(f"[{name}]$ steward " + shlex.join(args))
    result = demo.steward(*argv, token=_token(demo, name), check=check)
    if show:
        text = (result.stdout + result.stderr).rstrip("\n")
        if text:
            demo.say(demo.redact(text), indent=2)
    return result


def _json(demo: Demo, name: str, *args: str) -> Any:
    result = _as(demo, name, *args, "--json", show=False)
    return json.loads(result.stdout)


def identities(demo: Demo) -> None:
    """Least-privilege identities for two agents and two people (tokens shown once)."""
    demo.heading("10. Identities: planner, executor and debugger agents, two human approvers")
    demo.pipeline = {"tokens": {}}
    for name, (kind, roles) in IDENTITIES.items():
        args = ["identity", "create", name, "--kind", kind]
        for role in roles:
            args += ["--role", role]
        demo.command(args)
        result = demo.steward(*args, "--data-dir", str(demo.data_dir))
        token = result.stdout.strip()
        demo.redactions.append(token)
        demo.pipeline["tokens"][name] = token
        demo.say(f"  {result.stderr.strip()}")


def start_agents(demo: Demo) -> None:
    """Agents as daemons: they enforce on a schedule and answer "run now" within seconds."""
    demo.heading("11. Start the pull agents as daemons (they long-poll for 'run now')")
    for node in ("web1", "web2", "db1"):
        argv = ["agent", "--server", demo.server_url, "--ca-cert", str(demo.ca_cert),
                "--certname", node, "--root", str(demo.root(node)), "--interval", "1h"]
        log = (demo.workdir / f"agent-{node}.log").open("w")
        proc = subprocess.Popen(demo.argv(argv), stdout=log, stderr=subprocess.STDOUT,
                                text=True, env=demo.env())
        log.close()
        demo.children.append(proc)
    demo.command(["agent", "--server", demo.server_url, "--ca-cert",
                  demo.shown(demo.ca_cert), "--certname", "web1", "--root",
                  demo.shown(demo.root("web1")), "--interval", "1h"])
    demo.say("  (and the same for web2 and db1, in the background)")


def propose(demo: Demo) -> None:
    """The planner agent edits desired state, never a machine: web-tier connection limits."""
    demo.heading("12. The planner agent proposes a change: raise the web tier's connection "
                 "limits in production")
    edited = demo.workdir / "web.yaml"
    edited.write_text("nginx::sites:\n  - example.com\n  - shop.example.com\n"
                      "nginx::worker_connections: 8192\n"
                      "base::sysctl:\n  net.core.somaxconn: 8192\n", encoding="utf-8")
    _as(demo, "planner-bot", "change", "propose", "--to", "production", "-m",
        "Raise somaxconn and nginx worker_connections to 8192 on the web tier", "--edit",
        f"data/roles/web.yaml={edited}")
    change = _json(demo, "planner-bot", "change", "show", "chg-1")
    if change["state"] != "analysed":
        raise DemoError(f"chg-1 is {change['state']} after its proposal, expected analysed")
    demo.say()
    demo.say("-- What will happen if it runs? (only the nodes whose compile inputs it touches "
             "are recompiled)")
    _as(demo, "planner-bot", "change", "impact", "chg-1")
    report = _json(demo, "planner-bot", "change", "impact", "chg-1")
    affected = sorted(n["certname"] for n in report["nodes"] if n["status"] == "changed")
    if affected != ["web1"]:
        raise DemoError(f"chg-1 should affect web1 only in production, not {affected}")


def review(demo: Demo) -> None:
    """Separation of duties: the agent cannot approve; humans override and approve."""
    demo.heading("13. Review: the proposer cannot approve; humans override and approve")
    refused = _as(demo, "planner-bot", "change", "approve", "chg-1", check=False)
    if refused.returncode == 0:
        raise DemoError("the planner agent approved its own change")
    early = _as(demo, "exec-bot", "change", "deploy", "chg-1", check=False)
    if early.returncode == 0:
        raise DemoError("an unapproved change was deployed")
    _as(demo, "alice", "change", "override", "chg-1", "blast_radius", "-m",
        "two production nodes: any change is 50%; reviewed")
    _as(demo, "alice", "change", "approve", "chg-1", "-m", "looks right")
    _as(demo, "bob", "change", "approve", "chg-1", "-m", "agreed")
    change = _json(demo, "alice", "change", "show", "chg-1")
    if change["state"] != "approved":
        raise DemoError(f"chg-1 is {change['state']} after two approvals: "
                        f"{change['gates']['waiting_for']}")


def deploy(demo: Demo) -> None:
    """The executor agent deploys; the web node's agent is woken and enforces it."""
    demo.heading("14. The executor agent deploys chg-1 (canary first, then batches)")
    _as(demo, "exec-bot", "change", "deploy", "chg-1", "--canary", "1", "--batch-size", "1",
        "--node-timeout", "90")
    sysctl = (demo.root("web1") / "etc/sysctl.d/99-steward.conf").read_text(encoding="utf-8")
    if "net.core.somaxconn = 8192" not in sysctl:
        raise DemoError("web1's /etc/sysctl.d/99-steward.conf does not have "
                        "net.core.somaxconn = 8192 after the deploy")
    demo.say("  web1: /etc/sysctl.d/99-steward.conf now has net.core.somaxconn = 8192")


def failing_change(demo: Demo) -> None:
    """A change that fails on the canary halts the rollout; the other node is untouched."""
    demo.heading("15. A change that fails on its canary halts the rollout")
    (demo.root("db1") / MAINTENANCE).mkdir(parents=True, exist_ok=True)
    demo.say(f"  (db1: mkdir /{MAINTENANCE} by hand, so a file cannot be written there)")
    base = demo.workdir / "base.yaml"
    shown = subprocess.run(["git", "-C", str(demo.data_dir / "desired.git"), "show",
                            "production:profiles/base.yaml"], capture_output=True, text=True,
                           check=False)
    if shown.returncode != 0:
        raise DemoError(f"cannot read profiles/base.yaml from production: {shown.stderr}")
    marker = "resources:\n"
    text = shown.stdout.replace(marker, marker + '  file[/etc/steward/maintenance]:\n'
                                '    content: "no maintenance window\\n"\n'
                                '    mode: "0644"\n', 1)
    base.write_text(text, encoding="utf-8")
    _as(demo, "planner-bot", "change", "propose", "--to", "production", "-m",
        "Publish the maintenance window on every node", "--edit",
        f"profiles/base.yaml={base}")
    _as(demo, "alice", "change", "override", "chg-2", "blast_radius", "-m", "reviewed",
        show=False)
    _as(demo, "alice", "change", "approve", "chg-2", show=False)
    _as(demo, "bob", "change", "approve", "chg-2", show=False)
    demo.say("  (alice overrides blast_radius and approves; bob approves)")
    halted = _as(demo, "exec-bot", "change", "deploy", "chg-2", "--canary", "1",
                 "--batch-size", "1", "--max-failures", "1", "--node-timeout", "90",
                 check=False)
    if halted.returncode == 0:
        raise DemoError("chg-2 should have halted on db1")
    if (demo.root("web1") / MAINTENANCE).exists():
        raise DemoError("web1 was changed although the rollout halted before its batch")
    state = _json(demo, "alice", "change", "show", "chg-2")["state"]
    if state != "failed":
        raise DemoError(f"chg-2 is {state} after the halt, expected failed")


def investigate(demo: Demo) -> None:
    """A debugger agent looks at the failure with a read-only task; it may not remediate."""
    demo.heading("16. A debugger agent investigates db1 with a read-only task")
    found = _as(demo, "debug-bot", "task", "run", "file_info", "--nodes",
                'certname = "db1"', "--param", f"path=/{MAINTENANCE}")
    if '"type": "directory"' not in found.stdout:
        raise DemoError(f"file_info did not find the directory in the way on db1: "
                        f"{found.stdout}{found.stderr}")
    refused = _as(demo, "debug-bot", "task", "run", "restart_service", "--nodes",
                  'certname = "db1"', "--param", "name=nginx", check=False)
    if refused.returncode == 0 or "task:run" not in refused.stdout + refused.stderr:
        raise DemoError("the debugger should not be allowed to run a remediation task")


def rollback(demo: Demo) -> None:
    """Roll back the failed change through the fast path; a human approves in production."""
    demo.heading("17. Roll back chg-2 (a human approves the fast path in production)")
    created = _json(demo, "exec-bot", "change", "rollback", "chg-2", "--no-deploy")
    rid = created["id"]
    demo.say(f"  {rid}: {created['title']} [{created['state']}]")
    for item in created["gates"]["waiting_for"]:
        demo.say(f"  waiting for {item}")
    if created["state"] != "approved":
        _as(demo, "alice", "change", "approve", rid, "-m", "roll it back")
    (demo.root("db1") / MAINTENANCE).rmdir()
    demo.say(f"  (db1: rmdir /{MAINTENANCE}: the obstacle is cleared)")
    _as(demo, "exec-bot", "change", "deploy", rid, "--canary", "0", "--batch-size", "100%",
        "--max-failures", "5", "--node-timeout", "90")
    state = _json(demo, "alice", "change", "show", "chg-2")["state"]
    if state != "rolled_back":
        raise DemoError(f"chg-2 is {state} after its rollback deployed, expected rolled_back")


def audit(demo: Demo) -> None:
    """Every step is in a tamper-evident audit trail, queryable in PQL."""
    demo.heading("18. Audit: trace the change, query the trail, verify the hash chain")
    demo.command(["audit", "trace", "chg-1", "--data-dir", demo.shown(demo.data_dir)])
    traced = demo.steward("audit", "trace", "chg-1", "--data-dir", str(demo.data_dir))
    demo.say(traced.stdout.rstrip("\n"))
    demo.say()
    demo.say("-- Who was refused what? (audit entries are a PQL entity)")
    pql = 'audit[actor, action, target, reason] { outcome = "denied" order by id }'
    demo.command(["query", pql, "--data-dir", demo.shown(demo.data_dir)])
    result = demo.steward("query", pql, "--data-dir", str(demo.data_dir))
    demo.say(result.stdout.rstrip("\n"))
    demo.command(["audit", "verify", "--data-dir", demo.shown(demo.data_dir)])
    verified = demo.steward("audit", "verify", "--data-dir", str(demo.data_dir))
    demo.say(verified.stdout.rstrip("\n"), indent=2)


def tamper(demo: Demo) -> None:
    """Edit one audit row in the database, as someone with database access could: caught."""
    demo.heading("19. Tamper with the audit log in the database: verification fails")
    for proc in demo.children:
        proc.terminate()
    demo.stop_children()
    demo.stop_server()
    config = json.loads((demo.data_dir / "config.json").read_text(encoding="utf-8"))
    path = str(config["database_url"]).removeprefix("sqlite:///")
    db = sqlite3.connect(path)
    try:
        for (name,) in db.execute("select name from sqlite_master where type = 'trigger' "
                                  "and tbl_name = 'steward_audit'").fetchall():
            db.execute(f'drop trigger "{name}"')
        db.execute("update steward_audit set actor = 'human:mallory' where id = "
                   "(select min(id) from steward_audit where action = 'change.deploy')")
        # And cut off the last two entries, moving the head back so the chain ends cleanly:
        # only the witness file outside the database (audit-witness.jsonl) still knows.
        (last,) = db.execute("select max(id) from steward_audit").fetchone()
        db.execute("delete from steward_audit where id > ?", (last - 2,))
        db.execute("update steward_audit_head set last_id = id_, last_hash = h from (select "
                   "id as id_, entry_hash as h from steward_audit where id = ?)", (last - 2,))
        db.commit()
    finally:
        db.close()
    demo.say("  sqlite3 steward.db: drop the append-only triggers; set the actor of chg-1's "
             "deploy entry to human:mallory; delete the last two entries and move the head")
    demo.command(["audit", "verify", "--data-dir", demo.shown(demo.data_dir)])
    result = demo.steward("audit", "verify", "--data-dir", str(demo.data_dir), check=False)
    output = (result.stdout + result.stderr).rstrip("\n")
    demo.say(output, indent=2)
    if result.returncode == 0 or "was edited" not in output:
        raise DemoError("steward audit verify did not notice an edited audit row")
    if f"entries {last - 1}..{last} are missing" not in output:
        raise DemoError("steward audit verify did not notice the deleted tail")


PIPELINE_STEPS = (identities, start_agents, propose, review, deploy, failing_change, investigate,
                  rollback, audit, tamper)
