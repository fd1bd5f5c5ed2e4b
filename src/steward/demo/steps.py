"""The main job, one small function per step (see :data:`STEPS`).

Each step takes the shared :class:`~steward.demo.runtime.Demo`, prints what it does, and raises
:class:`~steward.demo.runtime.DemoError` when something is not as it should be. Later steps
(the change pipeline: propose, impact, approve, deploy) are appended to :data:`STEPS`; the
secret check and the summary always run last (see :func:`steward.demo.run_demo`).
"""

from __future__ import annotations

import json
import secrets as pysecrets
import shutil
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from steward.demo.pipeline_steps import PIPELINE_STEPS
from steward.demo.runtime import DEMO_NODES, AgentRun, Demo, DemoError, free_port, short_hashes
from steward.engine.report import EXIT_CHANGED, EXIT_FAILED, EXIT_PENDING

Step = Callable[[Demo], None]

#: Marks a directory as the demo's own output, so re-running may wipe it.
MARKER = ".steward-demo"
#: What an output directory of an older demo holds (wiped too, for those upgrading).
_OLD_LAYOUT = frozenset({"data", "nodes", "catalogs", "reports", "server.log", "join.token"})

#: Directories every Debian base system has, so a sandbox root looks like a fresh node.
_SKELETON = (
    "etc/default", "etc/sysctl.d", "etc/cron.d", "etc/apt/sources.list.d", "etc/ssh",
    "etc/systemd/system", "etc/logrotate.d", "home", "opt", "root", "srv", "tmp",
    "usr/local/bin", "usr/local/sbin", "var/backups", "var/cache", "var/lib", "var/log",
    "var/www",
)

#: Where the example repository puts the secret on db1 (profiles/postgresql.yaml).
SENSITIVE_FILE = "etc/steward/db_password"


# -- helpers ---------------------------------------------------------------------------------


def describe_exit(code: int) -> str:
    """The agent's exit code in words (the engine's bit flags; 1: nothing was enforced)."""
    if code == 0:
        return "in sync, nothing to do"
    if code == 1:
        return "nothing enforced"
    words = []
    if code & EXIT_CHANGED:
        words.append("changed")
    if code & EXIT_FAILED:
        words.append("failures")
    if code & EXIT_PENDING:
        words.append("changes pending (noop)")
    return ", ".join(words) or f"exit {code}"


def run_agents(demo: Demo, step: str, expect: dict[str, int], *, noop: bool = False,
               enroll: bool = False) -> None:
    """One ``steward agent --once`` per node, side by side; each must exit as expected."""
    def args(node: str, show: bool) -> list[str]:
        path = demo.shown if show else str
        argv = ["agent", "--server", demo.server_url, "--ca-cert", path(demo.ca_cert),
                "--certname", node, "--root", path(demo.root(node)), "--once"]
        if enroll:
            argv += ["--join-token-file", path(demo.join_token_file)]
        if noop:
            argv.append("--noop")
        return argv

    nodes = list(expect)
    demo.command(args(nodes[0], show=True))
    if len(nodes) > 1:
        demo.say(f"  (and the same for {', '.join(nodes[1:])}, side by side)")
    results = demo.parallel({node: args(node, show=False) for node in nodes})
    for node in nodes:
        result = results[node]
        demo.runs.append(AgentRun(step, node, result.returncode, noop))
        demo.say(f"{node}: exit {result.returncode}: {describe_exit(result.returncode)}",
                 indent=2)
        prefix = f"steward agent: {node}: "
        for line in (result.stdout + result.stderr).splitlines():
            if line.strip():
                demo.say(short_hashes(line.removeprefix(prefix)), indent=6)
    wrong = [node for node in nodes if results[node].returncode != expect[node]]
    if wrong:
        node = wrong[0]
        raise DemoError(
            f"{step}: the agent of {node} exited {results[node].returncode} "
            f"({describe_exit(results[node].returncode)}), expected {expect[node]} "
            f"({describe_exit(expect[node])}); its last words: "
            f"{demo.redact(results[node].last_line())}; server log: "
            f"{demo.shown(demo.server_log)}")


