"""The ``symlink`` provider: a link with a given target, replaced atomically when wrong.

The target is stored as given, never mapped under ``--root``: it is the link's content, and a
relative target keeps working wherever the tree is mounted.
"""

# str paths and os calls on purpose: pathlib objects cost more than a whole in-sync check,
# and these providers run for every path resource of every run.

from __future__ import annotations

import contextlib
import os
import stat
from typing import Any

from steward.engine.provider import Change, Provider, ProviderError
from steward.engine.providers.pathutil import (
    fsync_directory,
    kind_of,
    lstat_or_none,
    missing_parent,
    real_path,
    redacted_desired,
    temp_name,
)


class SymlinkProvider(Provider):
    """A symbolic link: ensure, target."""

    type_name = "symlink"

    def check(self) -> list[Change]:
        p = self.params
        path = p["path"]
        real = real_path(self.ctx, path)
        st = lstat_or_none(real)
        if p["ensure"] == "absent":
            if st is None:
                return []
            if not stat.S_ISLNK(st.st_mode):
                raise ProviderError(f"{path} is a {kind_of(st.st_mode)}, not a symlink; "
                                    "a symlink resource will not remove it")
            old = self._readlink(real, path)
            return [Change("ensure", "present", "absent", f"removed symlink to {old!r}")]

        target = p.get("target")
        if not isinstance(target, str) or not target:
            raise ProviderError("'target' is required when ensure is present")
        if st is None:
            unresolved = missing_parent(self.ctx, path)
            if unresolved is not None:
                raise unresolved
            return [Change("ensure", "absent", "present", "created"),
                    Change("target", None, target, f"defined target as {target!r}")]
        if stat.S_ISLNK(st.st_mode):
            old = self._readlink(real, path)
            if old == target:
                return []
            return [Change("target", old, target, f"changed target {old!r} to {target!r}")]

        kind = kind_of(st.st_mode)
        if stat.S_ISREG(st.st_mode):
            if not p.get("force"):
                raise ProviderError(f"{path} is a regular file; set force to replace it "
                                    "with a symlink")
            old_state = "file"
        elif stat.S_ISDIR(st.st_mode):
            if not p.get("force"):
                raise ProviderError(f"{path} is a directory; set force to replace it "
                                    "(when empty) with a symlink")
            try:
                empty = not os.listdir(real)
            except OSError as exc:
                raise ProviderError(f"cannot list {path}: {exc.strerror}") from None
            if not empty:
                raise ProviderError(f"{path} is a directory that is not empty; it will not be "
                                    "replaced with a symlink, even with force")
            old_state = "directory"
        else:
            raise ProviderError(f"{path} is a {kind}; it will not be replaced with a symlink")
        return [Change("ensure", old_state, "present", f"replaced {kind} with a symlink"),
                Change("target", None, target, f"defined target as {target!r}")]

    @staticmethod
    def _readlink(real: str, path: str) -> str:
        try:
            return os.readlink(real)
        except OSError as exc:
            raise ProviderError(f"cannot read symlink {path}: {exc.strerror}") from None

    def desired(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ensure": self.params["ensure"]}
        if self.params.get("target") is not None:
            out["target"] = self.params["target"]
        return redacted_desired(self, out)

    def sync(self, changes: list[Change]) -> None:
        path = self.params["path"]
        by_property = {c.property: c for c in changes}
        if not by_property:
            return
        real = real_path(self.ctx, path)
        try:
            ensure = by_property.get("ensure")
            if ensure is not None and ensure.new == "absent":
                os.unlink(real)
            else:
                if ensure is not None and ensure.old == "directory":
                    # rename(2) cannot put a link over a directory; force allowed an empty one.
                    os.rmdir(real)
                self._link(real, self.params["target"])
            fsync_directory(os.path.dirname(real))
        except OSError as exc:
            raise ProviderError(f"cannot update symlink {path}: {exc.strerror or exc}") from None

    @staticmethod
    def _link(real: str, target: str) -> None:
        """Create the link under a temp name and rename it over the path: no moment without."""
        for _ in range(100):
            tmp = temp_name(real)
            try:
                os.symlink(target, tmp)
                break
            except FileExistsError:
                continue
        else:  # pragma: no cover - 100 collisions of 48 random bits
            raise ProviderError(f"cannot create a temporary link next to {real}")
        try:
            os.replace(tmp, real)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
