"""Packages through the platform's manager: apt/dpkg, dnf/rpm or apk.

The installed list is read with one command per run and kept in ``ctx.cache``; the candidate
versions that ``ensure: latest`` needs come from one more call for all such packages. After
a change the list is read again (one call), because installing or removing one package can
install or remove others, and because it proves the manager really did what it said.

Choices that matter to operators:

* Installs are non-interactive (``DEBIAN_FRONTEND=noninteractive``, ``-y``) and keep locally
  modified configuration files (dpkg ``--force-confdef --force-confold``). Recommended
  packages follow the system's own apt configuration (``APT::Install-Recommends``): the
  engine does not override a policy the administrator can set in apt.conf.
* A specific version is installed as ``name=version`` (apt, apk) or ``name-version`` (dnf),
  downgrading when needed: the catalog asked for exactly that version. It is satisfied when
  it is among the installed versions: dnf keeps install-only packages (kernels) side by side,
  so asking for an older kernel installs it next to the newer one, not instead of it.
* Removal never takes other packages with it: ``dpkg --remove``/``--purge``, ``rpm -e`` and
  ``apk del`` refuse when installed packages depend on the one being removed, and the error
  names them. (``apt-get remove`` would silently remove the dependents too.)
* ``purged`` also removes configuration files (dpkg); rpm and apk have no such state, so there
  it means the same as ``absent``.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cmp_to_key
from typing import ClassVar

from steward.engine.context import Context
from steward.engine.provider import Change, Provider, ProviderError, Unresolved
from steward.engine.runner import CommandResult

ENSURE_INSTALLED = ("installed", "present")
ENSURE_REMOVED = ("absent", "purged")


@dataclass(frozen=True, slots=True)
class PackageState:
    """One package as the manager's database sees it."""

    #: Installed version, or None when the package is not installed.
    version: str | None = None
    #: dpkg's "config-files" state: removed, configuration files left behind.
    config_files: bool = False
    #: A dpkg state between unpacked and installed ("half-configured", ...), if any.
    broken: str | None = None
    #: Every installed version, oldest first, when the database holds several side by side
    #: (rpm's install-only packages, such as kernels); empty when ``version`` is the only
    #: one. ``version`` is then the newest.
    versions: tuple[str, ...] = ()

    @property
    def installed(self) -> bool:
        return self.version is not None and self.broken is None

    @property
    def all_versions(self) -> tuple[str, ...]:
        """The installed versions (none when absent)."""
        if self.versions:
            return self.versions
        return () if self.version is None else (self.version,)

    def display(self) -> str:
        if self.version is None:
            return "absent"
        if self.broken:
            return f"{self.version} ({self.broken})"
        return ", ".join(self.all_versions)


ABSENT = PackageState()


def _failure(result: CommandResult, doing: str, lines: int = 6) -> ProviderError:
    """An error naming the command, its exit code and the end of what it printed."""
    # stderr last: apt and dpkg put the reason ("E: ...") there, after stdout's progress.
    text = (result.stdout.strip() + "\n" + result.stderr.strip()).strip()
    tail = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    detail = " | ".join(tail)
    return ProviderError(
        f"{doing}: '{' '.join(result.argv)}' exited {result.returncode}"
        + (f": {detail}" if detail else "")
    )


