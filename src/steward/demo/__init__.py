"""The README's main job: an embedded control plane and three sandboxed pull-agent nodes.

``steward init`` makes a data directory (SQLite, a git repository of desired state, a CA), the
server starts in the background, three nodes enroll with a join token and run the real pull
agent (``--root`` sandboxes on this machine): predict in noop, enforce, prove nothing is left,
then drift behind Steward's back and its correction. ``steward query`` answers which nodes
changed, failed and drifted. Every command runs as a subprocess, as a user would type it.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from steward.demo.runtime import DEMO_NODES, Demo, DemoError
from steward.demo.steps import STEPS, Step, check_secret, summary

__all__ = ["DEMO_NODES", "STEPS", "Demo", "DemoError", "Step", "run_demo"]


def run_demo(workdir: Path, repo_path: Path | None = None, *, out: TextIO | None = None,
             steps: Sequence[Step] = STEPS) -> int:
    """Run the main job; returns 0, or raises :class:`DemoError` saying what went wrong.

    The server is stopped however the run ends (success, failure, Ctrl-C or SIGTERM); an
    interruption returns 130.
    """
    from steward.demo.runtime import terminate_as_interrupt

    if repo_path is not None and not (repo_path / "classification.yaml").is_file():
        raise DemoError(f"{repo_path} is not a desired-state repository (no "
                        "classification.yaml); pass --repo DIR")
    stream = out if out is not None else sys.stdout
    columns = shutil.get_terminal_size((140, 24)).columns if stream.isatty() else 140
    demo = Demo(workdir=workdir, repo=repo_path.resolve() if repo_path else None, out=stream,
                columns=max(columns, 80))
    failed_at = ""
    with terminate_as_interrupt():
        try:
            for step in steps:
                failed_at = step.__name__
                step(demo)
            failed_at = "check_secret"
            secret = check_secret(demo)
            seconds = time.monotonic() - demo.started
            summary(demo, secret, seconds)
        except KeyboardInterrupt:
            demo.stop_children()
            demo.stop_server()
            demo.say()
            demo.say("demo interrupted; the server is stopped")
            return 130
        except DemoError:
            demo.say()
            demo.say(f"demo FAILED at step '{failed_at}' (server log: "
                     f"{demo.shown(demo.server_log)})")
            raise
        finally:
            demo.stop_children()
            demo.stop_server()
    demo.say("  server stopped")
    demo.say()
    demo.say("demo succeeded: enrolled, predicted, enforced, idempotent, drift corrected and "
             "flagged, answered by queries")
    return 0