def ask(demo: Demo, *questions: tuple[str, str]) -> None:
    """Ask the server questions in PQL (side by side) and show each answer as ``steward
    query`` prints it, in order."""
    commands = {str(number): ["query", pql, "--data-dir", str(demo.data_dir)]
                for number, (_question, pql) in enumerate(questions)}
    results = demo.parallel(commands)
    for number, (question, pql) in enumerate(questions):
        result = results[str(number)]
        demo.say()
        demo.say(f"-- {question}")
        demo.command(["query", pql, "--data-dir", demo.shown(demo.data_dir)])
        if result.returncode != 0:
            raise DemoError(f"the query {pql!r} failed (exit {result.returncode}): "
                            f"{demo.redact(result.last_line())}")
        demo.say(result.stdout.rstrip("\n"))
        if result.stderr.strip():
            demo.say(result.stderr.strip())


def query_json(demo: Demo, pql: str) -> list[dict[str, Any]]:
    """The rows of a PQL query (not shown), for the demo's own checks."""
    result = demo.steward("query", pql, "--json", "--data-dir", str(demo.data_dir),
                          what=f"the query {pql!r}")
    try:
        rows = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise DemoError(f"the query {pql!r} did not answer JSON") from None
    if not isinstance(rows, list):
        raise DemoError(f"the query {pql!r} did not answer a list")
    return [row for row in rows if isinstance(row, dict)]


def _wipe(demo: Demo) -> None:
    """Empty the output directory, but only if it is the demo's own (never a user's files)."""
    workdir = demo.workdir
    if workdir.is_symlink() or (workdir.exists() and not workdir.is_dir()):
        raise DemoError(f"--workdir {workdir} is not a directory")
    if workdir.is_dir():
        names = {entry.name for entry in workdir.iterdir()}
        if names and MARKER not in names and not names <= _OLD_LAYOUT:
            raise DemoError(f"refusing to wipe {workdir}: it is not a demo output directory "
                            f"(no {MARKER}); choose another --workdir")
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / MARKER).write_text("Output of 'steward demo'; wiped by its next run.\n",
                                  encoding="utf-8")


# -- the steps -------------------------------------------------------------------------------


