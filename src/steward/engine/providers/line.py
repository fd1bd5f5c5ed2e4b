"""The ``line`` provider: one line in a file someone else owns (like Puppet's ``file_line``).

Present: the exact line must be there and every line matching ``match`` must be that line.
Otherwise the first matching line that differs is replaced (or, when the exact line already
exists, removed so the line is not duplicated), other differing matches are removed, and with
no match at all the line is added after the last line matching ``after``, or at the end.
Absent: every line equal to ``line`` or matching ``match`` is removed.

Lines are split on "\\n" only and bytes that are not UTF-8 pass through unchanged, so the
rest of the file is written back exactly as it was.
"""

from __future__ import annotations

import os
import re
import stat
from typing import Any

from steward.catalog.sensitive import REDACTED
from steward.engine.provider import Change, Provider, ProviderError, Unresolved
from steward.engine.providers.pathutil import (
    atomic_write,
    kind_of,
    lstat_or_none,
    read_bytes,
    real_path,
    redacted_desired,
)


class _Text:
    """A file as lines without their "\\n", and whether the last line had one."""

    __slots__ = ("lines", "trailing_newline")

    def __init__(self, lines: list[str], trailing_newline: bool) -> None:
        self.lines = lines
        self.trailing_newline = trailing_newline

    @classmethod
    def parse(cls, data: bytes) -> _Text:
        text = data.decode("utf-8", "surrogateescape")
        if not text:
            return cls([], True)
        if text.endswith("\n"):
            return cls(text[:-1].split("\n"), True)
        return cls(text.split("\n"), False)

    def dump(self) -> bytes:
        if not self.lines:
            return b""
        text = "\n".join(self.lines) + ("\n" if self.trailing_newline else "")
        return text.encode("utf-8", "surrogateescape")


class _Plan:
    """The change to report and the file it leads to."""

    __slots__ = ("change", "result")

    def __init__(self, change: Change, result: _Text) -> None:
        self.change = change
        self.result = result


