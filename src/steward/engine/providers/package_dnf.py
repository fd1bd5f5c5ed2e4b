"""The dnf/rpm backend: rpm's version comparison, the installed list (install-only
packages side by side), dnf repoquery for candidates, and ``rpm -e`` to remove."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cmp_to_key

from steward.engine.providers.package_backend import Backend, PackageState

_RPM_FORMAT = "%{NAME}\\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\\t%{ARCH}\\n"


def _rpm_segments(text: str) -> list[str]:
    return re.findall(r"~|\^|[0-9]+|[A-Za-z]+", text)


def rpmvercmp(a: str, b: str) -> int:
    """rpm's version comparison (-1, 0, 1), including ``~`` (pre-release) and ``^``."""
    if a == b:
        return 0
    sa, sb = _rpm_segments(a), _rpm_segments(b)
    i = 0
    while True:
        x = sa[i] if i < len(sa) else None
        y = sb[i] if i < len(sb) else None
        if x == "~" or y == "~":
            if x != "~":
                return 1
            if y != "~":
                return -1
        elif x == "^" or y == "^":
            if x is None:
                return -1
            if y is None:
                return 1
            if x != "^":
                return 1
            if y != "^":
                return -1
        elif x is None or y is None:
            if x is None and y is None:
                return 0
            return -1 if x is None else 1
        else:
            if x.isdigit() != y.isdigit():
                return 1 if x.isdigit() else -1
            if x.isdigit():
                xi, yi = int(x), int(y)
                if xi != yi:
                    return 1 if xi > yi else -1
            elif x != y:
                return 1 if x > y else -1
        i += 1


def _split_evr(evr: str) -> tuple[int, str, str | None]:
    epoch, _, rest = evr.rpartition(":")
    version, dash, release = rest.partition("-")
    return int(epoch) if epoch.isdigit() else 0, version, release if dash else None


def compare_evr(a: str, b: str) -> int:
    ea, va, ra = _split_evr(a)
    eb, vb, rb = _split_evr(b)
    if ea != eb:
        return 1 if ea > eb else -1
    result = rpmvercmp(va, vb)
    if result or ra is None or rb is None:
        return result
    return rpmvercmp(ra, rb)


def parse_rpm_query(text: str) -> dict[str, PackageState]:
    """Parse ``rpm -qa --qf '%{NAME}\\t[EPOCH:]%{VERSION}-%{RELEASE}\\t%{ARCH}\\n'``.

    A name can be listed more than once: one entry per architecture (multilib), or one per
    version of an install-only package (kernels). The state's version is the newest; all of
    them are kept when they differ.
    """
    listed: dict[str, set[str]] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[0] and parts[1]:
            listed.setdefault(parts[0], set()).add(parts[1])
    found: dict[str, PackageState] = {}
    for name, evrs in listed.items():
        # Sorted as text first, so versions rpm ranks equal (1.05, 1.5) keep a fixed order.
        ordered = tuple(sorted(sorted(evrs), key=cmp_to_key(compare_evr)))
        found[name] = PackageState(ordered[-1], versions=ordered if len(ordered) > 1 else ())
    return found


class DnfBackend(Backend):
    name = "dnf"
    programs = ("dnf", "rpm")

    def list_installed(self) -> dict[str, PackageState]:
        result = self._run(["rpm", "-qa", "--qf", _RPM_FORMAT], "listing installed packages")
        return parse_rpm_query(result.stdout)

    def query_candidates(self, names: Sequence[str]) -> dict[str, str | None]:
        result = self._run(["dnf", "-q", "repoquery", "--latest-limit=1",
                            "--queryformat", "%{name}\\t%{evr}\\n", *names],
                           "reading candidate versions")
        found: dict[str, str | None] = {}
        for line in result.stdout.splitlines():
            name, _, evr = line.partition("\t")
            best = found.get(name)
            if evr and (best is None or compare_evr(evr, best) > 0):
                found[name] = evr
        return found

    def is_newer(self, candidate: str, installed: str) -> bool:
        return compare_evr(candidate, installed) > 0

    def version_matches(self, installed: str, wanted: str) -> bool:
        """"2.0", "2.0-1.el9" and "1:2.0-1.el9" match 1:2.0-1.el9; the epoch if given."""
        ei, vi, ri = _split_evr(installed)
        ew, vw, rw = _split_evr(wanted)
        if ":" in wanted and ew != ei:
            return False
        return vi == vw and (rw is None or ri == rw)

    def install(self, name: str, version: str | None, state: PackageState) -> None:
        spec = f"{name}-{version}" if version else name
        verb = "reinstall" if state.broken else "install"
        self._run(["dnf", "-y", "-q", verb, spec], f"installing {spec}")

    def upgrade(self, name: str, version: str, state: PackageState) -> None:
        if state.version is None:
            self._run(["dnf", "-y", "-q", "install", name], f"installing {name}")
        else:
            self._run(["dnf", "-y", "-q", "upgrade", name], f"upgrading {name}")

    def remove(self, name: str, purge: bool) -> None:
        self._run(["rpm", "-e", "--allmatches", name], f"removing {name}")
