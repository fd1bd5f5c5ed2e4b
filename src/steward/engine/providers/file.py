"""The ``file`` provider: content, mode, ownership; atomic writes and content backups.

A run that changes nothing must stay cheap, so :meth:`FileProvider.check` makes one ``lstat``,
compares sizes before reading, compares bytes rather than hashes, and computes display hashes
and diffs only for a property that is actually out of sync.
"""

from __future__ import annotations

import hashlib
import os
import stat
from typing import Any

from steward.catalog.sensitive import REDACTED
from steward.engine.provider import Change, ProviderError
from steward.engine.providers.pathutil import (
    DEFAULT_FILE_MODE,
    PathProvider,
    apply_ownership,
    atomic_write,
    content_diff,
    encode_content,
    format_mode,
    fsync_directory,
    kind_of,
    lstat_or_none,
    missing_parent,
    ownership_changes,
    parse_mode,
    read_bytes,
    real_path,
    redacted_desired,
    resolve_gid,
    resolve_uid,
    sha256_display,
)

# --- the provider --------------------------------------------------------------------------


class FileProvider(PathProvider):
    """A regular file: ensure, content, owner, group, mode."""

    type_name = "file"

    def check(self) -> list[Change]:
        p = self.params
        path = p["path"]
        real = real_path(self.ctx, path)
        st = lstat_or_none(real)
        if p["ensure"] == "absent":
            if st is None:
                return []
            if stat.S_ISDIR(st.st_mode):
                raise ProviderError(f"{path} is a directory; a file resource will not remove it")
            return [Change("ensure", "present", "absent", f"removed {kind_of(st.st_mode)}")]

        if st is None:
            return self._creation(path, st)
        if stat.S_ISLNK(st.st_mode):
            if p.get("content") is None or p.get("replace", True) is False:
                # Replacing a link (say /etc/resolv.conf) with an empty or unmanaged file would
                # break whatever it pointed to; only managed content justifies it.
                raise ProviderError(f"{path} is a symlink; a file resource replaces it only when "
                                    "it manages the content (with replace true)")
            return self._creation(path, st)
        if not stat.S_ISREG(st.st_mode):
            raise ProviderError(f"{path} is a {kind_of(st.st_mode)}, not a regular file")

        changes: list[Change] = []
        content = p.get("content")
        if content is not None and p.get("replace", True) is not False:
            want = encode_content(content)
            have = None
            if st.st_size == len(want):
                have = self._read(real, path, st.st_size)
            if have != want:
                if have is None and "content" not in self.sensitive:
                    have = self._read(real, path, st.st_size)
                changes.append(self._content_change(path, have or b"", want))
        ownership_changes(self.ctx, p, st, changes)
        return changes

    def _creation(self, path: str, st: os.stat_result | None) -> list[Change]:
        if st is None:
            unresolved = missing_parent(self.ctx, path)
            if unresolved is not None:
                raise unresolved
            changes = [Change("ensure", "absent", "present", "created")]
        else:
            changes = [Change("ensure", "symlink", "present", "replaced symlink with a file")]
        content = self.params.get("content")
        if content is not None:
            changes.append(self._content_change(path, None, encode_content(content)))
        ownership_changes(self.ctx, self.params, None, changes)
        return changes

    def _read(self, real: str, path: str, size: int) -> bytes:
        try:
            return read_bytes(real, size)
        except OSError as exc:
            raise ProviderError(f"cannot read {path}: {exc.strerror}") from None

    def _content_change(self, path: str, have: bytes | None, want: bytes) -> Change:
        if "content" in self.sensitive:
            old = None if have is None else REDACTED
            verb = "defined" if have is None else "changed"
            return Change("content", old, REDACTED, f"{verb} content (sensitive, not shown)")
        new = sha256_display(want)
        if have is None:
            return Change("content", None, new, f"defined content as '{new}'",
                          content_diff(path, None, want))
        old = sha256_display(have)
        return Change("content", old, new, f"changed content '{old}' to '{new}'",
                      content_diff(path, have, want))

    def desired(self) -> dict[str, Any]:
        p = self.params
        out: dict[str, Any] = {"ensure": p["ensure"]}
        if p.get("content") is not None:
            out["content"] = (REDACTED if "content" in self.sensitive
                              else sha256_display(encode_content(p["content"])))
        for name in ("owner", "group"):
            if p.get(name) is not None:
                out[name] = p[name]
        if p.get("mode") is not None:
            out["mode"] = format_mode(parse_mode(p["mode"]))
        return redacted_desired(self, out)

    def _sync(self, path: str, real: str, by_property: dict[str, Change]) -> None:
        p = self.params
        ensure = by_property.get("ensure")
        if ensure is not None and ensure.new == "absent":
            st = os.lstat(real)
            if stat.S_ISDIR(st.st_mode):
                raise ProviderError(f"{path} is a directory; a file resource will not remove it")
            if stat.S_ISREG(st.st_mode) and p.get("backup", True):
                self._backup(path, read_bytes(real, st.st_size))
            os.unlink(real)
            fsync_directory(os.path.dirname(real))
            return

        content = p.get("content")
        want = encode_content(content) if content is not None else b""
        if ensure is not None:  # create, or replace a symlink
            mode = parse_mode(p["mode"]) if p.get("mode") is not None else DEFAULT_FILE_MODE
            uid = resolve_uid(self.ctx, p["owner"]) if p.get("owner") is not None else None
            gid = resolve_gid(self.ctx, p["group"]) if p.get("group") is not None else None
            atomic_write(real, want, mode=mode, uid=uid, gid=gid)
            return

        if "content" in by_property:
            st = os.lstat(real)
            if not stat.S_ISREG(st.st_mode):
                raise ProviderError(f"{path} is no longer a regular file")
            if p.get("backup", True):
                self._backup(path, read_bytes(real, st.st_size))
            mode = parse_mode(p["mode"]) if p.get("mode") is not None else st.st_mode & 0o7777
            uid = resolve_uid(self.ctx, p["owner"]) if p.get("owner") is not None else st.st_uid
            gid = resolve_gid(self.ctx, p["group"]) if p.get("group") is not None else st.st_gid
            atomic_write(real, want, mode=mode, uid=uid, gid=gid)
            return

        apply_ownership(self.ctx, real, p, by_property)

    def _backup(self, path: str, data: bytes) -> None:
        """Keep replaced content under the state directory, named by its hash (a filebucket)."""
        digest = hashlib.sha256(data).hexdigest()
        bucket = self.ctx.state_dir / "backup"
        bucket.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = str(bucket / digest)
        if lstat_or_none(target) is None:
            atomic_write(target, data, mode=0o600)
        if "content" in self.sensitive:
            # The digest of a secret is itself sensitive, so the name stays out of the log.
            self.ctx.log("info", self.resource.ref,
                         f"backed up the previous content of {path} under {bucket}")
        else:
            self.ctx.log("info", self.resource.ref,
                         f"backed up the previous content of {path} to {target}")
