"""The apt/dpkg backend: dpkg-query for the installed list, apt-cache policy for
candidates, apt-get to install and dpkg to remove (which never takes dependents along)."""

from __future__ import annotations

from collections.abc import Sequence

from steward.engine.providers.package_backend import Backend, PackageState

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
