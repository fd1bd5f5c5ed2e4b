"""The ``os`` and ``kernel`` facts, from os-release(5) and uname(2), named as Facter names them.

Names and values follow Facter where it has them (``os.family`` is ``Debian``/``RedHat``/...,
Ubuntu's ``release.major`` is ``24.04``), so manifests ported from Puppet keep working.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from typing import Any

from steward.facts._files import read_optional, read_text

#: os-release ``ID`` / ``ID_LIKE`` words mapped to Facter's ``os.family``; ID is tried first.
FAMILIES = {
    "debian": "Debian",
    "ubuntu": "Debian",
    "rhel": "RedHat",
    "fedora": "RedHat",
    "centos": "RedHat",
    "suse": "Suse",
    "opensuse": "Suse",
    "sles": "Suse",
    "arch": "Archlinux",
    "alpine": "Alpine",
    "gentoo": "Gentoo",
}

#: os-release ``ID`` mapped to Facter's ``os.name``; other IDs fall back to the NAME field.
NAMES = {
    "debian": "Debian",
    "ubuntu": "Ubuntu",
    "linuxmint": "LinuxMint",
    "rhel": "RedHat",
    "centos": "CentOS",
    "rocky": "Rocky",
    "almalinux": "AlmaLinux",
    "ol": "OracleLinux",
    "fedora": "Fedora",
    "amzn": "Amazon",
    "alpine": "Alpine",
    "sles": "SLES",
    "opensuse-leap": "openSUSE",
    "opensuse-tumbleweed": "openSUSE",
    "arch": "Archlinux",
    "gentoo": "Gentoo",
}

#: Machine names as dpkg spells them; Debian-family hosts report these, like Facter does.
DPKG_ARCHITECTURES = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "armhf",
    "armv6l": "armel",
    "i686": "i386",
    "i586": "i386",
    "i386": "i386",
    "ppc64le": "ppc64el",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "mips64": "mips64el",
}

_PAREN = re.compile(r"\(([^)]+)\)")
_DEBIAN_VERSION = re.compile(r"^\d+(\.\d+)*$")
_KERNEL_VERSION = re.compile(r"^\d+(\.\d+)*")


def parse_os_release(text: str) -> dict[str, str]:
    """Parse os-release(5): shell-style ``KEY=value`` lines with optional quoting."""
    fields: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.replace("_", "").isalnum():
            continue
        try:
            fields[key] = " ".join(shlex.split(value))
        except ValueError:  # unbalanced quote: keep what is there rather than lose the field
            fields[key] = value.strip("\"'")
    return fields


def read_os_release(root: str) -> dict[str, str]:
    """/etc/os-release, falling back to /usr/lib/os-release as the spec says."""
    try:
        return parse_os_release(read_text(root, "/etc/os-release"))
    except FileNotFoundError:
        return parse_os_release(read_text(root, "/usr/lib/os-release"))


def os_family(release: Mapping[str, str]) -> str:
    """Facter's family: the first of ID, then each ID_LIKE word, that names a known family."""
    words = [release.get("ID", "").lower(), *release.get("ID_LIKE", "").lower().split()]
    for word in words:
        if word in FAMILIES:
            return FAMILIES[word]
    return release.get("NAME") or release.get("ID") or "Linux"


def os_facts(
    release: Mapping[str, str], *, machine: str, debian_version: str | None = None
) -> dict[str, Any]:
    """Build the structured ``os`` fact from parsed os-release fields and the machine name."""
    os_id = release.get("ID", "").lower()
    family = os_family(release)
    facts: dict[str, Any] = {
        "family": family,
        "name": NAMES.get(os_id) or release.get("NAME") or os_id or "Linux",
        "hardware": machine,
        "architecture": DPKG_ARCHITECTURES.get(machine, machine) if family == "Debian" else machine,
    }
    if release.get("PRETTY_NAME"):
        facts["pretty_name"] = release["PRETTY_NAME"]
    full = release.get("VERSION_ID", "")
    # Debian's point release lives only in /etc/debian_version ("12.5"); Facter reports it.
    if os_id == "debian" and debian_version and _DEBIAN_VERSION.match(debian_version):
        full = debian_version
    if full:
        parts = full.split(".")
        version: dict[str, str] = {"full": full}
        if os_id == "ubuntu":
            # Facter treats Ubuntu's YY.MM as the major release: "24.04", no minor.
            version["major"] = ".".join(parts[:2])
        else:
            version["major"] = parts[0]
            if len(parts) > 1:
                version["minor"] = parts[1]
        facts["release"] = version
    codename = release.get("VERSION_CODENAME") or release.get("UBUNTU_CODENAME")
    if not codename:
        match = _PAREN.search(release.get("VERSION", ""))
        codename = match.group(1) if match else None
    if codename:
        facts["codename"] = codename
    return facts


def collect_os(root: str) -> dict[str, Any]:
    release = read_os_release(root)
    debian_version = read_optional(root, "/etc/debian_version")
    return {"os": os_facts(release, machine=os.uname().machine, debian_version=debian_version)}


def kernel_facts(sysname: str, release: str) -> dict[str, str]:
    """``version`` is the numeric part of the release, as Facter's ``kernelversion``."""
    match = _KERNEL_VERSION.match(release)
    version = match.group(0) if match else release
    return {
        "name": sysname,
        "release": release,
        "version": version,
        "major": ".".join(version.split(".")[:2]),
    }


def collect_kernel(root: str) -> dict[str, Any]:
    uname = os.uname()
    return {"kernel": kernel_facts(uname.sysname, uname.release)}
