"""The node's memory of what it last enforced, which is what makes drift detectable.

After a successful run the engine records, per resource, a fingerprint of every desired
property value. Next run, a change whose desired value is the same as the recorded one was
caused by the system moving, not by the code: that is drift (``corrective_change``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_FORMAT = 1


def fingerprint(value: Any) -> Any:
    """A compact, comparable stand-in: long strings and structures become a digest."""
    if isinstance(value, str) and len(value) <= 64:
        return value
    if isinstance(value, bool | int) or value is None:
        return value
    if isinstance(value, str):
        return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()
    encoded = json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return "sha256:" + hashlib.sha256(encoded).hexdigest()


@dataclass
class NodeState:
    path: Path
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> NodeState:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError):
            # A damaged history must not stop enforcement; it only loses drift attribution.
            return cls(path)
        if not isinstance(document, dict) or document.get("state_format") != STATE_FORMAT:
            return cls(path)
        resources = document.get("resources")
        return cls(path, resources if isinstance(resources, dict) else {})

    def historical(self, ref: str, prop: str) -> Any:
        return self.resources.get(ref, {}).get(prop)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        document = {"state_format": STATE_FORMAT, "resources": self.resources}
        tmp.write_text(json.dumps(document, sort_keys=True, separators=(",", ":")), "utf-8")
        os.replace(tmp, self.path)