def prepare(demo: Demo) -> None:
    """Start from nothing: wipe the output directory, choose a port and a secret."""
    _wipe(demo)
    demo.workdir = demo.workdir.resolve()
    demo.port = free_port()
    demo.since = (demo.clock.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    demo.secret_value = pysecrets.token_urlsafe(18)
    demo.say("Steward demo: an embedded control plane (SQLite, a local git repository of "
             "desired state) and three sandboxed pull-agent nodes on this machine.")
    demo.say(f"Everything goes to {demo.shown(demo.workdir)}/.")


def init(demo: Demo) -> None:
    """``steward init``: CA and certificates, database, desired-state repository, admin token;
    then the db_password secret, into the encrypted store."""
    demo.heading("1. Initialise the control plane")
    args = ["init", "--data-dir", str(demo.data_dir), "--port", str(demo.port)]
    shown = ["init", "--data-dir", demo.shown(demo.data_dir), "--port", str(demo.port)]
    if demo.repo is not None:
        args += ["--repo", str(demo.repo)]
        shown += ["--repo", demo.shown(demo.repo)]
    demo.command(shown)
    result = demo.steward(*args, what="steward init")
    token_file = demo.data_dir / "admin.token"
    try:
        demo.redactions.append(token_file.read_text(encoding="utf-8").strip())
    except OSError:
        raise DemoError(f"steward init did not save the admin token in {token_file}") from None
    demo.say(result.stdout.rstrip("\n"), indent=2)
    demo.say()
    demo.command(["secret", "set", "db_password", "--data-dir", demo.shown(demo.data_dir)])
    demo.say("  (value: a random one generated by the demo, read from stdin; never shown)")
    result = demo.steward("secret", "set", "db_password", "--data-dir", str(demo.data_dir),
                          stdin=demo.secret_value + "\n", what="steward secret set")
    demo.say(result.stdout.rstrip("\n"), indent=2)


def start_server(demo: Demo) -> None:
    """``steward server`` in the background, its log in ``server.log``."""
    demo.heading("2. Start the server")
    demo.command(["server", "--data-dir", demo.shown(demo.data_dir)])
    seconds = demo.start_server()
    demo.say(f"  serving {demo.server_url} (answered after {seconds:.1f}s; log: "
             f"{demo.shown(demo.server_log)})")


def create_join_token(demo: Demo) -> None:
    """A join token for the three nodes, so they enroll without waiting for approval."""
    demo.heading("3. Enroll three sandboxed nodes with a join token")
    argv = ["token", "create", "--kind", "join", "--expires", "1h", "--uses",
            str(len(DEMO_NODES))]
    demo.command([*argv, "--data-dir", demo.shown(demo.data_dir)])
    result = demo.steward(*argv, "--data-dir", str(demo.data_dir), what="steward token create")
    token = result.stdout.strip().splitlines()[0].strip() if result.stdout.strip() else ""
    if not token:
        raise DemoError("steward token create printed no token")
    demo.redactions.append(token)
    demo.join_token_file.touch(mode=0o600)
    demo.join_token_file.write_text(token + "\n", encoding="utf-8")
    details = result.stderr.strip().strip("()")
    demo.say(f"  the token went to {demo.shown(demo.join_token_file)} (mode 0600; not shown)"
             + (f": {details}" if details else ""))
    for node in DEMO_NODES:
        root = demo.root(node)
        for sub in _SKELETON:
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "etc/hostname").write_text(f"{node}\n", encoding="utf-8")
        (root / "etc/hosts").write_text(
            f"127.0.0.1\tlocalhost\n127.0.1.1\t{node}\n::1\tlocalhost ip6-localhost\n",
            encoding="utf-8")
    demo.say(f"  sandbox roots (a bare Debian directory tree each): "
             f"{demo.shown(demo.nodes_dir)}/{{{','.join(DEMO_NODES)}}}")


def predict(demo: Demo) -> None:
    """First run in noop: each node enrolls, uploads facts, gets its catalog, predicts."""
    demo.heading("4. First run, in noop: enroll, fetch the catalog, predict the changes")
    run_agents(demo, "noop run", dict.fromkeys(DEMO_NODES, EXIT_PENDING),
               noop=True, enroll=True)
    ask(demo, ("What would change on db1? (recorded as noop events)",
               'events[resource_type, resource_title, property, old_value, new_value] '
               '{ certname = "db1" and status = "noop" }'))


def apply(demo: Demo) -> None:
    """A real run: the predicted changes are made."""
    demo.heading("5. Enforce")
    run_agents(demo, "first real run", dict.fromkeys(DEMO_NODES, EXIT_CHANGED))


def apply_again(demo: Demo) -> None:
    """Again: nothing left to do."""
    demo.heading("6. Enforce again: nothing left to do")
    run_agents(demo, "second real run", dict.fromkeys(DEMO_NODES, 0))


def drift(demo: Demo) -> None:
    """Change the sandboxes behind Steward's back; the next runs correct and flag it."""
    demo.heading("7. Drift: change the machines behind Steward's back, then run again")
    plan = (
        ("web1", "etc/motd", "edit"),
        ("db1", SENSITIVE_FILE, "chmod"),
        ("web2", "etc/sysctl.d/99-steward.conf", "remove-parent"),
    )
    expect: dict[str, int] = dict.fromkeys(DEMO_NODES, 0)
    for node, relative, action in plan:
        path = demo.root(node) / relative
        if not path.is_file():
            continue  # another repository (--repo) may not manage it
        if action == "edit":
            path.write_text("edited by hand\n", encoding="utf-8")
            done, expect[node] = f"edited /{relative} by hand", EXIT_CHANGED
        elif action == "chmod":
            path.chmod(0o644)
            done, expect[node] = (f"chmod 0644 /{relative} (a secret, now world-readable)",
                                  EXIT_CHANGED)
        else:
            shutil.rmtree(path.parent)
            done, expect[node] = (f"rm -r /{path.parent.relative_to(demo.root(node))} (a "
                                  "directory Steward does not manage, holding one it does)",
                                  EXIT_FAILED)
        demo.tampered.setdefault(node, []).append(done)
        demo.say(f"  {node}: {done}")
    run_agents(demo, "run after drift", expect)


