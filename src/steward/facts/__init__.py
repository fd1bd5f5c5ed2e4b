"""Node facts: what a node is (OS, network, memory, disks...), for the compiler to decide on.

Standard library only: this package is shipped to hosts that have nothing but python3. It
runs no commands and makes no DNS queries in the common case, so collecting everything takes
milliseconds. Names follow Facter's where Facter has them, so Puppet users find their way.

Each collector reads files relative to ``root``, which lets tests point it at a tree of
captured real files. A collector that fails is logged and left out; the others still report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from steward.facts.hardware import (
    collect_disks,
    collect_memory,
    collect_processors,
    collect_virtual,
)
from steward.facts.mounts import collect_mountpoints
from steward.facts.network import collect_networking
from steward.facts.osinfo import collect_kernel, collect_os
from steward.facts.packages import collect_packages
from steward.facts.system import (
    collect_identity,
    collect_runtime,
    collect_timezone,
    collect_uptime,
)

__all__ = ["COLLECTORS", "collect_facts", "lookup"]

Collector = Callable[[str], dict[str, Any]]

#: Each collector with the top-level facts it provides, so one fact can be asked for alone.
COLLECTORS: tuple[tuple[str, tuple[str, ...], Collector], ...] = (
    ("os", ("os",), collect_os),
    ("kernel", ("kernel",), collect_kernel),
    ("networking", ("networking", "hostname", "fqdn", "domain"), collect_networking),
    ("memory", ("memory",), collect_memory),
    ("processors", ("processors",), collect_processors),
    ("disks", ("disks",), collect_disks),
    ("mountpoints", ("mountpoints",), collect_mountpoints),
    ("packages", ("packages",), collect_packages),
    ("uptime", ("uptime",), collect_uptime),
    ("timezone", ("timezone",), collect_timezone),
    ("virtual", ("virtual", "is_virtual"), collect_virtual),
    ("identity", ("identity",), collect_identity),
    ("runtime", ("python", "steward"), collect_runtime),
)


def collect_facts(root: str = "/", only: Iterable[str] | None = None) -> dict[str, Any]:
    """Collect every fact (or only the top-level facts named in ``only``) for this node."""
    wanted = None if only is None else set(only)
    facts: dict[str, Any] = {}
    for name, provides, collector in COLLECTORS:
        if wanted is not None and wanted.isdisjoint(provides):
            continue
        try:
            facts.update(collector(root))
        except Exception as exc:  # one broken source must not cost the node all its facts
            _warn(f"could not collect {name} facts: {type(exc).__name__}: {exc}")
    return facts


def _warn(message: str) -> None:
    """Log through ``logging`` (stderr unless the caller configured it), imported only here.

    Importing logging costs ~13 ms (it pulls in traceback, tokenize, threading), a sixth of
    a whole ``steward facts`` process, and is needed only when something failed.
    """
    import logging

    logging.getLogger(__name__).warning(message)


def lookup(facts: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path; raises KeyError naming the path when there is none.

    Keys may contain dots themselves (interface ``eth0.100``, mount point paths), so at each
    level the longest run of path components that is a key wins. List items are addressed by
    index (``processors.models.0``).
    """
    parts = path.split(".")
    value: Any = facts
    position = 0
    while position < len(parts):
        if isinstance(value, Mapping):
            for end in range(len(parts), position, -1):
                key = ".".join(parts[position:end])
                if key in value:
                    value, position = value[key], end
                    break
            else:
                raise KeyError(path)
        elif isinstance(value, list) and parts[position].isdigit():
            index = int(parts[position])
            if index >= len(value):
                raise KeyError(path)
            value, position = value[index], position + 1
        else:
            raise KeyError(path)
    return value