class Backend(ABC):
    """One package manager: how to list, query candidates, install and remove."""

    name: ClassVar[str]
    #: Programs that must all be present for this backend to be usable.
    programs: ClassVar[tuple[str, ...]]
    env: ClassVar[dict[str, str]] = {}
    #: Whether "purged" differs from "absent" (configuration files kept on removal).
    supports_purge: ClassVar[bool] = False

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def available(self) -> bool:
        return all(self.ctx.runner.which(p) is not None for p in self.programs)

    def _run(self, argv: Sequence[str], doing: str) -> CommandResult:
        result = self.ctx.runner.run(argv, env=self.env or None)
        if not result.ok:
            raise _failure(result, doing)
        return result

    # -- cache -----------------------------------------------------------------------------

    @property
    def _key(self) -> str:
        return f"package:{self.name}"

    def installed(self) -> dict[str, PackageState]:
        """The installed list, read once per run (and again after a change)."""
        key = f"{self._key}:installed"
        cached: dict[str, PackageState] | None = self.ctx.cache.get(key)
        if cached is None:
            cached = self.list_installed()
            self.ctx.cache[key] = cached
        return cached

    def invalidate(self) -> None:
        self.ctx.cache.pop(f"{self._key}:installed", None)

    def state(self, name: str) -> PackageState:
        return self.installed().get(name, ABSENT)

    def candidates(self, names: Iterable[str]) -> dict[str, str | None]:
        """Candidate versions, fetched in one call for every name not yet known."""
        key = f"{self._key}:candidates"
        cached: dict[str, str | None] = self.ctx.cache.setdefault(key, {})
        missing = sorted({n for n in names if n not in cached})
        if missing:
            found = self.query_candidates(missing)
            for name in missing:
                cached[name] = found.get(name)
        return cached

    def candidate(self, name: str) -> str | None:
        """The candidate; a name without one is asked again, once, before giving up: a
        resource earlier in this run may have added the repository that has it."""
        cached = self.candidates([name])
        if cached[name] is None and name not in self.ctx.cache.setdefault(
            f"{self._key}:requeried", set()
        ):
            self.ctx.cache[f"{self._key}:requeried"].add(name)
            cached[name] = self.query_candidates([name]).get(name)
        return cached[name]

    # -- what each manager implements ------------------------------------------------------

    @abstractmethod
    def list_installed(self) -> dict[str, PackageState]: ...

    @abstractmethod
    def query_candidates(self, names: Sequence[str]) -> dict[str, str | None]: ...

    def is_newer(self, candidate: str, installed: str) -> bool:
        """Whether ``candidate`` would be an upgrade over ``installed``."""
        return candidate != installed

    def version_matches(self, installed: str, wanted: str) -> bool:
        return installed == wanted

    @abstractmethod
    def install(self, name: str, version: str | None, state: PackageState) -> None: ...

    def upgrade(self, name: str, version: str, state: PackageState) -> None:
        self.install(name, version, state)

    @abstractmethod
    def remove(self, name: str, purge: bool) -> None: ...


# --- apt / dpkg ----------------------------------------------------------------------------

_DPKG_FORMAT = "${Package}\\t${Version}\\t${db:Status-Abbrev}\\n"
#: dpkg's current-state letters (second letter of db:Status-Abbrev) that mean "installed";
#: W and t only wait for triggers.
_DPKG_INSTALLED = frozenset("iWt")
_DPKG_BROKEN = {"U": "unpacked", "H": "half-installed", "F": "half-configured"}
#: Non-interactive, keep modified conffiles, and wait (up to 5 minutes) for a dpkg lock held
#: by, say, unattended-upgrades instead of failing at once.
_APT_OPTIONS = (
    "-q",
    "-y",
    "-o",
    "Dpkg::Options::=--force-confdef",
    "-o",
    "Dpkg::Options::=--force-confold",
    "-o",
    "DPkg::Lock::Timeout=300",
)


def parse_dpkg_query(text: str) -> dict[str, PackageState]:
    """Parse ``dpkg-query -W -f '${Package}\\t${Version}\\t${db:Status-Abbrev}\\n'``.

    With multiarch a name can appear once per architecture; an installed entry wins.
    """
    found: dict[str, PackageState] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or len(parts[2]) < 2:
            continue
        name, version, status = parts[0], parts[1], parts[2]
        current = status[1]
        if current in _DPKG_INSTALLED:
            state = PackageState(version)
        elif current in _DPKG_BROKEN:
            state = PackageState(version, broken=_DPKG_BROKEN[current])
        elif current == "c":
            state = PackageState(None, config_files=True)
        else:
            continue
        previous = found.get(name)
        if previous is None or (state.installed and not previous.installed) or (
            previous.version is None and state.version is not None
        ):
            found[name] = state
    return found


def parse_apt_policy(text: str) -> dict[str, str | None]:
    """Candidate per package from ``apt-cache policy a b ...`` (None for "(none)")."""
    found: dict[str, str | None] = {}
    current: str | None = None
    for line in text.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith(":"):
            current = line.rstrip()[:-1]
            continue
        stripped = line.strip()
        if current is not None and stripped.startswith("Candidate:"):
            value = stripped.split(":", 1)[1].strip()
            found[current] = None if value == "(none)" else value
    return found


