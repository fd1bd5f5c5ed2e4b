"""Reading system files relative to a root, so every reader can run against a captured tree."""

from __future__ import annotations

from pathlib import Path


def under(root: str, path: str) -> Path:
    """Map an absolute system path (``/proc/meminfo``) to the same path below ``root``."""
    if root in ("", "/"):
        return Path(path)
    return Path(root) / path.lstrip("/")


def read_text(root: str, path: str) -> str:
    """The file's text; raises OSError like open() so callers decide what missing means."""
    return under(root, path).read_text(encoding="utf-8", errors="replace")


def read_optional(root: str, path: str) -> str | None:
    """The file's stripped text, or None when it is missing or unreadable (sysfs attributes)."""
    try:
        return read_text(root, path).strip()
    except OSError:
        return None


def names_in(root: str, path: str) -> list[str]:
    """Sorted entry names of a directory; empty when it is missing or unreadable."""
    try:
        return sorted(entry.name for entry in under(root, path).iterdir())
    except OSError:
        return []


def is_live(root: str) -> bool:
    """True when facts describe the running system, so kernel queries (ioctl, netlink) apply."""
    return root in ("", "/")
