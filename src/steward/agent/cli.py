"""``steward agent``: the pull agent's command line (standard library only).

Dispatched by ``steward/__main__.py`` before typer loads, so it starts fast and runs on
nodes with nothing but python3. Exit codes of ``--once`` are the engine's (0 in sync,
2 changed, 4 failures, 8 pending under noop; see docs/engine.md); 1 means no catalog could
be enforced (not enrolled yet, credential refused, no server and no cached catalog).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from steward.errors import StewardError, UsageError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 60.0}


def parse_duration(text: str, what: str) -> float:
    """``30m``, ``90s``, ``1h``, ``7d``, ``500ms``; a bare number is minutes (Puppet's habit)."""
    match = _DURATION.match(text)
    if match is None:
        raise UsageError(f"{what} {text!r}: use a duration such as 30m, 90s, 1h or 500ms")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="steward agent",
        description="Pull agent: upload facts, fetch and enforce the catalog, submit the "
        "report; every --interval (plus --splay), or at once when an operator asks.",
    )
    parser.add_argument("--server", default=os.environ.get("STEWARD_SERVER"),
                        help="https://HOST:PORT of the Steward server ($STEWARD_SERVER)")
    parser.add_argument("--ca-cert", default=os.environ.get("STEWARD_CA_CERT"),
                        help="the Steward CA certificate (<data-dir>/tls/ca.crt on the server; "
                        "$STEWARD_CA_CERT); default: the system's trusted roots")
    parser.add_argument("--certname", help="this node's name (default: the host name)")
    parser.add_argument("--join-token-file",
                        help="file holding a join token, for enrollment without approval")
    parser.add_argument("--join-token", help="a join token (visible in the process list: "
                        "prefer --join-token-file or $STEWARD_JOIN_TOKEN)")
    parser.add_argument("--once", action="store_true", help="run once and exit")
    parser.add_argument("--noop", action="store_true", help="report what would change; "
                        "change nothing")
    parser.add_argument("--interval", default="30m",
                        help="time between runs (default 30m; a bare number is minutes)")
    parser.add_argument("--splay", default="0",
                        help="add a random delay up to this long to each interval")
    parser.add_argument("--root", help="confine path-based resources to this directory (a "
                        "sandbox for files, not a security boundary; see docs/engine.md)")
    parser.add_argument("--state-dir", help="agent and engine state (default: the engine's)")
    parser.add_argument("--facts-root", default="/",
                        help="read facts from files below this directory (default /)")
    parser.add_argument("--environment", help="ask for this environment")
    parser.add_argument("--timeout", default="60s", help="per-request timeout (default 60s)")
    parser.add_argument("--retry", default="15s", help="while enrollment awaits approval, ask "
                        "again this often (default 15s)")
    return parser


def main(argv: Sequence[str]) -> int:
    from steward.agent.run import AgentConfig, default_certname, run_agent
    from steward.engine.cli import default_state_dir

    args = _parser().parse_args(list(argv))
    try:
        if not args.server:
            raise UsageError("--server (or $STEWARD_SERVER) is required: https://HOST:PORT")
        root = Path(args.root).resolve() if args.root else None
        if root is not None and not root.is_dir():
            raise UsageError(f"--root {args.root} is not a directory")
        join = args.join_token or os.environ.get("STEWARD_JOIN_TOKEN") or None
        if args.join_token_file:
            try:
                join = Path(args.join_token_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise UsageError(f"cannot read --join-token-file {args.join_token_file}: "
                                 f"{exc.strerror}") from None
        interval = parse_duration(args.interval, "--interval")
        if interval <= 0:
            raise UsageError("--interval must be positive")
        config = AgentConfig(
            server=args.server.rstrip("/"),
            certname=args.certname or default_certname(),
            state_dir=(Path(args.state_dir) if args.state_dir else default_state_dir(root)),
            ca_file=args.ca_cert,
            join_token=join,
            root=root,
            facts_root=args.facts_root,
            environment=args.environment,
            noop=args.noop,
            interval=interval,
            splay=parse_duration(args.splay, "--splay"),
            timeout=parse_duration(args.timeout, "--timeout"),
            retry=max(parse_duration(args.retry, "--retry"), 0.1),
        )
        return run_agent(config, once=args.once)
    except StewardError as exc:
        sys.stderr.write(f"steward agent: error: {exc}\n")
        return 1
