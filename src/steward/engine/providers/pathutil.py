"""Path helpers shared by the path-based providers (file, directory, symlink, line, host).

Kept cheap on purpose: a run that changes nothing must check a thousand files in well under a
second including interpreter start-up, so this works on str paths with os calls (pathlib
objects cost more than a whole in-sync check), caches id lookups per run, and imports modules
needed only to change things (difflib, shutil, tempfile) where they are used.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import os
import pwd
import stat
from collections.abc import Callable
from typing import Any

from steward.catalog.sensitive import REDACTED
from steward.engine.context import Context
from steward.engine.provider import Change, Provider, ProviderError, Unresolved

#: New files get this mode when the catalog gives none (set explicitly, not left to umask).
DEFAULT_FILE_MODE = 0o644
#: Above this size (either side) a content change carries a note instead of a diff.
DIFF_MAX_BYTES = 1 << 20
#: A diff longer than this many lines is cut, with a note saying how much was left out.
DIFF_MAX_LINES = 2000

_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK
_CREATE_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
)
_UID_BY_NAME = "steward.ids.uid_by_name"
_GID_BY_NAME = "steward.ids.gid_by_name"
_USER_BY_UID = "steward.ids.user_by_uid"
_GROUP_BY_GID = "steward.ids.group_by_gid"


# --- paths -------------------------------------------------------------------------------


def real_path(ctx: Context, path: Any) -> str:
    """The on-disk path for a catalog path, confined under ``--root``.

    Under a root, every parent component is resolved (symlinks followed) and the result must
    stay under the root: a symlink leading out of it (``/etc/app -> /tmp/x``, then a file
    ``/etc/app/conf``) fails the resource instead of writing outside. The path returned has no
    symlink left in its parents, so the kernel cannot follow one out either; the last
    component is never followed (a symlink resource manages the link itself, and files are
    opened with O_NOFOLLOW). What remains is a race with a process that swaps a component for
    a link between this check and the write (docs/engine.md#confinement).
    """
    if not isinstance(path, str) or not path:
        raise ProviderError(f"path {path!r} is not a string")
    if ctx.root is None and path[0] == "/":
        return path
    try:
        mapped = str(ctx.path(path))
    except ValueError as exc:
        raise ProviderError(str(exc)) from None
    if ctx.root is None:
        return mapped
    root = os.path.realpath(ctx.root)
    if not os.path.normpath(path).strip("/"):
        return root  # "/" is the root itself (the parent of a top-level path such as /srv)
    parent, name = os.path.split(mapped)
    resolved = os.path.realpath(parent)
    if resolved != root and not resolved.startswith(root + os.sep):
        raise ProviderError(_escape_message(str(ctx.root), root, path))
    return os.path.join(resolved, name) if name else resolved


def _escape_message(given: str, root: str, path: str) -> str:
    """Which component of ``path`` is the symlink that leads out of the root, in words."""
    current = root
    parts = [p for p in os.path.normpath(path).split("/") if p][:-1]
    for index, part in enumerate(parts):
        current = os.path.join(current, part)
        if os.path.islink(current):
            target = os.path.realpath(current)
            if target != root and not target.startswith(root + os.sep):
                shown = "/" + "/".join(parts[:index + 1])
                return (f"{shown} is a symlink leading outside --root {given} (to {target}); "
                        f"refusing to manage {path} through it")
        current = os.path.realpath(current)
    return f"{path} resolves outside --root {given}; refusing to manage it"


def lstat_or_none(real: str) -> os.stat_result | None:
    """``os.lstat``, with None for a missing path or a path under a non-directory."""
    try:
        return os.lstat(real)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise ProviderError(f"cannot read {real}: {exc.strerror}") from None


def missing_parent(ctx: Context, path: str) -> Unresolved | None:
    """An Unresolved naming the missing parent of ``path``, or None when the parent is there.

    Unresolved rather than failure: a directory resource ordered before this one may be about
    to create the parent, which the engine turns into ``pending`` in noop.
    """
    parent = os.path.dirname(os.path.normpath(path))
    st = lstat_or_none(real_path(ctx, parent))
    if st is None:
        return Unresolved(f"parent directory {parent} does not exist")
    if stat.S_ISLNK(st.st_mode):
        with contextlib.suppress(OSError):
            if stat.S_ISDIR(os.stat(real_path(ctx, parent)).st_mode):
                return None
    if not stat.S_ISDIR(st.st_mode):
        return Unresolved(f"parent directory {parent} does not exist ({kind_of(st.st_mode)} "
                          "in the way)")
    return None


def kind_of(mode: int) -> str:
    """A file type in words, for messages."""
    if stat.S_ISREG(mode):
        return "regular file"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def read_bytes(real: str, size: int = 0) -> bytes:
    """Read a whole regular file; ``size`` (from a stat) lets a small file take one read."""
    fd = os.open(real, _READ_FLAGS)
    try:
        data = os.read(fd, size + 1)
        if len(data) <= size:
            return data  # a short read of a regular file means end of file
        parts = [data]
        while chunk := os.read(fd, 1 << 20):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def fsync_directory(directory: str) -> None:
    """Make a rename in ``directory`` durable; some file systems refuse, which is harmless."""
    with contextlib.suppress(OSError):
        fd = os.open(directory or ".", os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def temp_name(real: str) -> str:
    """A fresh name next to ``real``, so the final rename stays on one file system."""
    directory, base = os.path.split(real)
    return os.path.join(directory, f".{base[:200]}.steward-{os.urandom(6).hex()}")


def atomic_write(
    real: str,
    data: bytes,
    *,
    mode: int,
    uid: int | None = None,
    gid: int | None = None,
) -> None:
    """Replace ``real`` with ``data`` so readers see the old file or the new one, never half.

    The temp file is created 0600 and gets its owner, group and mode before the rename, so the
    final name never points at content with the wrong permissions. On failure the temp file
    is removed and the original is untouched.
    """
    for _ in range(100):
        tmp = temp_name(real)
        try:
            fd = os.open(tmp, _CREATE_FLAGS, 0o600)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 100 collisions of 48 random bits
        raise ProviderError(f"cannot create a temporary file next to {real}")
    try:
        try:
            if uid is not None or gid is not None:
                st = os.fstat(fd)
                want_uid = st.st_uid if uid is None else uid
                want_gid = st.st_gid if gid is None else gid
                if (want_uid, want_gid) != (st.st_uid, st.st_gid):
                    os.fchown(fd, want_uid, want_gid)
            os.fchmod(fd, mode)  # after chown, which clears set-id bits
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, real)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_directory(os.path.dirname(real))


# --- owners and modes ----------------------------------------------------------------------


def _cache(ctx: Context, key: str) -> dict[Any, Any]:
    table: dict[Any, Any] | None = ctx.cache.get(key)
    if table is None:
        table = ctx.cache[key] = {}
    return table


def forget_ids(ctx: Context) -> None:
    """Drop cached user/group lookups (for providers that create or change accounts)."""
    for key in (_UID_BY_NAME, _GID_BY_NAME, _USER_BY_UID, _GROUP_BY_GID, _ROOT_USERS,
                _ROOT_GROUPS):
        ctx.cache.pop(key, None)


_ROOT_USERS = "steward.ids.root_passwd"
_ROOT_GROUPS = "steward.ids.root_group"


def _root_table(ctx: Context, key: str, name: str) -> dict[str, int] | None:
    """Name → id from ``<root>/etc/passwd`` or ``<root>/etc/group``; None when the run has no
    root or the root has no such file (the host's databases are used then)."""
    if ctx.root is None:
        return None
    if key not in ctx.cache:
        table: dict[str, int] | None = None
        try:
            with open(os.path.join(os.path.realpath(ctx.root), "etc", name), "rb") as handle:
                text = handle.read(1 << 22).decode("utf-8", "replace")
        except OSError:
            text = None
        if text is not None:
            table = {}
            for line in text.splitlines():
                fields = line.split(":")
                if len(fields) >= 3 and fields[0] and fields[2].isdigit():
                    table.setdefault(fields[0], int(fields[2]))
        ctx.cache[key] = table
    found: dict[str, int] | None = ctx.cache[key]
    return found


def _root_name(ctx: Context, key: str, name: str, number: int) -> str | None:
    table = _root_table(ctx, key, name)
    if table is None:
        return None
    return next((n for n, i in table.items() if i == number), str(number))


def resolve_uid(ctx: Context, owner: str | int) -> int:
    """A uid for a name or id; a missing user is Unresolved (a user resource may create it).

    Only successful lookups are cached: a user created later in the run must be found.
    """
    return _resolve_id(ctx, owner, "user", _UID_BY_NAME, _ROOT_USERS, "passwd",
                       lambda name: pwd.getpwnam(name).pw_uid)


def resolve_gid(ctx: Context, group: str | int) -> int:
    """A gid for a name or id; a missing group is Unresolved (a group resource may create it)."""
    return _resolve_id(ctx, group, "group", _GID_BY_NAME, _ROOT_GROUPS, "group",
                       lambda name: grp.getgrnam(name).gr_gid)


def _resolve_id(ctx: Context, name: str | int, what: str, cache_key: str, root_key: str,
                root_file: str, host: Callable[[str], int]) -> int:
    """An id from a number, the root's own file (under ``--root``) or the host's database."""
    if isinstance(name, int):
        return name
    table = _cache(ctx, cache_key)
    found: int | None = table.get(name)
    if found is None:
        if name.isdigit():
            found = int(name)
        else:
            rooted = _root_table(ctx, root_key, root_file)
            if rooted is not None:
                found = rooted.get(name)
                if found is None:
                    raise Unresolved(f"{what} {name!r} does not exist in "
                                     f"{ctx.root}/etc/{root_file} (--root)")
            else:
                try:
                    found = host(name)
                except KeyError:
                    raise Unresolved(f"{what} {name!r} does not exist") from None
        table[name] = found
    return found


def user_name(ctx: Context, uid: int) -> str:
    """The user's name for a report, or the number when no user has that id."""
    table = _cache(ctx, _USER_BY_UID)
    name: str | None = table.get(uid)
    if name is None:
        name = _root_name(ctx, _ROOT_USERS, "passwd", uid)
        if name is None:
            try:
                name = pwd.getpwuid(uid).pw_name
            except KeyError:
                name = str(uid)
        table[uid] = name
    return name


def group_name(ctx: Context, gid: int) -> str:
    """The group's name for a report, or the number when no group has that id."""
    table = _cache(ctx, _GROUP_BY_GID)
    name: str | None = table.get(gid)
    if name is None:
        name = _root_name(ctx, _ROOT_GROUPS, "group", gid)
        if name is None:
            try:
                name = grp.getgrgid(gid).gr_name
            except KeyError:
                name = str(gid)
        table[gid] = name
    return name


def parse_mode(mode: Any) -> int:
    """``"0644"``/``"644"`` to an int; the compiler validated the form, this guards the engine."""
    try:
        value = int(mode, 8)
    except (TypeError, ValueError):
        raise ProviderError(f"mode {mode!r} is not an octal mode like \"0644\"") from None
    if not 0 <= value <= 0o7777:
        raise ProviderError(f"mode {mode!r} is out of range")
    return value


def format_mode(mode: int) -> str:
    return f"{mode & 0o7777:04o}"


def ownership_changes(
    ctx: Context, params: dict[str, Any], st: os.stat_result | None, changes: list[Change]
) -> None:
    """Append owner, group and mode changes (in that order); ``st`` None means "to be created".

    Resolving the names first means a missing user or group is Unresolved even in noop.
    """
    owner = params.get("owner")
    if owner is not None:
        uid = resolve_uid(ctx, owner)
        if st is None:
            new = user_name(ctx, uid)
            changes.append(Change("owner", None, new, f"defined owner as {new!r}"))
        elif st.st_uid != uid:
            old, new = user_name(ctx, st.st_uid), user_name(ctx, uid)
            changes.append(Change("owner", old, new, f"changed owner {old!r} to {new!r}"))
    group = params.get("group")
    if group is not None:
        gid = resolve_gid(ctx, group)
        if st is None:
            new = group_name(ctx, gid)
            changes.append(Change("group", None, new, f"defined group as {new!r}"))
        elif st.st_gid != gid:
            old, new = group_name(ctx, st.st_gid), group_name(ctx, gid)
            changes.append(Change("group", old, new, f"changed group {old!r} to {new!r}"))
    mode = params.get("mode")
    if mode is not None:
        want = parse_mode(mode)
        if st is None:
            changes.append(Change("mode", None, format_mode(want),
                                  f"defined mode as '{format_mode(want)}'"))
        elif st.st_mode & 0o7777 != want:
            old, new = format_mode(st.st_mode), format_mode(want)
            changes.append(Change("mode", old, new, f"changed mode '{old}' to '{new}'"))


def apply_ownership(
    ctx: Context, real: str, params: dict[str, Any], properties: set[str] | dict[str, Change]
) -> None:
    """Carry out owner/group/mode changes on an existing path (not following a symlink).

    chown clears set-id bits, so the previous mode is restored when mode is not managed.
    """
    uid = resolve_uid(ctx, params["owner"]) if "owner" in properties else -1
    gid = resolve_gid(ctx, params["group"]) if "group" in properties else -1
    if uid != -1 or gid != -1:
        before = os.lstat(real).st_mode & 0o7777
        os.chown(real, uid, gid, follow_symlinks=False)
        if "mode" not in properties and os.lstat(real).st_mode & 0o7777 != before:
            os.chmod(real, before)
    if "mode" in properties:
        os.chmod(real, parse_mode(params["mode"]))


def redacted_desired(provider: Provider, desired: dict[str, Any]) -> dict[str, Any]:
    """Replace the desired value of each sensitive property by the redaction marker."""
    for name in provider.sensitive:
        if name in desired:
            desired[name] = REDACTED
    return desired


# --- content display ----------------------------------------------------------------------


def sha256_display(data: bytes) -> str:
    return "{sha256}" + hashlib.sha256(data).hexdigest()


def content_diff(path: str, old: bytes | None, new: bytes) -> str | None:
    """A unified diff with ``path`` in the headers; None for binary or non-UTF-8 content.

    Huge content gets a note instead of a diff, and a long diff is cut with a note, so one
    file cannot blow up a report.
    """
    old_data = old or b""
    fromfile = path if old is not None else "/dev/null"
    if len(old_data) > DIFF_MAX_BYTES or len(new) > DIFF_MAX_BYTES:
        size = max(len(old_data), len(new))
        return (f"--- {fromfile}\n+++ {path}\n"
                f"(diff omitted: {size} bytes is more than the {DIFF_MAX_BYTES} byte limit)\n")
    if b"\0" in old_data or b"\0" in new:
        return None
    try:
        old_text, new_text = old_data.decode("utf-8"), new.decode("utf-8")
    except UnicodeDecodeError:
        return None
    import difflib

    out: list[str] = []
    for line in difflib.unified_diff(
        old_text.splitlines(keepends=True), new_text.splitlines(keepends=True), fromfile, path
    ):
        if len(out) >= DIFF_MAX_LINES:
            out.append("(diff truncated)\n")
            break
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


def encode_content(content: Any) -> bytes:
    if type(content) is not str:
        raise ProviderError("content is not a string (an unresolved sensitive value?)")
    return content.encode()


class PathProvider(Provider):
    """Base for providers of one path: sync maps the path and turns OS errors into failures."""

    def sync(self, changes: list[Change]) -> None:
        path = self.params["path"]
        by_property = {c.property: c for c in changes}
        if not by_property:
            return
        try:
            self._sync(path, real_path(self.ctx, path), by_property)
        except OSError as exc:
            raise ProviderError(f"cannot update {path}: {exc.strerror or exc}") from None

    def _sync(self, path: str, real: str, by_property: dict[str, Change]) -> None:
        raise NotImplementedError