class AptBackend(Backend):
    name = "apt"
    programs = ("apt-get", "dpkg-query")
    env = {"DEBIAN_FRONTEND": "noninteractive", "APT_LISTCHANGES_FRONTEND": "none"}
    supports_purge = True

    def list_installed(self) -> dict[str, PackageState]:
        result = self._run(["dpkg-query", "-W", "-f", _DPKG_FORMAT],
                           "listing installed packages")
        return parse_dpkg_query(result.stdout)

    def query_candidates(self, names: Sequence[str]) -> dict[str, str | None]:
        result = self._run(["apt-cache", "policy", *names], "reading candidate versions")
        return parse_apt_policy(result.stdout)

    def install(self, name: str, version: str | None, state: PackageState) -> None:
        argv = ["apt-get", *_APT_OPTIONS]
        if version is not None:
            argv.append("--allow-downgrades")
        if state.broken:
            argv.append("--reinstall")
        argv += ["install", f"{name}={version}" if version else name]
        self._run(argv, f"installing {name}")

    def remove(self, name: str, purge: bool) -> None:
        """dpkg refuses when installed packages depend on ``name``; the dry run finds that
        out first, because a refused real run still leaves the package selected for removal.
        """
        action = "--purge" if purge else "--remove"
        doing = f"{'purging' if purge else 'removing'} {name}"
        self._run(["dpkg", "--dry-run", action, name], doing)
        self._run(["dpkg", action, name], doing)


# --- dnf / rpm -----------------------------------------------------------------------------

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


# --- apk -----------------------------------------------------------------------------------

_APK_NAME_VERSION = re.compile(r"^(?P<name>.+)-(?P<version>[^-]+-r\d+)$")


