"""Running one task on this node (stdlib only), as a job's claimed part hands it over.

It lives in the node engine so that both ways of reaching a node share it: the pull agent
calls :func:`run_task` with what the run-wait long poll answered, and agentless (SSH) nodes
run it from the pushed bundle (``python3 BUNDLE.pyz task``, the document on stdin).

Like Bolt: the parameters arrive as one JSON object on stdin *and* as ``PT_<name>``
environment variables; ``_noop`` is set when the job is a noop run (the server only sends
those for tasks declaring ``supports_noop``). The script's stdout, when it is a JSON object,
is the structured result; otherwise it is kept as text. Values of sensitive parameters are
cut out of anything sent back (replaced by the one marker, :mod:`steward.catalog.redaction`),
and nothing about them is logged.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from steward.catalog.redaction import cut_secrets, cut_secrets_json, secret_forms

OUTPUT_LIMIT = 64_000
#: Seconds to collect the output of a killed task's processes.
_DRAIN_SECONDS = 5.0


def sensitive_forms(task: Mapping[str, Any]) -> list[str]:
    """The task's sensitive values as printed raw and inside a JSON string, longest first
    (so none is half-cut); the SSH transport cuts the same forms out of what comes back."""
    params = task.get("params")
    if not isinstance(params, Mapping):
        return []
    names = task.get("sensitive") or ()
    return secret_forms(params[n] for n in names if isinstance(n, str) and n in params)


def _run(command: list[str], stdin: str, env: dict[str, str], cwd: str,
         timeout: float) -> tuple[int | None, str, str]:
    """(exit code, stdout, stderr); exit code None when the timeout killed it.

    The script runs in its own session, so a timeout kills everything it started, and no
    child it left in the background keeps the output pipes (and the caller) waiting.
    """
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env, cwd=cwd,
                          start_new_session=True) as process:
        try:
            out, err = process.communicate(stdin.encode("utf-8"), timeout=timeout)
            code: int | None = process.returncode
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            try:
                out, err = process.communicate(timeout=_DRAIN_SECONDS)
            except subprocess.TimeoutExpired:
                # Something left the session and holds the pipes: give up on its output.
                process.kill()
                out, err = b"", b""
            code = None
    return code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def run_task(task: dict[str, Any], *, root: Path | None = None) -> dict[str, Any]:
    """Run the task; the body for ``POST .../jobs/{job}/result``."""
    params = dict(task.get("params") or {})
    noop = bool(task.get("noop"))
    if noop:
        params["_noop"] = True
    sensitive = sensitive_forms(task)
    script_name = str(task.get("script_name") or "task.sh")
    timeout = float(task.get("timeout") or 60)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PT_")}
    for name, value in params.items():
        env[f"PT_{name}"] = json.dumps(value) if not isinstance(value, str) else value
    if root is not None:
        env["STEWARD_ROOT"] = str(root)
    with tempfile.TemporaryDirectory(prefix="steward-task-") as tmp:
        path = Path(tmp) / Path(script_name).name
        path.write_text(str(task.get("script") or ""), encoding="utf-8")
        path.chmod(0o700)
        command = [sys.executable, str(path)] if script_name.endswith(".py") \
            else ["/bin/sh", str(path)]
        try:
            code, raw_out, raw_err = _run(command, json.dumps(params), env, tmp, timeout)
        except OSError as exc:
            return {"state": "failed", "exit_code": None, "result": None,
                    "output": f"could not start the task: {exc}"}
    stdout = cut_secrets(raw_out, sensitive)
    stderr = cut_secrets(raw_err, sensitive)
    if code is None:
        return {"state": "timeout", "exit_code": None, "result": None,
                "output": stdout[-OUTPUT_LIMIT:] + f"\n(task killed after {timeout:g} seconds)"}
    result: Any = None
    try:
        parsed = json.loads(raw_out)
        if isinstance(parsed, dict):
            result = cut_secrets_json(parsed, sensitive)
    except ValueError:
        pass
    output = stdout + (f"\n[stderr]\n{stderr}" if stderr.strip() else "")
    failed = code != 0 or (isinstance(result, dict) and "_error" in result)
    return {"state": "failed" if failed else "succeeded", "exit_code": code,
            "result": result, "output": output[-OUTPUT_LIMIT:]}
