"""The ``host`` provider: one entry of an /etc/hosts-format file, found by its canonical name.

Only the managed entry's line is rewritten; every other line, comment and blank line is kept
byte for byte. A bad address is refused before writing, because a broken hosts file can cut a
host off from itself.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from steward.catalog.sensitive import REDACTED
from steward.engine.provider import Change, Provider, ProviderError
from steward.engine.providers.pathutil import (
    DEFAULT_FILE_MODE,
    atomic_write,
    kind_of,
    lstat_or_none,
    missing_parent,
    read_bytes,
    real_path,
    redacted_desired,
)


class _Entry:
    """One parsed entry line and where it is (a plain class: dataclasses cost import time)."""

    __slots__ = ("aliases", "comment", "index", "ip", "name")

    def __init__(
        self, index: int, ip: str, name: str, aliases: list[str], comment: str | None
    ) -> None:
        self.index = index
        self.ip = ip
        self.name = name
        self.aliases = aliases
        self.comment = comment


def _parse(line: str, index: int) -> _Entry | None:
    body, hash_sign, comment = line.partition("#")
    fields = body.split()
    if len(fields) < 2:
        return None
    return _Entry(index, fields[0], fields[1], fields[2:],
                  comment.strip() if hash_sign else None)


def _format(ip: str, name: str, aliases: list[str], comment: str | None) -> str:
    """The layout Puppet's host provider writes: tab-separated, comment last."""
    line = f"{ip}\t{name}"
    if aliases:
        line += "\t" + " ".join(aliases)
    if comment:
        line += f"\t# {comment}"
    return line


def _same_ip(a: str, b: str) -> bool:
    """Equal addresses, however written ("::1" and "0::1"); textual for unparsable ones."""
    if a == b:
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False


class HostProvider(Provider):
    """An entry in a hosts file: ensure, ip, host_aliases, comment."""

    type_name = "host"

    def check(self) -> list[Change]:
        changes, _ = self._plan()
        return changes

    def sync(self, changes: list[Change]) -> None:
        if not changes:
            return
        changes, result = self._plan()
        if result is None:
            return
        data, st = result
        real = real_path(self.ctx, self.params["target"])
        try:
            if st is None:
                atomic_write(real, data, mode=DEFAULT_FILE_MODE)
            else:
                atomic_write(real, data, mode=st.st_mode & 0o7777, uid=st.st_uid,
                             gid=st.st_gid)
        except OSError as exc:
            raise ProviderError(f"cannot update {self.params['target']}: "
                                f"{exc.strerror or exc}") from None

    def desired(self) -> dict[str, Any]:
        return redacted_desired(self, super().desired())

    def _plan(self) -> tuple[list[Change], tuple[bytes, os.stat_result | None] | None]:
        """The changes and the new file content (with the stat to preserve); same for noop."""
        p = self.params
        name, target = p["name"], p["target"]
        present = p["ensure"] != "absent"
        if present:
            self._validate()
        real = real_path(self.ctx, target)
        st = lstat_or_none(real)
        if st is None:
            if not present:
                return [], None
            unresolved = missing_parent(self.ctx, target)
            if unresolved is not None:
                raise unresolved
            line = _format(p["ip"], name, self._aliases(), p.get("comment"))
            change = Change("ensure", "absent", "present", f"added entry to {target} (new file)")
            return [change], ((line + "\n").encode(), None)
        if stat.S_ISLNK(st.st_mode):
            raise ProviderError(f"{target} is a symlink; name the file it points to as 'target'")
        if not stat.S_ISREG(st.st_mode):
            raise ProviderError(f"{target} is a {kind_of(st.st_mode)}, not a regular file")
        try:
            data = read_bytes(real, st.st_size)
        except OSError as exc:
            raise ProviderError(f"cannot read {target}: {exc.strerror}") from None
        text = data.decode("utf-8", "surrogateescape")
        trailing = text.endswith("\n") or not text
        lines = (text[:-1] if text.endswith("\n") else text).split("\n") if text else []
        entries = [e for i, raw in enumerate(lines) if (e := _parse(raw, i)) and e.name == name]

        if not present:
            if not entries:
                return [], None
            drop = {e.index for e in entries}
            kept = [raw for i, raw in enumerate(lines) if i not in drop]
            count = len(entries)
            message = f"removed {count} entr{'ies' if count > 1 else 'y'} from {target}"
            return ([Change("ensure", "present", "absent", message)],
                    (self._dump(kept, trailing), st))

        aliases = self._aliases()
        comment = p.get("comment")
        if not entries:
            line = _format(p["ip"], name, aliases, comment)
            change = Change("ensure", "absent", "present", f"added entry to {target}")
            return [change], (self._dump([*lines, line], True), st)

        entry = entries[0]
        changes: list[Change] = []
        if not _same_ip(entry.ip, p["ip"]):
            changes.append(self._change("ip", entry.ip, p["ip"]))
        if entry.aliases != aliases:
            changes.append(self._change("host_aliases", entry.aliases, aliases))
        if comment is not None and (entry.comment or "") != comment:
            changes.append(self._change("comment", entry.comment, comment))
        if not changes:
            return [], None
        new_line = _format(p["ip"], name, aliases, entry.comment if comment is None else comment)
        result = list(lines)
        result[entry.index] = new_line
        return changes, (self._dump(result, trailing), st)

    def _change(self, prop: str, old: Any, new: Any) -> Change:
        if prop in self.sensitive:
            return Change(prop, REDACTED, REDACTED, f"changed {prop} (sensitive, not shown)")
        return Change(prop, old, new, f"changed {prop} {old!r} to {new!r}")

    def _aliases(self) -> list[str]:
        return list(self.params.get("host_aliases") or [])

    @staticmethod
    def _dump(lines: list[str], trailing: bool) -> bytes:
        if not lines:
            return b""
        text = "\n".join(lines) + ("\n" if trailing else "")
        return text.encode("utf-8", "surrogateescape")

    def _validate(self) -> None:
        """Refuse values that would write a broken or different entry than asked for."""
        p = self.params
        ip = p.get("ip")
        if not isinstance(ip, str) or not ip:
            raise ProviderError("'ip' is required when ensure is present")
        import ipaddress

        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise ProviderError(f"'ip' {ip!r} is not an IPv4 or IPv6 address") from None
        for label in [p["name"], *self._aliases()]:
            if not label or any(c.isspace() or c == "#" for c in label):
                raise ProviderError(f"host name {label!r} may not be empty or contain "
                                    "spaces or '#'")
        comment = p.get("comment")
        if comment is not None and "\n" in comment:
            raise ProviderError("'comment' must be a single line")
