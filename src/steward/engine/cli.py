"""``steward apply``, ``steward facts`` and ``steward task``: the node-side commands, stdlib only.

Exit codes of ``apply`` are bit flags, so a script can tell every outcome apart, including
the one Puppet's ``--detailed-exitcodes`` cannot (pending changes under noop):
0 in sync, 2 changes made, 4 failures, 8 changes pending (noop); 1 the run could not start.

``task`` runs one claimed part of a task job (docs/tasks.md) for agentless nodes: the task
document comes on stdin, because it may carry sensitive parameter values, which must never
be in an argv; the result JSON is printed (exit 0 whatever the task's own outcome, which is
its ``state``; 1 when the document is unusable).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from steward.errors import StewardError, UsageError


def default_state_dir(root: Path | None) -> Path:
    """Under --root the sandbox keeps its own state; otherwise the system or the user's dir."""
    if root is not None:
        return root / "var" / "lib" / "steward"
    if os.geteuid() == 0:
        return Path("/var/lib/steward")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "steward"


def _read_json(path: str, what: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}:{exc.lineno}:{exc.colno}: {what} is not valid JSON: {exc.msg}")\
            from exc


def load_sensitive_values(path: str | None) -> dict[str, str]:
    if path is None:
        return {}
    document = _read_json(path, "secrets bundle")
    if not isinstance(document, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in document.items()
    ):
        raise UsageError(f"{path}: the secrets bundle must be a JSON object of strings")
    return document


def run_apply(args: argparse.Namespace) -> int:
    # Imported here so that `steward facts` does not pay for the apply side.
    from steward.catalog.model import Catalog
    from steward.engine.context import Context
    from steward.engine.report import build_report, exit_code
    from steward.engine.runner import SubprocessRunner
    from steward.engine.summary import render_summary
    from steward.engine.transaction import apply_catalog

    catalog = Catalog.from_json(_read_json(args.catalog, "catalog"), source=args.catalog)
    root = Path(args.root).resolve() if args.root else None
    if root is not None and not root.is_dir():
        raise UsageError(f"--root {args.root} is not a directory")
    state_dir = Path(args.state_dir) if args.state_dir else default_state_dir(root)
    ctx = Context(runner=SubprocessRunner(), noop=args.noop, root=root, state_dir=state_dir)
    run = apply_catalog(catalog, ctx, load_sensitive_values(args.secrets))
    report = build_report(run)
    # Indenting disables json's C encoder and doubles the run time of a large no-change run,
    # so machines get compact JSON and people (a terminal, or --pretty) get it indented.
    pretty = args.pretty or sys.stdout.isatty()
    text = json.dumps(report, sort_keys=True, indent=2 if pretty else None, ensure_ascii=False)
    if args.report:
        Path(args.report).write_text(text + "\n", encoding="utf-8")
    if args.format == "summary":
        sys.stdout.write(render_summary(report) + "\n")
    elif not args.report or args.format == "json":
        sys.stdout.write(text + "\n")
    return exit_code(run)


#: What a task document must hold (the claim's dict), and the type of each field.
_TASK_FIELDS: dict[str, tuple[type, ...]] = {
    "task": (str,), "script_name": (str,), "script": (str,), "params": (dict,),
    "sensitive": (list,), "noop": (bool,), "timeout": (int, float),
}


def read_task(text: str) -> dict[str, Any]:
    """The task document from stdin, checked field by field (values never echoed)."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"stdin:{exc.lineno}:{exc.colno}: the task document is not valid "
                         f"JSON: {exc.msg}") from None
    if not isinstance(document, dict):
        raise UsageError("stdin: the task document must be a JSON object")
    for name, types in _TASK_FIELDS.items():
        value = document.get(name)
        if name in ("task", "script_name", "script") and value is None:
            raise UsageError(f"stdin: the task document has no {name!r}")
        if value is not None and (not isinstance(value, types) or (
                isinstance(value, bool) and bool not in types)):
            raise UsageError(f"stdin: the task document's {name!r} must be "
                             f"{' or '.join(t.__name__ for t in types)}")
    if not all(isinstance(item, str) for item in document.get("sensitive") or ()):
        raise UsageError("stdin: the task document's 'sensitive' must list parameter names")
    return document


def run_task_command(args: argparse.Namespace) -> int:
    from steward.engine.tasks import run_task

    root = Path(args.root).resolve() if args.root else None
    if root is not None and not root.is_dir():
        raise UsageError(f"--root {args.root} is not a directory")
    result = run_task(read_task(sys.stdin.read()), root=root)
    sys.stdout.write(json.dumps(result, sort_keys=True, ensure_ascii=False) + "\n")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="steward", description="Steward node engine")
    sub = parser.add_subparsers(dest="command", required=True)
    apply = sub.add_parser("apply", help="enforce a catalog on this node and print the report")
    apply.add_argument("--catalog", required=True, help="catalog JSON file, or - for stdin")
    apply.add_argument("--noop", action="store_true", help="report what would change; change "
                       "nothing")
    apply.add_argument("--root", help="confine path-based resources to this directory (a "
                       "sandbox for files, not a security boundary)")
    apply.add_argument("--state-dir", help="where drift history and backups live")
    apply.add_argument("--secrets", help="JSON bundle of the catalog's sensitive values")
    apply.add_argument("--report", help="also write the report JSON to this file")
    apply.add_argument(
        "--format", choices=("json", "summary"), default=None, help="what to print (default json)"
    )
    apply.add_argument(
        "--pretty", action="store_true", help="indent the JSON (the default on a terminal)"
    )
    task = sub.add_parser("task", help="run one task document (JSON on stdin) and print its "
                          "result JSON")
    task.add_argument("--root", help="the sandbox root the task sees as $STEWARD_ROOT")
    facts = sub.add_parser("facts", help="print this node's facts as JSON")
    facts.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str]) -> int:
    if argv and argv[0] == "facts":
        from steward.facts.cli import main as facts_main

        return facts_main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        return run_task_command(args) if args.command == "task" else run_apply(args)
    except StewardError as exc:
        sys.stderr.write(f"steward: error: {exc}\n")
        return 1
