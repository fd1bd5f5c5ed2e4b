"""The node engine as one self-contained zipapp, for hosts that have nothing but ``python3``.

The archive holds only the standard-library side of Steward (``steward/__init__.py``,
``__main__.py``, ``clock.py``, ``errors.py`` and the ``catalog``, ``engine`` and ``facts``
packages) plus a top-level ``__main__.py`` that runs ``facts``, ``apply`` or ``task`` (one task
job's part, its document on stdin). It is built byte-for-byte reproducibly (sorted entries, a
fixed timestamp and mode, fixed compression), so its sha256 identifies the code: a host keeps
``bundle-<sha>.pyz`` and is sent the bundle again only when the code changes. No ``.pyc`` files
are included: they are tied to one Python version, and the target's ``python3`` may not be the
controller's."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import steward
from steward.transport import TransportError

#: The oldest Python the shipped engine runs on (the project's ``requires-python``).
MIN_PYTHON = (3, 11)
#: What is shipped, relative to the ``steward`` package directory.
TOP_MODULES = ("__init__.py", "__main__.py", "clock.py", "errors.py")
NODE_PACKAGES = ("catalog", "engine", "facts")
#: zip's epoch: every entry gets this timestamp, whatever the files' mtimes.
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
SHEBANG = b"#!/usr/bin/env python3\n"
#: Flag of the bundle's ``apply``: the first line of stdin is the secrets JSON.
SECRETS_ON_STDIN = "--secrets-on-stdin"

#: The archive's own ``__main__.py``. It must itself run on any python3 far enough to print
#: a clear message, and it only dispatches to the node commands: the full CLI is not shipped.
BUNDLE_MAIN = f'''\
"""Steward node bundle: python3 BUNDLE.pyz {{facts|apply|task}} [ARGS]."""
import os
import sys

MIN_PYTHON = {MIN_PYTHON!r}
SECRETS_ON_STDIN = {SECRETS_ON_STDIN!r}


def _fail(message):
    sys.stderr.write("steward: error: " + message + "\\n")
    return 1


def _feed_secrets(argv):
    """Hand the secrets line of stdin to the engine through a pipe, never through a file.

    The engine reads --secrets from a path; /dev/fd/N of a pipe is a path that lives only in
    memory. A thread writes, so a bundle larger than the pipe buffer cannot deadlock.
    """
    import threading

    argv.remove(SECRETS_ON_STDIN)
    data = sys.stdin.readline().encode("utf-8")
    read_end, write_end = os.pipe()

    def write():
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(write_end, view):]
        finally:
            os.close(write_end)

    threading.Thread(target=write, daemon=True).start()
    for directory in ("/dev/fd", "/proc/self/fd"):
        if os.path.isdir(directory):
            return argv + ["--secrets", directory + "/" + str(read_end)]
    os.close(read_end)
    raise OSError("neither /dev/fd nor /proc/self/fd exists: cannot pass secrets in memory")


def main(argv):
    if sys.version_info[:2] < MIN_PYTHON:
        return _fail(
            "the Steward node engine needs Python %d.%d or newer; %s is %s"
            % (MIN_PYTHON + (sys.executable, sys.version.split()[0]))
        )
    if not argv or argv[0] not in ("apply", "facts", "task"):
        return _fail("a Steward bundle runs only: facts [ARGS] | apply --catalog FILE [ARGS]"
                     " | task (the task document on stdin)")
    # Catalogs and reports are UTF-8 whatever the remote locale is.
    sys.stdin.reconfigure(encoding="utf-8")
    sys.stdout.reconfigure(encoding="utf-8")
    sys.stderr.reconfigure(encoding="utf-8", errors="backslashreplace")
    if argv[0] == "apply" and SECRETS_ON_STDIN in argv:
        try:
            argv = _feed_secrets(list(argv))
        except OSError as exc:
            return _fail(str(exc))
    from steward.engine.cli import main as node_main

    return node_main(argv)


sys.exit(main(sys.argv[1:]))
'''


@dataclass(frozen=True)
class Bundle:
    """A built bundle: its bytes, their sha256, and where the local cache keeps them."""

    path: Path
    sha256: str
    data: bytes = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def remote_name(self) -> str:
        return f"bundle-{self.sha256}.pyz"


def package_dir() -> Path:
    return Path(steward.__file__).resolve().parent


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/steward/bundles``: rebuildable at any time, so a cache, not state."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "steward" / "bundles"


def bundle_members(source: Path | None = None) -> list[tuple[str, Path]]:
    """(archive name, file) of every shipped source file, sorted by archive name."""
    root = source if source is not None else package_dir()
    members: list[tuple[str, Path]] = []
    for name in TOP_MODULES:
        path = root / name
        if not path.is_file():
            raise TransportError(f"cannot build the node bundle: {path} is missing")
        members.append((f"steward/{name}", path))
    for package in NODE_PACKAGES:
        directory = root / package
        if not (directory / "__init__.py").is_file():
            raise TransportError(f"cannot build the node bundle: {directory} is not a package")
        for path in directory.rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            relative = path.relative_to(root).as_posix()
            members.append((f"steward/{relative}", path))
    return sorted(members)


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=FIXED_DATE_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # unix, so the mode below is honoured
    info.external_attr = 0o100644 << 16
    return info


def build_bundle_bytes(source: Path | None = None) -> bytes:
    """The archive's bytes: the same for the same code, whatever the files' mtimes."""
    entries = [("__main__.py", BUNDLE_MAIN.encode("utf-8"))]
    entries += [(name, path.read_bytes()) for name, path in bundle_members(source)]
    buffer = io.BytesIO()
    buffer.write(SHEBANG)
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in sorted(entries):
            archive.writestr(_entry(name), data, compresslevel=9)
    return buffer.getvalue()


_memo: dict[tuple[object, ...], Bundle] = {}


def build_bundle(source: Path | None = None, cache_dir: Path | None = None) -> Bundle:
    """Build the bundle once per source state and keep it as ``bundle-<sha>.pyz`` in the cache.

    Pushing to many hosts calls this once per host; the stat-based memo makes every call but
    the first free while still noticing an edited source file.
    """
    root = source if source is not None else package_dir()
    directory = cache_dir if cache_dir is not None else default_cache_dir()
    fingerprint: tuple[object, ...] = (str(root), str(directory), *(
        (name, stat.st_size, stat.st_mtime_ns)
        for name, path in bundle_members(root)
        for stat in (path.stat(),)
    ))
    cached = _memo.get(fingerprint)
    if cached is not None and cached.path.is_file():
        return cached
    data = build_bundle_bytes(root)
    digest = hashlib.sha256(data).hexdigest()
    path = directory / f"bundle-{digest}.pyz"
    if not (path.is_file() and path.stat().st_size == len(data)):
        _write_atomically(path, data)
    bundle = Bundle(path=path, sha256=digest, data=data)
    _memo[fingerprint] = bundle
    return bundle


def _write_atomically(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(prefix=".bundle-", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.chmod(partial, 0o644)
            os.replace(partial, path)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise TransportError(
            f"cannot write the node bundle to {path}: {exc.strerror or exc}"
        ) from exc