def parse_apk_names(text: str) -> dict[str, str]:
    """``name-version-rN`` lines (``apk info -v``, ``apk search -x``) to name -> version."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = _APK_NAME_VERSION.match(line.strip())
        if match:
            found[match["name"]] = match["version"]
    return found


class ApkBackend(Backend):
    name = "apk"
    programs = ("apk",)

    def list_installed(self) -> dict[str, PackageState]:
        result = self._run(["apk", "info", "-v"], "listing installed packages")
        return {n: PackageState(v) for n, v in parse_apk_names(result.stdout).items()}

    def query_candidates(self, names: Sequence[str]) -> dict[str, str | None]:
        result = self._run(["apk", "search", "--exact", *names], "reading candidate versions")
        return dict(parse_apk_names(result.stdout))

    def install(self, name: str, version: str | None, state: PackageState) -> None:
        spec = f"{name}={version}" if version else name
        self._run(["apk", "add", "--no-progress", spec], f"installing {spec}")

    def upgrade(self, name: str, version: str, state: PackageState) -> None:
        self._run(["apk", "add", "--no-progress", "--upgrade", name], f"upgrading {name}")

    def remove(self, name: str, purge: bool) -> None:
        self._run(["apk", "del", "--no-progress", name], f"removing {name}")


BACKENDS: dict[str, type[Backend]] = {"apt": AptBackend, "dnf": DnfBackend, "apk": ApkBackend}


def backend_for(ctx: Context, choice: str) -> Backend:
    """The backend the resource asked for, or the first one whose tools are installed."""
    key = f"package:backend:{choice}"
    cached: Backend | None = ctx.cache.get(key)
    if cached is not None:
        return cached
    if choice != "auto":
        cls = BACKENDS.get(choice)
        if cls is None:
            raise ProviderError(f"unknown package provider {choice!r}")
        backend = cls(ctx)
        if not backend.available():
            raise ProviderError(
                f"package provider {choice!r} needs {', '.join(cls.programs)}, not all found"
            )
    else:
        for cls in BACKENDS.values():
            backend = cls(ctx)
            if backend.available():
                break
        else:
            raise ProviderError(
                "no supported package manager found (apt-get and dpkg-query, dnf and rpm, "
                "or apk)"
            )
    # Every choice resolving to the same manager shares one backend (one installed list).
    shared: Backend = ctx.cache.setdefault(f"package:backend:{backend.name}", backend)
    ctx.cache[key] = shared
    return shared


def _has_version(backend: Backend, state: PackageState, wanted: str) -> bool:
    """Whether ``wanted`` is one of the installed versions."""
    return any(backend.version_matches(version, wanted) for version in state.all_versions)


class PackageProvider(Provider):
    """ensure installed/present, latest, absent, purged or an exact version."""

    type_name = "package"

    @classmethod
    def prefetch(cls, ctx: Context, providers: Sequence[Provider]) -> None:
        """One listing per manager, and one candidate query for every ``latest`` package."""
        latest: dict[str, tuple[Backend, list[str]]] = {}
        for provider in providers:
            try:
                backend = backend_for(ctx, str(provider.params.get("provider") or "auto"))
            except ProviderError:
                continue  # reported by that resource's own check
            backend.installed()
            if provider.params.get("ensure") == "latest":
                latest.setdefault(backend.name, (backend, []))[1].append(provider.name)
        for backend, names in latest.values():
            backend.candidates(names)

    @property
    def backend(self) -> Backend:
        return backend_for(self.ctx, str(self.params.get("provider") or "auto"))

    def check(self) -> list[Change]:
        name = self.name
        ensure = str(self.params.get("ensure") or "installed")
        backend = self.backend
        state = backend.state(name)
        old = state.display()

        if ensure in ENSURE_INSTALLED:
            if state.installed:
                return []
            if state.broken:
                return [Change("ensure", old, ensure, f"reinstalled {name} (was {state.broken})")]
            return [Change("ensure", old, ensure, f"installed {name}")]

        if ensure == "latest":
            candidate = backend.candidate(name)
            if candidate is None:
                if state.installed:
                    self.ctx.log("warning", self.resource.ref,
                                 f"no installation candidate for {name}; keeping "
                                 f"{state.version}")
                    return []
                raise Unresolved(
                    f"package {name} has no installation candidate in the configured "
                    f"repositories ({backend.name})"
                )
            if state.installed and not backend.is_newer(candidate, str(state.version)):
                return []
            if state.installed:
                message = f"upgraded {name} from {state.version} to {candidate}"
            else:
                message = f"installed {name} {candidate}"
            return [Change("ensure", old, candidate, message)]

        versions = ", ".join(state.all_versions)
        if ensure == "absent":
            if state.version is None:
                return []
            return [Change("ensure", old, "absent", f"removed {name} {versions}")]

        if ensure == "purged":
            if state.version is None and not (state.config_files and backend.supports_purge):
                return []
            what = f"{name} {versions}" if state.version else f"configuration of {name}"
            return [Change("ensure", old, "purged", f"purged {what}")]

        # A specific version.
        if state.installed and _has_version(backend, state, ensure):
            return []
        was = f" (was {state.version})" if state.version else ""
        return [Change("ensure", old, ensure, f"installed {name} {ensure}{was}")]

    def sync(self, changes: list[Change]) -> None:
        if not changes:
            return
        name = self.name
        ensure = str(self.params.get("ensure") or "installed")
        backend = self.backend
        state = backend.state(name)
        try:
            if ensure in ENSURE_INSTALLED:
                backend.install(name, None, state)
            elif ensure == "latest":
                backend.upgrade(name, str(changes[0].new), state)
            elif ensure in ENSURE_REMOVED:
                backend.remove(name, purge=ensure == "purged" and backend.supports_purge)
            else:
                backend.install(name, ensure, state)
        finally:
            backend.invalidate()
        self._verify(backend, ensure, changes)

    def _verify(self, backend: Backend, ensure: str, changes: list[Change]) -> None:
        """Re-read the list: proves the change and refreshes what the change touched."""
        state = backend.state(self.name)
        if ensure in ENSURE_INSTALLED:
            ok = state.installed
        elif ensure == "latest":
            ok = state.installed and not backend.is_newer(str(changes[0].new),
                                                          str(state.version))
        elif ensure == "absent":
            ok = state.version is None
        elif ensure == "purged":
            ok = state.version is None and not state.config_files
        else:
            ok = state.installed and _has_version(backend, state, ensure)
        if not ok:
            raise ProviderError(
                f"{backend.name} reported success but {self.name} is {state.display()} "
                f"instead of {changes[0].new} (a virtual package or a held version?)"
            )
