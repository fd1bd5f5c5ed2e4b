"""Mounted filesystems from /proc/self/mounts with their usage from statvfs(3).

Pseudo filesystems (proc, sysfs, cgroup, ...) are skipped: they have no space to report and
would drown the real mounts. A stale network mount can block statvfs for minutes, so network
filesystems are asked from a daemon thread with a deadline and reported without usage when
they do not answer.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from typing import Any

from steward.facts._files import read_text

PSEUDO_FILESYSTEMS = frozenset(
    {
        "autofs",
        "binfmt_misc",
        "bpf",
        "cgroup",
        "cgroup2",
        "configfs",
        "debugfs",
        "devpts",
        "devtmpfs",
        "efivarfs",
        "fusectl",
        "hugetlbfs",
        "mqueue",
        "nsfs",
        "proc",
        "pstore",
        "rpc_pipefs",
        "securityfs",
        "selinuxfs",
        "sysfs",
        "tracefs",
        "fuse.gvfsd-fuse",
        "fuse.portal",
        "ramfs",
    }
)

NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "ceph",
        "glusterfs",
        "fuse.glusterfs",
        "fuse.sshfs",
        "afs",
        "lustre",
        "9p",
        "fuse.s3fs",
        "davfs",
    }
)

#: How long a network filesystem may take to answer statvfs before it is reported without usage.
NETWORK_STATVFS_TIMEOUT = 0.5

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """The kernel writes space, tab, newline and backslash in paths as octal escapes."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mounts(text: str) -> list[tuple[str, str, str, list[str]]]:
    """(device, mount point, filesystem, options) per line of /proc/self/mounts."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        mounts.append((_unescape(fields[0]), _unescape(fields[1]), fields[2], fields[3].split(",")))
    return mounts


def _statvfs_with_deadline(path: str, timeout: float) -> os.statvfs_result | None:
    result: list[os.statvfs_result] = []

    def probe() -> None:
        with contextlib.suppress(OSError):
            result.append(os.statvfs(path))

    thread = threading.Thread(target=probe, name=f"statvfs {path}", daemon=True)
    thread.start()
    thread.join(timeout)
    return result[0] if result else None


def usage(path: str, filesystem: str) -> dict[str, int] | None:
    """Size, available (to unprivileged users) and used bytes, as df(1) computes them."""
    if filesystem in NETWORK_FILESYSTEMS:
        stat = _statvfs_with_deadline(path, NETWORK_STATVFS_TIMEOUT)
    else:
        try:
            stat = os.statvfs(path)
        except OSError:
            stat = None
    if stat is None:
        return None
    return {
        "size_bytes": stat.f_blocks * stat.f_frsize,
        "available_bytes": stat.f_bavail * stat.f_frsize,
        "used_bytes": (stat.f_blocks - stat.f_bfree) * stat.f_frsize,
    }


def mountpoint_facts(mounts: list[tuple[str, str, str, list[str]]]) -> dict[str, Any]:
    """One entry per mount point; when a path is mounted over, the last (visible) mount wins."""
    visible = {path: (device, fs, options) for device, path, fs, options in mounts}
    facts: dict[str, Any] = {}
    for path, (device, filesystem, options) in visible.items():
        if filesystem in PSEUDO_FILESYSTEMS:
            continue
        entry: dict[str, Any] = {"device": device, "filesystem": filesystem, "options": options}
        sizes = usage(path, filesystem)
        if sizes is not None:
            entry.update(sizes)
        facts[path] = entry
    return facts


def collect_mountpoints(root: str) -> dict[str, Any]:
    return {"mountpoints": mountpoint_facts(parse_mounts(read_text(root, "/proc/self/mounts")))}
