"""A cached variant of the Debian test root with rpm, dnf and createrepo_c installed.

Debian bookworm ships ``rpm`` 4.18 (with ``rpmbuild``), ``dnf`` 4.14 and ``createrepo-c``,
which is enough to run the dnf/rpm package backend for real. The variant is built once from
the cached Debian root (``debian_root.py``): a copy of it is unpacked, the tools are
installed *inside the copy* with its own apt from the configured mirror, and the result is
packed as its own tarball beside the base one. The host is never changed.

One setting differs from Debian's default: Debian's rpm keeps its database in ``~/.rpmdb``
(a Debian patch, so that rpm never passes for the system's package manager). The root sets
``%_dbpath /var/lib/rpm`` in ``/etc/rpm/macros`` so that rpm and dnf share one system-wide
database, as on Fedora and RHEL, whatever ``$HOME`` the engine runs with.

The cache is rebuilt when this recipe changes or when the base root was rebuilt. Run as a
script to build (or check) it ahead of a test run::

    python -m tests.engine.providers.rpm_root [--rebuild]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.engine.providers.debian_root import (
    SUITE,
    ChrootError,
    ChrootSession,
    RootUnavailable,
    _finish_root,
    _locked,
    _recipe_id,
    _stamp_path,
    cache_dir,
    ensure_root_tarball,
    pack_root,
    remove_tree,
    unavailable_reason,
    unpack_root,
    unpack_tarball,
)
from tests.engine.providers.debian_root import cached_info as base_cached_info

#: Installed into the copy of the base root. ``rpm`` brings ``rpmbuild``; ``file`` is what
#: rpmbuild's dependency generators call to classify packaged files.
PACKAGES = ("rpm", "dnf", "createrepo-c", "file")
#: rpm and dnf share one system database, as on an RPM-based distribution.
RPM_MACROS = "%_dbpath /var/lib/rpm\n"
RPM_DBPATH = "/var/lib/rpm"
#: Bump when the build steps change, so existing caches are rebuilt.
RECIPE_VERSION = 1
NAME = f"debian-{SUITE}-rpm-root"
#: Installed versions recorded in the build record (and in captured fixtures).
VERSION_PACKAGES = ("rpm", "dnf", "python3-dnf", "libdnf2", "librpm9", "createrepo-c")


def _recipe() -> dict[str, object]:
    return {"base_recipe_id": _recipe_id(), "packages": list(PACKAGES),
            "rpm_macros": RPM_MACROS, "recipe_version": RECIPE_VERSION}


def _rpm_recipe_id() -> str:
    encoded = json.dumps(_recipe(), sort_keys=True).encode()
    return hashlib.sha256(encoded).hexdigest()[:12]


def tarball_path() -> Path:
    suffix = ".tar.zst" if shutil.which("zstd") else ".tar"
    return cache_dir() / f"{NAME}{suffix}"


def cached_info() -> dict[str, object] | None:
    """The build record when the tarball is there, matches the recipe, and was built from
    the base root that is cached now."""
    tarball = tarball_path()
    stamp = _stamp_path(tarball)
    if not tarball.is_file() or not stamp.is_file():
        return None
    try:
        info: dict[str, object] = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    base = base_cached_info()
    if base is None or info.get("base_built_at") != base.get("built_at"):
        return None
    return info if info.get("recipe_id") == _rpm_recipe_id() else None


def _log(message: str) -> None:
    sys.stderr.write(f"rpm-root: {message}\n")
    sys.stderr.flush()


def ensure_rpm_root_tarball(*, rebuild: bool = False) -> Path:
    """Build the cached rpm root unless a matching one exists; safe for concurrent callers."""
    reason = unavailable_reason()
    if reason:
        raise RootUnavailable(reason)
    ensure_root_tarball()
    tarball = tarball_path()
    with _locked(cache_dir() / f"{NAME}.lock"):
        if not rebuild and cached_info() is not None:
            return tarball
        _build(tarball)
    return tarball


def installed_versions(session: ChrootSession) -> dict[str, str]:
    """Debian package versions of the rpm/dnf stack in a root."""
    result = session.run(["dpkg-query", "-W", "-f", "${Package}\\t${Version}\\n",
                          *VERSION_PACKAGES], check=False)
    versions = {}
    for line in result.stdout.splitlines():
        name, _, version = line.partition("\t")
        if version:
            versions[name] = version
    return versions


def _build(tarball: Path) -> None:
    base = base_cached_info() or {}
    work = Path(tempfile.mkdtemp(prefix="build-rpm-", dir=cache_dir()))
    started = time.monotonic()
    _log(f"building {NAME} from the cached {SUITE} root (installs {', '.join(PACKAGES)} "
         "from the mirror in the root's apt sources); once")
    try:
        session = unpack_root(work / "root")
        _install_packages(session)
        _configure_rpm(session)
        _finish_root(session.root)
        pack_root(session.root, tarball, work, started,
                  {**_recipe(), "recipe_id": _rpm_recipe_id(),
                   "base_built_at": base.get("built_at"),
                   "versions": installed_versions(session)})
    finally:
        remove_tree(work)


def _install_packages(session: ChrootSession) -> None:
    """apt inside the root, from the sources debootstrap wrote; the host's resolver is lent
    for the download (the root's copy dates from the base build) and then put back."""
    resolv = session.path("/etc/resolv.conf")
    saved = resolv.read_bytes() if resolv.is_file() and not resolv.is_symlink() else None
    host_resolv = Path("/etc/resolv.conf")
    if host_resolv.is_file():
        if resolv.is_symlink():
            resolv.unlink()
        resolv.write_bytes(host_resolv.read_bytes())
    try:
        session.run(["apt-get", "-q", "-o", "Acquire::Languages=none", "update"], timeout=900)
        session.run(["apt-get", "-q", "-y", "--no-install-recommends", "install", *PACKAGES],
                    timeout=1800)
    except ChrootError as exc:
        raise RuntimeError(f"installing {', '.join(PACKAGES)} in the rpm root failed: {exc}"
                           ) from exc
    finally:
        if saved is not None:
            resolv.write_bytes(saved)


def _configure_rpm(session: ChrootSession) -> None:
    """One system-wide rpm database at /var/lib/rpm, initialised empty."""
    session.write("/etc/rpm/macros", RPM_MACROS)
    per_user = session.path("/root/.rpmdb")
    if per_user.exists():
        shutil.rmtree(per_user)
    session.run(["rpm", "--initdb"])
    dbpath = session.run(["rpm", "--eval", "%{_dbpath}"]).stdout.strip()
    if dbpath != RPM_DBPATH:
        raise RuntimeError(f"rpm in the root uses {dbpath!r}, not {RPM_DBPATH}")
    listing = session.run(["rpm", "-qa"]).stdout
    if listing.strip():
        raise RuntimeError(f"the new rpm database is not empty: {listing!r}")


def unpack_rpm_root(dest: Path) -> ChrootSession:
    """A fresh copy of the cached rpm root at ``dest`` (which must not exist yet)."""
    return unpack_tarball(ensure_rpm_root_tarball(), dest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rebuild", action="store_true", help="build even if cached")
    args = parser.parse_args(argv)
    try:
        tarball = ensure_rpm_root_tarball(rebuild=args.rebuild)
    except RootUnavailable as exc:
        _log(f"cannot build here: {exc}")
        return 1
    _log(f"ready: {tarball} {json.dumps(cached_info())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
