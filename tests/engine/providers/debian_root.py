"""A cached Debian bookworm root for testing the system providers against real tools.

The root is built once with ``debootstrap --variant=minbase`` from the mirror this machine's
apt is already configured with, packed as a tarball under the cache directory, and unpacked
fresh for each test module, so tests may break it at will and the host is never touched.

Commands run in the root through ``unshare --fork --pid --mount-proc=ROOT/proc chroot ROOT``:
``/proc`` is mounted in a private mount namespace that the kernel tears down when the command
exits, and every process the command left behind dies with its PID namespace. Nothing can
leak onto the host's mount table, even if the test run is killed.

Run as a script to build (or check) the cache ahead of a test run::

    python -m tests.engine.providers.debian_root [--rebuild]
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUITE = "bookworm"
#: Everything the providers under test call, beyond what minbase has (passwd, util-linux,
#: login and apt are already part of it). systemd is not needed: the service provider is
#: tested on captured output.
INCLUDE = ("python3", "cron")
#: Bump when the post-build steps change, so existing caches are rebuilt.
RECIPE_VERSION = 1
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
REPO_SRC = Path(__file__).resolve().parents[3] / "src" / "steward"


class RootUnavailable(Exception):
    """The root cannot be built here for a reason that is the machine's, not the code's."""


def cache_dir() -> Path:
    return Path(os.environ.get("STEWARD_TEST_CACHE", "/var/cache/steward-tests"))


def unavailable_reason() -> str | None:
    """Why chroot tests cannot run on this machine, or None when they can."""
    if os.geteuid() != 0:
        return "chroot tests need root (chroot, debootstrap, useradd inside the root)"
    for tool in ("debootstrap", "chroot", "unshare", "tar"):
        if shutil.which(tool) is None:
            return f"chroot tests need '{tool}' on the host (apt-get install {tool})"
    return None


def _recipe() -> dict[str, object]:
    return {"suite": SUITE, "variant": "minbase", "include": list(INCLUDE),
            "recipe_version": RECIPE_VERSION}


def _recipe_id() -> str:
    encoded = json.dumps(_recipe(), sort_keys=True).encode()
    return hashlib.sha256(encoded).hexdigest()[:12]


# --- the mirror -------------------------------------------------------------------------


@dataclass(frozen=True)
class Mirror:
    uri: str
    keyring: str | None
    source: str


def _deb822_stanzas(text: str) -> Iterator[dict[str, str]]:
    stanza: dict[str, str] = {}
    key = ""
    for raw in [*text.splitlines(), ""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if stanza:
                yield stanza
            stanza, key = {}, ""
            continue
        if raw[0] in " \t" and key:
            stanza[key] += "\n" + raw.strip()
            continue
        if ":" in raw:
            key, _, value = raw.partition(":")
            key = key.strip().lower()
            stanza[key] = value.strip()


def find_mirror(apt_dir: Path = Path("/etc/apt")) -> Mirror:
    """The Debian mirror this machine's apt uses for bookworm main (override: env var)."""
    override = os.environ.get("STEWARD_DEBIAN_MIRROR")
    if override:
        return Mirror(override, None, "STEWARD_DEBIAN_MIRROR")
    candidates: list[Mirror] = []
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        for stanza in _deb822_stanzas(path.read_text(encoding="utf-8", errors="replace")):
            if stanza.get("enabled", "yes").lower() == "no":
                continue
            if "deb" not in stanza.get("types", "").split():
                continue
            if SUITE not in stanza.get("suites", "").split():
                continue
            if "main" not in stanza.get("components", "").split():
                continue
            signed = stanza.get("signed-by", "")
            keyring = signed if signed.startswith("/") and "\n" not in signed else None
            for uri in stanza.get("uris", "").split():
                candidates.append(Mirror(uri, keyring, str(path)))
    lists = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    line_re = re.compile(r"^deb\s+(?:\[(?P<opts>[^\]]*)\]\s+)?(?P<uri>\S+)\s+(?P<suite>\S+)"
                         r"\s+(?P<components>.+)$")
    for path in lists:
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            match = line_re.match(line.strip())
            if not match or match["suite"] != SUITE or "main" not in match["components"].split():
                continue
            opts = dict(
                o.split("=", 1) for o in (match["opts"] or "").split() if "=" in o
            )
            candidates.append(Mirror(match["uri"], opts.get("signed-by"), str(path)))
    if not candidates:
        raise RootUnavailable(
            f"no apt source for Debian {SUITE} main in {apt_dir}; set STEWARD_DEBIAN_MIRROR"
        )
    return candidates[0]