def questions(demo: Demo) -> None:
    """The state store answers: what changed, failed, drifted; an implicit subquery."""
    demo.heading("8. Ask the state store (PQL, as PuppetDB)")
    demo.say(f"  (\"the last hour\" is written as a timestamp: {demo.since})")
    since = demo.since
    ask(demo,
        ("Every run reported in the last hour",
         f'reports[certname, status, noop, corrective_change, receive_time] '
         f'{{ receive_time > "{since}" order by receive_time }}'),
        ("Which nodes changed in the last hour? (and in how many runs)",
         f'reports[certname, count()] {{ status = "changed" and receive_time > "{since}" '
         f'group by certname }}'),
        ("Which nodes failed? (their latest run)",
         'nodes[certname, latest_report_status, report_timestamp] '
         '{ latest_report_status = "failed" }'),
        ("Which nodes drifted in the last hour? (corrective changes)",
         f'events[certname, resource_title, property, old_value, new_value] '
         f'{{ corrective_change = true and timestamp > "{since}" }}'),
        ("Which nodes have nginx in their catalog? (an implicit subquery)",
         'nodes[certname, catalog_environment] '
         '{ resources { type = "Package" and title = "nginx" } }'))


def repair(demo: Demo) -> None:
    """Fix what failed by hand; the failed node's next run enforces the rest."""
    broken = [node for node, done in demo.tampered.items()
              if any(text.startswith("rm -r") for text in done)]
    if not broken:
        return
    demo.heading("9. Repair: restore what was removed, and run the failed node again")
    for node in broken:
        (demo.root(node) / "etc/sysctl.d").mkdir(parents=True, exist_ok=True)
        demo.say(f"  {node}: mkdir /etc/sysctl.d")
    run_agents(demo, "run after repair", dict.fromkeys(broken, EXIT_CHANGED))
    ask(demo, ("Every node's latest run",
               'nodes[certname, latest_report_status, latest_report_corrective_change, '
               'catalog_environment] { }'))


def verify_store(demo: Demo) -> None:
    """The store must hold exactly the runs the agents made, with the right flags."""
    rows = query_json(demo, f'reports[certname, status, noop, noop_pending, corrective_change] '
                            f'{{ receive_time > "{demo.since}" order by receive_time }}')
    for node in DEMO_NODES:
        stored = [row for row in rows if row.get("certname") == node]
        runs = [run for run in demo.runs if run.node == node]
        if len(stored) != len(runs):
            raise DemoError(f"the state store holds {len(stored)} report(s) of {node} from this "
                            f"demo, but its agent ran {len(runs)} time(s)")
        for run, row in zip(runs, stored, strict=True):
            expected = ("failed" if run.exit_code & EXIT_FAILED else
                        "changed" if run.exit_code & EXIT_CHANGED else "unchanged")
            problems = []
            if row.get("status") != expected:
                problems.append(f"status {row.get('status')!r}, expected {expected!r}")
            if bool(row.get("noop")) != run.noop:
                problems.append(f"noop {row.get('noop')}, expected {run.noop}")
            if run.noop and not row.get("noop_pending"):
                problems.append("noop_pending is false after a noop run that predicted changes")
            if (run.step == "run after drift" and run.exit_code == EXIT_CHANGED
                    and row.get("corrective_change") is not True):
                problems.append("the correction of drift is not marked corrective_change")
            if problems:
                raise DemoError(f"the stored report of {node}'s {run.step}: "
                                + "; ".join(problems))


