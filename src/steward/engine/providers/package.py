"""Packages through the platform's manager: apt/dpkg, dnf/rpm or apk.

This module holds the provider and the choice of backend; each manager is a backend of its
own (``package_apt``, ``package_dnf``, ``package_apk``) over ``package_backend``.

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

from collections.abc import Sequence

from steward.engine.context import Context
from steward.engine.provider import Change, Provider, ProviderError, Unresolved
from steward.engine.providers.package_apk import ApkBackend
from steward.engine.providers.package_apt import AptBackend
from steward.engine.providers.package_backend import Backend, PackageState
from steward.engine.providers.package_dnf import DnfBackend

ENSURE_INSTALLED = ("installed", "present")
ENSURE_REMOVED = ("absent", "purged")

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
