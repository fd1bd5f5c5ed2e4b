"""Tiny .deb packages and a flat apt repository, so package tests never need the network.

Packages are built with the root's own ``dpkg-deb --build``; the repository's ``Packages``
index is written here from each .deb's own control file (read from the ar archive), as
dpkg-scanpackages would, so the root needs no dpkg-dev.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.engine.providers.debian_root import ChrootSession


def build_deb(
    session: ChrootSession,
    repo: str,
    name: str,
    version: str,
    *,
    files: Mapping[str, str],
    conffiles: Sequence[str] = (),
    depends: str | None = None,
    arch: str = "all",
) -> Path:
    """Build ``name_version_arch.deb`` into ``repo`` (a path inside the root) with the
    root's own ``dpkg-deb``; ``files`` maps absolute paths to their content."""
    tree = f"/srv/build/{name}-{version}"
    control = [
        f"Package: {name}",
        f"Version: {version}",
        f"Architecture: {arch}",
        "Maintainer: Steward tests <tests@steward.invalid>",
        "Priority: optional",
        "Section: misc",
    ]
    if depends:
        control.append(f"Depends: {depends}")
    control.append(f"Description: Steward test package {name} {version}")
    session.write(f"{tree}/DEBIAN/control", "\n".join(control) + "\n")
    if conffiles:
        session.write(f"{tree}/DEBIAN/conffiles", "".join(f"{c}\n" for c in conffiles))
    for path, content in files.items():
        session.write(f"{tree}/{path.lstrip('/')}", content)
    deb = f"{repo}/{name}_{version}_{arch}.deb"
    session.path(repo).mkdir(parents=True, exist_ok=True)
    session.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", tree, deb])
    return session.path(deb)


def deb_control(deb: Path) -> str:
    """The control file of a .deb, read from its ar archive (control.tar.{gz,xz,zst?})."""
    data = deb.read_bytes()
    if not data.startswith(b"!<arch>\n"):
        raise ValueError(f"{deb} is not an ar archive")
    offset = 8
    while offset + 60 <= len(data):
        header = data[offset:offset + 60]
        member = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = data[offset + 60:offset + 60 + size]
        offset += 60 + size + (size % 2)
        if member.startswith("control.tar"):
            with tarfile.open(fileobj=io.BytesIO(body)) as archive:
                for info in archive.getmembers():
                    if info.name.lstrip("./") == "control":
                        handle = archive.extractfile(info)
                        if handle is not None:
                            return handle.read().decode()
    raise ValueError(f"{deb} has no control file")


def write_flat_repo(repo: Path) -> Path:
    """Write ``Packages`` for every .deb in ``repo`` (a flat repository: ``deb file:repo ./``)."""
    stanzas = []
    for deb in sorted(repo.glob("*.deb")):
        blob = deb.read_bytes()
        control = deb_control(deb).rstrip("\n")
        stanzas.append(
            f"{control}\nFilename: ./{deb.name}\nSize: {len(blob)}\n"
            f"MD5sum: {hashlib.md5(blob).hexdigest()}\n"
            f"SHA256: {hashlib.sha256(blob).hexdigest()}\n"
        )
    packages = repo / "Packages"
    packages.write_text("\n".join(stanzas))
    return packages