#: The main job, in order. The secret check and the summary follow them (see run_demo).
STEPS: tuple[Step, ...] = (
    prepare, init, start_server, create_join_token, predict, apply, apply_again, drift,
    questions, repair, verify_store, *PIPELINE_STEPS,
)


# -- the end ---------------------------------------------------------------------------------


def check_secret(demo: Demo) -> str:
    """The secret must be where db1 enforces it and nowhere else: not in anything printed,
    not in a report, the database, the server log or another node. Returns what was found."""
    value = demo.secret_value
    if not value:
        return "no secret was set"
    if any(value in text for text in demo.transcript):
        raise DemoError("the db_password secret appeared in a command's output")
    db1 = demo.root("db1")
    enforced = db1 / SENSITIVE_FILE
    # The agent's catalog cache holds the node's own sensitive values, which its managed
    # files hold anyway (0600, docs/server.md): the node's own copy, not a leak.
    cache = db1 / "var" / "lib" / "steward" / "agent" / "catalog.json"
    allowed = {enforced, cache}
    needle = value.encode()
    leaks = sorted(demo.shown(path) for path in demo.workdir.rglob("*")
                   if path.is_file() and not path.is_symlink() and path not in allowed
                   and needle in path.read_bytes())
    if leaks:
        raise DemoError(f"the db_password secret was found in {', '.join(leaks)}")
    if enforced.is_file():
        if needle not in enforced.read_bytes():
            raise DemoError(f"db1's /{SENSITIVE_FILE} does not hold the db_password secret")
        mode = enforced.stat().st_mode & 0o777
        if mode != 0o600:
            raise DemoError(f"db1's /{SENSITIVE_FILE} has mode {mode:04o}, not 0600")
        return (f"db_password only in db1's /{SENSITIVE_FILE} (0600): in no output, report, "
                "log, database or other node")
    if demo.repo is None:
        raise DemoError(f"db1 did not get /{SENSITIVE_FILE} from the example repository")
    return "db_password appears nowhere (this repository does not give it to db1)"


def summary(demo: Demo, secret: str, seconds: float) -> None:
    """What the run showed, in a few lines."""
    demo.heading("Summary")
    runs = len(demo.runs)
    demo.say(f"  control plane  {demo.server_url}: SQLite and a git repository of desired "
             f"state, in {demo.shown(demo.data_dir)}")
    demo.say(f"  nodes          {', '.join(DEMO_NODES)} enrolled with one join token; "
             f"{runs} agent runs, {runs} reports stored")
    demo.say("  enforcement    predicted in noop (exit 8), enforced (2), then in sync (0)")
    after = {run.node: run.exit_code for run in demo.runs if run.step == "run after drift"}
    drifted = [f"{node}: {'; '.join(done)}" for node, done in demo.tampered.items()
               if after.get(node, 0) & EXIT_CHANGED]
    failed = [f"{node}: {'; '.join(done)}" for node, done in demo.tampered.items()
              if after.get(node, 0) & EXIT_FAILED]
    if drifted:
        demo.say(f"  drift          {' | '.join(drifted)}")
        demo.say("                 -> corrected by the next run, reported with "
                 "corrective_change")
    if failed:
        demo.say(f"  failure        {' | '.join(failed)}")
        demo.say("                 -> the run failed; 'steward query' found it; repaired, "
                 "the next run enforced the rest")
    if demo.pipeline:
        demo.say("  pipeline       chg-1 proposed by an agent, analysed (1 node), its own approval "
                 "refused, approved by two humans, deployed in batches")
        demo.say("                 chg-2 halted on its canary, rolled back on the fast path; "
                 "audit traced, verified, an edited row and a cut-off tail caught")
    demo.say(f"  secret         {secret}")
    demo.say(f"  output         {demo.shown(demo.workdir)}/ (data/, nodes/, server.log); "
             f"took {seconds:.1f}s")
