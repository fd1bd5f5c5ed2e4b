"""The ``directory`` provider: existence, ownership, mode, and purging unmanaged entries.

Purge works like Puppet's ``recurse`` + ``purge``: everything below the directory that the
catalog does not manage and that does not lead to something it manages is removed, at any
depth. The change lists what goes before anything goes, so noop shows exactly that.
"""

# str paths and os calls on purpose: pathlib objects cost more than a whole in-sync check,
# and these providers run for every path resource of every run.

from __future__ import annotations

import os
import stat
from typing import Any

from steward.engine.provider import Change, ProviderError
from steward.engine.providers.pathutil import (
    PathProvider,
    apply_ownership,
    fsync_directory,
    kind_of,
    lstat_or_none,
    missing_parent,
    ownership_changes,
    parse_mode,
    real_path,
    redacted_desired,
    resolve_gid,
    resolve_uid,
)

#: New directories get this mode when the catalog gives none (set explicitly, not via umask).
DEFAULT_DIRECTORY_MODE = 0o755


def _entries(count: int) -> str:
    return f"{count} entr{'y' if count == 1 else 'ies'}"


class DirectoryProvider(PathProvider):
    """A directory: ensure, owner, group, mode, purge."""

    type_name = "directory"

    def check(self) -> list[Change]:
        p = self.params
        path = p["path"]
        real = real_path(self.ctx, path)
        st = lstat_or_none(real)
        if p["ensure"] == "absent":
            if st is None:
                return []
            if not stat.S_ISDIR(st.st_mode):
                raise ProviderError(f"{path} is a {kind_of(st.st_mode)}, not a directory; "
                                    "a directory resource will not remove it")
            count = len(self._listdir(real, path))
            if count and not p.get("force"):
                raise ProviderError(f"{path} is not empty ({_entries(count)}); set force to "
                                    "remove it with its contents")
            message = "removed" + (f" with its {_entries(count)}" if count else "")
            return [Change("ensure", "present", "absent", message)]

        if st is None:
            unresolved = missing_parent(self.ctx, path)
            if unresolved is not None:
                raise unresolved
            changes = [Change("ensure", "absent", "present", "created")]
            ownership_changes(self.ctx, p, None, changes)
            return changes
        if not stat.S_ISDIR(st.st_mode):
            raise ProviderError(f"{path} is a {kind_of(st.st_mode)}, not a directory")
        changes = []
        ownership_changes(self.ctx, p, st, changes)
        if p.get("purge"):
            unmanaged = self._unmanaged(path, real)
            if unmanaged:
                changes.append(Change("purge", unmanaged, [],
                                      f"purged {_entries(len(unmanaged))} not in the catalog"))
        return changes

    @staticmethod
    def _listdir(real: str, path: str) -> list[str]:
        try:
            return os.listdir(real)
        except OSError as exc:
            raise ProviderError(f"cannot list {path}: {exc.strerror}") from None

    def _unmanaged(self, path: str, real: str) -> list[str]:
        """Relative paths of the top-most entries to remove, sorted; directories end in "/"."""
        base = os.path.normpath(path)
        prefix = base if base.endswith("/") else base + "/"
        managed: set[str] = set()
        ancestors: set[str] = set()
        for other in self.ctx.managed_paths:
            norm = os.path.normpath(other)
            if not norm.startswith(prefix):
                continue
            rel = norm[len(prefix):]
            managed.add(rel)
            parts = rel.split("/")
            for depth in range(1, len(parts)):
                ancestors.add("/".join(parts[:depth]))
        found: list[str] = []

        def walk(directory: str, rel_dir: str) -> None:
            try:
                with os.scandir(directory) as entries:
                    listing = [(entry.name, entry.is_dir(follow_symlinks=False))
                               for entry in entries]
            except OSError as exc:
                raise ProviderError(f"cannot list {base}/{rel_dir}: {exc.strerror}") from None
            for name, is_dir in listing:
                rel = rel_dir + name
                if rel in managed or rel in ancestors:
                    if is_dir:
                        walk(os.path.join(directory, name), rel + "/")
                else:
                    found.append(rel + "/" if is_dir else rel)

        walk(real, "")
        return sorted(found)

    def desired(self) -> dict[str, Any]:
        p = self.params
        out: dict[str, Any] = {"ensure": p["ensure"]}
        for name in ("owner", "group"):
            if p.get(name) is not None:
                out[name] = p[name]
        if p.get("mode") is not None:
            out["mode"] = f"{parse_mode(p['mode']):04o}"
        if p.get("purge"):
            out["purge"] = []
        return redacted_desired(self, out)

    def _sync(self, path: str, real: str, by_property: dict[str, Change]) -> None:
        p = self.params
        ensure = by_property.get("ensure")
        if ensure is not None and ensure.new == "absent":
            if p.get("force") and os.listdir(real):
                import shutil

                shutil.rmtree(real)
            else:
                os.rmdir(real)
            fsync_directory(os.path.dirname(real))
            return
        if ensure is not None:
            self._create(path, real)
            return
        apply_ownership(self.ctx, real, p, by_property)
        purge = by_property.get("purge")
        if purge is not None:
            self._purge(path, real, purge.old)

    def _create(self, path: str, real: str) -> None:
        """mkdir the leaf only, restrictive until owner and mode are set: no looser window."""
        p = self.params
        try:
            os.mkdir(real, 0o700)
        except FileNotFoundError:
            raise ProviderError(
                f"cannot create {path}: parent directory {os.path.dirname(path)} does not exist"
            ) from None
        uid = resolve_uid(self.ctx, p["owner"]) if p.get("owner") is not None else -1
        gid = resolve_gid(self.ctx, p["group"]) if p.get("group") is not None else -1
        if uid != -1 or gid != -1:
            os.chown(real, uid, gid, follow_symlinks=False)
        mode = parse_mode(p["mode"]) if p.get("mode") is not None else DEFAULT_DIRECTORY_MODE
        os.chmod(real, mode)
        fsync_directory(os.path.dirname(real))

    def _purge(self, path: str, real: str, entries: list[str]) -> None:
        import shutil

        for rel in entries:
            target = os.path.join(real, rel.rstrip("/"))
            st = lstat_or_none(target)
            if st is None:
                continue
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(target)
            else:
                os.unlink(target)
            self.ctx.log("info", self.resource.ref, f"purged {os.path.join(path, rel)}")
