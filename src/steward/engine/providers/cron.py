"""Entries in a user's crontab, found again by a marker comment.

A managed entry is three parts, kept together::

    # Steward: <name>
    NAME=value          (the entry's environment lines, if any)
    <schedule> <command>

Only these blocks are ever rewritten; every other line of the crontab (comments, blank lines,
other people's entries) is written back exactly as read. Each user's crontab is read once
per run (``crontab -l -u USER``) and written with ``crontab -u USER -``, which validates it
and lets cron notice the change.

Caveat of the crontab format itself: environment lines apply to every entry below them, not
only to the one they are declared for.
"""

from __future__ import annotations

import pwd
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from steward.engine.context import Context
from steward.engine.provider import Change, Provider, ProviderError, Unresolved

MARKER = "# Steward: "
_ENV_LINE = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_]*\s*=")
_CACHE = "cron:crontabs"


@dataclass(frozen=True, slots=True)
class Entry:
    """A managed block at ``lines[start:end]``."""

    start: int
    end: int
    environment: list[str]
    schedule: str | None
    command: str | None


def split_entry(line: str) -> tuple[str, str]:
    """A crontab line's schedule (five fields or @special, single-spaced) and command."""
    text = line.strip()
    if text.startswith("@"):
        parts = text.split(None, 1)
        return parts[0], parts[1] if len(parts) > 1 else ""
    parts = text.split(None, 5)
    return " ".join(parts[:5]), parts[5] if len(parts) > 5 else ""


def find_entries(lines: Sequence[str], name: str) -> list[Entry]:
    """Every block marked for ``name`` (normally one)."""
    marker = (MARKER + name).rstrip()
    found: list[Entry] = []
    for i, line in enumerate(lines):
        if line.rstrip() != marker:
            continue
        j = i + 1
        environment: list[str] = []
        while j < len(lines) and _ENV_LINE.match(lines[j]):
            environment.append(lines[j].strip())
            j += 1
        if j < len(lines) and lines[j].strip() and not lines[j].lstrip().startswith("#"):
            schedule, command = split_entry(lines[j])
            found.append(Entry(i, j + 1, environment, schedule, command))
        else:
            found.append(Entry(i, j, environment, None, None))
    return found


def read_crontab(ctx: Context, user: str) -> list[str]:
    """The user's crontab lines, read once per run."""
    cache: dict[str, list[str]] = ctx.cache.setdefault(_CACHE, {})
    if user in cache:
        return cache[user]
    try:
        pwd.getpwnam(user)
    except KeyError:
        raise Unresolved(f"user {user} not found (for its crontab)") from None
    result = ctx.runner.run(["crontab", "-l", "-u", user])
    if result.ok:
        lines = result.stdout.splitlines()
    elif "no crontab for" in result.stderr:
        lines = []
    else:
        raise ProviderError(f"reading the crontab of {user}: {result.describe()}")
    cache[user] = lines
    return lines


def write_crontab(ctx: Context, user: str, lines: list[str]) -> None:
    text = "".join(f"{line}\n" for line in lines)
    result = ctx.runner.run(["crontab", "-u", user, "-"], input=text)
    if not result.ok:
        raise ProviderError(f"writing the crontab of {user}: {result.describe()}")
    ctx.cache.setdefault(_CACHE, {})[user] = list(lines)


class CronProvider(Provider):
    type_name = "cron"

    @classmethod
    def prefetch(cls, ctx: Context, providers: Sequence[Provider]) -> None:
        for user in sorted({str(p.params.get("user") or "root") for p in providers}):
            try:
                read_crontab(ctx, user)
            except Unresolved:
                continue  # the user may be created by this run; each check says so

    @property
    def user(self) -> str:
        return str(self.params.get("user") or "root")

    def schedule(self) -> str:
        special = self.params.get("special")
        if special:
            return str(special)
        return " ".join(str(self.params.get(f) or "*")
                        for f in ("minute", "hour", "monthday", "month", "weekday"))

    def environment(self) -> list[str]:
        return [str(line).strip() for line in self.params.get("environment") or []]

    def desired(self) -> dict[str, Any]:
        values = super().desired()
        if self.params.get("ensure") != "absent":
            values["schedule"] = self.schedule()
        return values

    def _validate(self) -> None:
        for key in ("name", "command", "special", "minute", "hour", "monthday", "month",
                    "weekday"):
            value = self.params.get(key)
            if value is not None and ("\n" in str(value) or "\r" in str(value)):
                raise ProviderError(f"cron {self.name}: {key} must be a single line")
        if self.params.get("ensure") != "absent" and not self.params.get("command"):
            raise ProviderError(f"cron {self.name}: 'command' is required when ensure is "
                                "present")
        for line in self.environment():
            if not _ENV_LINE.match(line):
                raise ProviderError(f"cron {self.name}: environment line {line!r} is not "
                                    "NAME=value")

    def block(self) -> list[str]:
        return [MARKER + self.name, *self.environment(),
                f"{self.schedule()} {str(self.params['command']).strip()}"]

    def check(self) -> list[Change]:
        self._validate()
        lines = read_crontab(self.ctx, self.user)
        entries = find_entries(lines, self.name)
        where = f"cron entry {self.name!r} of {self.user}"
        if self.params.get("ensure") == "absent":
            if not entries:
                return []
            return [Change("ensure", "present", "absent", f"removed {where}")]
        if not entries:
            return [Change("ensure", "absent", "present", f"created {where}")]
        entry = entries[0]
        changes: list[Change] = []
        schedule = self.schedule()
        if entry.schedule != schedule:
            changes.append(Change("schedule", entry.schedule, schedule,
                                  f"changed schedule of {where} from {entry.schedule!r} to "
                                  f"{schedule!r}"))
        command = str(self.params["command"]).strip()
        if entry.command != command:
            changes.append(Change("command", entry.command, command,
                                  f"changed command of {where}"))
        environment = self.environment()
        if entry.environment != environment and self.params.get("environment") is not None:
            changes.append(Change("environment", entry.environment, environment,
                                  f"changed environment of {where}"))
        if len(entries) > 1 and not changes:
            changes.append(Change("ensure", "duplicated", "present",
                                  f"removed {len(entries) - 1} duplicate(s) of {where}"))
        return changes

    def sync(self, changes: list[Change]) -> None:
        if not changes:
            return
        lines = list(read_crontab(self.ctx, self.user))
        entries = find_entries(lines, self.name)
        replacement = [] if self.params.get("ensure") == "absent" else self.block()
        if entries and self.params.get("environment") is None and replacement:
            # Environment not managed: keep the lines that are there.
            replacement = [replacement[0], *entries[0].environment, replacement[-1]]
        if not entries:
            if lines and lines[-1].strip():
                lines.append("")
            lines.extend(replacement)
        else:
            first = entries[0]
            for entry in reversed(entries[1:]):
                del lines[entry.start:entry.end]
            lines[first.start:first.end] = replacement
        write_crontab(self.ctx, self.user, lines)
