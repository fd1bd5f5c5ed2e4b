"""The apk backend (Alpine): ``apk info -v`` lists, ``apk search --exact`` finds
candidates, ``apk add`` installs and ``apk del`` removes."""

from __future__ import annotations

import re
from collections.abc import Sequence

from steward.engine.providers.package_backend import Backend, PackageState

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