class LineProvider(Provider):
    """A line in a file: ensure, line."""

    type_name = "line"

    def check(self) -> list[Change]:
        real, st = self._locate()
        plan = self._plan(_Text.parse(self._read(real, st)))
        return [] if plan is None else [plan.change]

    def sync(self, changes: list[Change]) -> None:
        if not changes:
            return
        real, st = self._locate()
        plan = self._plan(_Text.parse(self._read(real, st)))
        if plan is None:
            return
        try:
            atomic_write(real, plan.result.dump(), mode=st.st_mode & 0o7777, uid=st.st_uid,
                         gid=st.st_gid)
        except OSError as exc:
            raise ProviderError(f"cannot update {self.params['path']}: "
                                f"{exc.strerror or exc}") from None

    def desired(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ensure": self.params["ensure"]}
        if self.params.get("line") is not None:
            out["line"] = self.params["line"]
        return redacted_desired(self, out)

    # --- reading ---------------------------------------------------------------------------

    def _locate(self) -> tuple[str, os.stat_result]:
        """The file to edit (a symlink is followed, so the link itself stays) and its stat."""
        path = self.params["path"]
        real = real_path(self.ctx, path)
        st = lstat_or_none(real)
        if st is None:
            raise Unresolved(f"file {path} does not exist")
        if stat.S_ISLNK(st.st_mode):
            resolved = os.path.realpath(real)
            root = self.ctx.root
            if root is not None and os.path.commonpath(
                [resolved, os.path.realpath(root)]
            ) != os.path.realpath(root):
                raise ProviderError(f"{path} is a symlink that leads outside the root directory")
            real = resolved
            st = lstat_or_none(real)
            if st is None:
                raise Unresolved(f"file {path} does not exist (dangling symlink)")
        if not stat.S_ISREG(st.st_mode):
            raise ProviderError(f"{path} is a {kind_of(st.st_mode)}, not a regular file")
        return real, st

    def _read(self, real: str, st: os.stat_result) -> bytes:
        try:
            return read_bytes(real, st.st_size)
        except OSError as exc:
            raise ProviderError(f"cannot read {self.params['path']}: {exc.strerror}") from None

    def _regex(self, name: str) -> re.Pattern[str] | None:
        pattern = self.params.get(name)
        if pattern is None:
            return None
        try:
            return re.compile(pattern)
        except re.error as exc:
            shown = "" if name in self.sensitive else f" {pattern!r}"
            raise ProviderError(f"'{name}' is not a valid regex{shown}: {exc}") from None

    # --- deciding --------------------------------------------------------------------------

    def _plan(self, text: _Text) -> _Plan | None:
        """What to change in ``text``, or None when it is in sync; same code for check and sync."""
        p = self.params
        line = p.get("line")
        if line is not None and (not isinstance(line, str) or "\n" in line):
            raise ProviderError("'line' must be one line of text without a newline")
        match = self._regex("match")
        if p["ensure"] == "absent":
            return self._plan_absent(text, line, match)
        if line is None:
            raise ProviderError("'line' is required when ensure is present")
        lines = text.lines
        differing = ([i for i, have in enumerate(lines) if match.search(have) and have != line]
                     if match is not None else [])
        if not differing:
            if line in lines:
                return None
            return self._plan_add(text, line)

        first = differing[0]
        old_line = lines[first]
        drop = set(differing)
        exact = line in lines
        result: list[str] = []
        for index, have in enumerate(lines):
            if index == first and not exact:
                result.append(line)
            elif index not in drop:
                result.append(have)
        if exact:
            count = len(differing)
            message = (f"removed {count} conflicting line{'s' if count > 1 else ''} matching "
                       f"'match' ({self._show(line)} is already present)")
        else:
            message = f"replaced line {self._show(old_line)} with {self._show(line)}"
            if len(differing) > 1:
                extra = len(differing) - 1
                message += f" and removed {extra} other matching line{'s' if extra > 1 else ''}"
        change = Change("line", self._display(old_line), self._display(line), message)
        return _Plan(change, _Text(result, text.trailing_newline))

    def _plan_add(self, text: _Text, line: str) -> _Plan:
        after = self._regex("after")
        lines = text.lines
        position = len(lines)
        if after is not None:
            for index in range(len(lines) - 1, -1, -1):
                if after.search(lines[index]):
                    position = index + 1
                    break
        at_end = position == len(lines)
        result = [*lines[:position], line, *lines[position:]]
        # A line added at the end ends with a newline, fixing a file that lacked one.
        trailing = True if at_end else text.trailing_newline
        where = "at the end" if at_end else f"after line {position}"
        change = Change("ensure", None, self._display(line),
                        f"added {self._show(line)} {where} of {self.params['path']}")
        return _Plan(change, _Text(result, trailing))

    def _plan_absent(
        self, text: _Text, line: str | None, match: re.Pattern[str] | None
    ) -> _Plan | None:
        if line is None and match is None:
            raise ProviderError("ensure absent needs 'line' or 'match'")
        removed: list[str] = []
        kept: list[str] = []
        for have in text.lines:
            if have == line or (match is not None and match.search(have)):
                removed.append(have)
            else:
                kept.append(have)
        if not removed:
            return None
        count = len(removed)
        old = REDACTED if self._secret() else "\n".join(removed)
        message = f"removed {count} line{'s' if count > 1 else ''} from {self.params['path']}"
        return _Plan(Change("ensure", old, None, message), _Text(kept, text.trailing_newline))

    # --- display ---------------------------------------------------------------------------

    def _secret(self) -> bool:
        """A sensitive line or match hides every line shown (the old one likely holds a secret)."""
        return "line" in self.sensitive or "match" in self.sensitive

    def _display(self, value: str) -> str:
        return REDACTED if self._secret() else value

    def _show(self, value: str) -> str:
        return "a sensitive line" if self._secret() else repr(value)