# --- building and caching ----------------------------------------------------------------


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` in this process's mount namespace, deepest first."""
    prefix = str(path.resolve())
    found = []
    with Path("/proc/self/mountinfo").open(encoding="utf-8") as handle:
        for line in handle:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def remove_tree(path: Path) -> None:
    """Delete a root, but never through a mount point into the host's filesystems."""
    if not path.exists():
        return
    for point in _mounts_under(path):
        subprocess.run(["umount", point], check=False, capture_output=True)
    for point in _mounts_under(path):
        subprocess.run(["umount", "--lazy", point], check=False, capture_output=True)
    left = _mounts_under(path)
    if left:
        raise RuntimeError(f"refusing to delete {path}: still mounted: {', '.join(left)}")
    shutil.rmtree(path)


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive lock shared by every test worker and every concurrent build."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def tarball_path() -> Path:
    suffix = ".tar.zst" if shutil.which("zstd") else ".tar"
    return cache_dir() / f"debian-{SUITE}-root{suffix}"


def _stamp_path(tarball: Path) -> Path:
    return tarball.with_name(tarball.name.split(".")[0] + ".json")


def cached_info() -> dict[str, object] | None:
    """The cache's build record when the tarball is there and matches the recipe."""
    tarball = tarball_path()
    stamp = _stamp_path(tarball)
    if not tarball.is_file() or not stamp.is_file():
        return None
    try:
        info: dict[str, object] = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if info.get("recipe_id") == _recipe_id() else None


def _log(message: str) -> None:
    sys.stderr.write(f"debian-root: {message}\n")
    sys.stderr.flush()


def ensure_root_tarball(*, rebuild: bool = False) -> Path:
    """Build the cached root unless a matching one exists; safe for concurrent callers."""
    reason = unavailable_reason()
    if reason:
        raise RootUnavailable(reason)
    tarball = tarball_path()
    with _locked(cache_dir() / f"debian-{SUITE}-root.lock"):
        if not rebuild and cached_info() is not None:
            return tarball
        _build(tarball)
    return tarball


def _build(tarball: Path) -> None:
    mirror = find_mirror()
    work = Path(tempfile.mkdtemp(prefix="build-", dir=cache_dir()))
    target = work / "root"
    started = time.monotonic()
    _log(f"building {SUITE} minbase root from {mirror.uri} (from {mirror.source}); "
         "this takes a few minutes, once")
    try:
        argv = ["debootstrap", "--variant=minbase", f"--include={','.join(INCLUDE)}"]
        if mirror.keyring and Path(mirror.keyring).is_file():
            argv.append(f"--keyring={mirror.keyring}")
        argv += [SUITE, str(target), mirror.uri]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            log = target / "debootstrap" / "debootstrap.log"
            detail = log.read_text(errors="replace")[-3000:] if log.is_file() else ""
            raise RuntimeError(
                f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr[-3000:]}\n{detail}"
            )
        _finish_root(target)
        pack_root(target, tarball, work, started,
                  {**_recipe(), "recipe_id": _recipe_id(), "mirror": mirror.uri})
    finally:
        remove_tree(work)


def _finish_root(target: Path) -> None:
    """Make the fresh root quiet and small: no daemons started by packages, no apt cache."""
    policy = target / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\n# Steward test root: never start services.\nexit 101\n")
    policy.chmod(0o755)
    session = ChrootSession(target)
    session.run(["apt-get", "clean"])
    lists = target / "var/lib/apt/lists"
    for entry in lists.iterdir():
        if entry.is_file():
            entry.unlink()


# --- using a root --------------------------------------------------------------------------


class ChrootError(AssertionError):
    pass


@dataclass
class Result:
    argv: Sequence[str]
    returncode: int
    stdout: str
    stderr: str


class ChrootSession:
    """One unpacked root and the way to run commands in it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def prefix(self) -> list[str]:
        return ["unshare", "--fork", "--pid", f"--mount-proc={self.root}/proc",
                "chroot", str(self.root)]

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        timeout: float = 300,
    ) -> Result:
        """Run ``argv`` inside the root with a clean environment."""
        environment = {"PATH": ROOT_PATH, "HOME": "/root", "LC_ALL": "C.UTF-8",
                       "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
        environment.update(env or {})
        full = [*self.prefix(), "/usr/bin/env", "-i",
                *(f"{k}={v}" for k, v in environment.items()), *argv]
        proc = subprocess.run(full, input=input, capture_output=True, text=True,
                              timeout=timeout, check=False)
        result = Result(list(argv), proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise ChrootError(
                f"in chroot: {' '.join(argv)} exited {proc.returncode}\n"
                f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}"
            )
        return result

    def sh(self, script: str, *, check: bool = True) -> Result:
        return self.run(["/bin/sh", "-ec", script], check=check)

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    def read(self, inside: str) -> str:
        return self.path(inside).read_text(encoding="utf-8")

    def write(self, inside: str, text: str, mode: int = 0o644) -> None:
        target = self.path(inside)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        target.chmod(mode)

    def install_steward(self) -> None:
        """Copy this checkout's package into the root, where the engine runs as on a node."""
        dest = self.path("/opt/steward/steward")
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(REPO_SRC, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def pack_root(
    root: Path, tarball: Path, work: Path, started: float, info: dict[str, Any]
) -> None:
    """Pack a finished root into the cache atomically, with its build record beside it."""
    partial = work / tarball.name
    tar = ["tar", "--numeric-owner", "--xattrs", "-C", str(root)]
    if tarball.name.endswith(".zst"):
        tar.append("--zstd")
    subprocess.run([*tar, "-cf", str(partial), "."], check=True, capture_output=True)
    seconds = round(time.monotonic() - started, 1)
    info = {**info, "build_seconds": seconds,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    partial.replace(tarball)
    _stamp_path(tarball).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    _log(f"cached {tarball} ({tarball.stat().st_size // 2**20} MiB) in {seconds}s")


def unpack_tarball(tarball: Path, dest: Path) -> ChrootSession:
    """A fresh copy of a cached root at ``dest`` (which must not exist yet)."""
    dest.mkdir(parents=True)
    tar = ["tar", "--numeric-owner", "--xattrs", "-xpf", str(tarball), "-C", str(dest)]
    if tarball.name.endswith(".zst"):
        tar.insert(1, "--zstd")
    subprocess.run(tar, check=True, capture_output=True)
    return ChrootSession(dest)


def unpack_root(dest: Path) -> ChrootSession:
    """A fresh copy of the cached root at ``dest`` (which must not exist yet)."""
    return unpack_tarball(ensure_root_tarball(), dest)


def private_root(
    tmp_path_factory: Any, label: str, unpack: Callable[[Path], ChrootSession]
) -> Iterator[ChrootSession]:
    """Body of a module-scoped fixture: a private copy of a cached root, deleted afterwards.

    Skips the test module, with the reason, where a root cannot be had here.
    """
    import pytest

    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    dest = tmp_path_factory.mktemp(label) / "root"
    try:
        session = unpack(dest)
    except RootUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield session
    finally:
        remove_tree(dest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rebuild", action="store_true", help="build even if cached")
    args = parser.parse_args(argv)
    try:
        tarball = ensure_root_tarball(rebuild=args.rebuild)
    except RootUnavailable as exc:
        _log(f"cannot build here: {exc}")
        return 1
    _log(f"ready: {tarball} {json.dumps(cached_info())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
