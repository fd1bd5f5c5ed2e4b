"""Running one task on this node (stdlib only), as the run-wait answer hands it over.

Like Bolt: the parameters arrive as one JSON object on stdin *and* as ``PT_<name>``
environment variables; ``_noop`` is set when the job is a noop run (the server only sends
those for tasks declaring ``supports_noop``). The script's stdout, when it is a JSON object,
is the structured result; otherwise it is kept as text. Values of sensitive parameters are
cut out of anything sent back, and nothing about them is logged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

OUTPUT_LIMIT = 64_000


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[sensitive value redacted]")
    return text


def run_task(task: dict[str, Any], *, root: Path | None = None) -> dict[str, Any]:
    """Run the task; the body for ``POST .../jobs/{job}/result``."""
    params = dict(task.get("params") or {})
    noop = bool(task.get("noop"))
    if noop:
        params["_noop"] = True
    sensitive = [str(params[name]) for name in task.get("sensitive") or () if name in params]
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
            done = subprocess.run(command, input=json.dumps(params), capture_output=True,
                                  text=True, env=env, timeout=timeout, cwd=tmp, check=False)
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout if isinstance(exc.stdout, str) else ""
            return {"state": "timeout", "exit_code": None, "result": None,
                    "output": _redact(out, sensitive)[-OUTPUT_LIMIT:]
                    + f"\n(task killed after {timeout:g} seconds)"}
        except OSError as exc:
            return {"state": "failed", "exit_code": None, "result": None,
                    "output": f"could not start the task: {exc}"}
    stdout = _redact(done.stdout, sensitive)
    stderr = _redact(done.stderr, sensitive)
    result: Any = None
    try:
        parsed = json.loads(stdout)
        if isinstance(parsed, dict):
            result = parsed
    except ValueError:
        pass
    output = stdout + (f"\n[stderr]\n{stderr}" if stderr.strip() else "")
    failed = done.returncode != 0 or (isinstance(result, dict) and "_error" in result)
    return {"state": "failed" if failed else "succeeded", "exit_code": done.returncode,
            "result": result, "output": output[-OUTPUT_LIMIT:]}
