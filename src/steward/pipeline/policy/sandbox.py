"""The Rego sandbox process: ``python -m steward.pipeline.policy.sandbox`` (see
:class:`steward.pipeline.policy.rego.RegoProgram`).

Reads JSON lines on stdin: first ``{"modules": [[path, source], ...], "rules": [...],
"memory": bytes}`` (answered ``{"ok": true}`` or an error), then any number of ``{"input":
json_text, "rules": [...]}``, answered with one line per rule, in order. The address-space
limit is set after the engine's allocator has started (snmalloc reserves a large range up
front and cannot start under a tight ``RLIMIT_AS``); past it the engine aborts, which is what
the parent reports as the memory limit.
"""

from __future__ import annotations

import json
import resource
import sys
from typing import Any

from steward.errors import StewardError
from steward.pipeline.policy.errors import RegoSyntaxError
from steward.pipeline.policy.rego import UNDEFINED, RegoEngine, RegoModule


def _error(exc: StewardError) -> dict[str, Any]:
    return {"kind": "syntax" if isinstance(exc, RegoSyntaxError) else "runtime",
            "message": exc.message, "location": exc.location}


def _reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _address_space() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0  # pragma: no cover - not Linux


def main() -> None:
    setup = json.loads(sys.stdin.readline())
    try:
        engine = RegoEngine([RegoModule(path, source) for path, source in setup["modules"]],
                            setup["rules"])
    except StewardError as exc:
        _reply({"error": _error(exc), **_error(exc)})
        return
    size = _address_space()
    if size:
        limit = size + int(setup["memory"])
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    _reply({"ok": True})
    for line in sys.stdin:
        request = json.loads(line)
        for rule, value in engine.evaluate_each(request["input"], request["rules"]):
            if isinstance(value, StewardError):
                _reply({"rule": rule, "error": _error(value)})
            elif value is UNDEFINED:
                _reply({"rule": rule, "undefined": True})
            else:
                _reply({"rule": rule, "value": value})


if __name__ == "__main__":
    main()
