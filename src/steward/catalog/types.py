"""The resource types Steward knows, declared once for the compiler, the engine and the docs.

The compiler validates parameters against these declarations (unknown parameter, wrong type,
value not allowed); the engine's providers implement them; ``docs/resource-types.md`` and the
JSON Schema are generated from them. Standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from steward.errors import describe_value

#: Parameter kinds and what each accepts.
KINDS = {
    "string": "a string",
    "integer": "an integer",
    "boolean": "true or false",
    "mode": "an octal file mode as a string, e.g. \"0644\"",
    "id": "a name or a numeric id",
    "strings": "a list of strings",
    "integers": "a list of integers",
    "map": "a mapping of strings to strings",
    "content": "a string (file content)",
}

_MODE = re.compile(r"^0?[0-7]{3,4}$")


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    kind: str
    doc: str
    default: Any = None
    allowed: tuple[str, ...] = ()
    #: Values outside ``allowed`` are accepted too (package ``ensure`` takes any version).
    open_allowed: bool = False
    required: bool = False
    namevar: bool = False

    def check(self, value: Any) -> str | None:
        """Return why ``value`` does not fit, or None when it does."""
        ok = _KIND_CHECKS[self.kind](value)
        if not ok:
            return f"expected {KINDS[self.kind]}, got {describe_value(value)}"
        if self.allowed and not self.open_allowed and value not in self.allowed:
            choices = ", ".join(self.allowed)
            return f"{value!r} is not one of: {choices}"
        return None


@dataclass(frozen=True, slots=True)
class ResourceType:
    name: str
    doc: str
    params: tuple[Param, ...]
    #: True when the resource acts on a path, so ``--root`` confines it.
    path_based: bool
    #: Properties the engine compares and reports, in the order it applies them.
    properties: tuple[str, ...]
    refreshable: bool = False
    by_name: dict[str, Param] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {p.name: p for p in self.params})

    @property
    def namevar(self) -> str:
        for param in self.params:
            if param.namevar:
                return param.name
        raise AssertionError(f"{self.name} declares no namevar")  # pragma: no cover


#: Parameters every resource accepts besides its own.
META_PARAMS = (
    Param("noop", "boolean",
          "Never change this resource; report what would change."),
)

#: Relationship metaparameters, resolved by the compiler into edges (never in the catalog).
RELATIONSHIP_PARAMS = ("require", "before", "notify", "subscribe")

_ENSURE_FILE = Param(
    "ensure", "string", "Whether the file exists.", "present", ("present", "absent")
)
_OWNER = Param("owner", "id", "Owning user (name or uid).")
_GROUP = Param("group", "id", "Owning group (name or gid).")
_MODE_P = Param("mode", "mode", "Permission bits, e.g. \"0644\".")

TYPES: dict[str, ResourceType] = {
    t.name: t
    for t in (
        ResourceType(
            "file",
            "A regular file: content, mode, ownership. Written atomically (temp file + rename); "
            "replaced content is backed up under the state directory.",
            (
                Param("path", "string", "Absolute path; defaults to the title.", namevar=True),
                _ENSURE_FILE,
                Param("content", "content", "Literal content. The compiler also fills it from "
                      "'template' or 'source'."),
                Param("template", "string", "Template under templates/, rendered at compile time."),
                Param("source", "string", "File under files/ in the repository, copied at compile "
                      "time."),
                _MODE_P,
                _OWNER,
                _GROUP,
                Param("backup", "boolean", "Keep a copy of replaced content.", True),
                Param("replace", "boolean", "Replace content of an existing file; false only "
                      "creates the file when it is missing.", True),
            ),
            path_based=True,
            properties=("ensure", "content", "owner", "group", "mode"),
        ),
        ResourceType(
            "directory",
            "A directory, optionally purging files the catalog does not manage.",
            (
                Param("path", "string", "Absolute path; defaults to the title.", namevar=True),
                Param("ensure", "string", "Whether the directory exists.", "present",
                      ("present", "absent")),
                _MODE_P,
                _OWNER,
                _GROUP,
                Param("purge", "boolean", "Remove entries (recursively) not managed by this "
                      "catalog.", False),
                Param("force", "boolean", "Allow removing a non-empty directory on absent.",
                      False),
            ),
            path_based=True,
            properties=("ensure", "owner", "group", "mode", "purge"),
        ),
        ResourceType(
            "symlink",
            "A symbolic link.",
            (
                Param("path", "string", "Absolute path of the link; defaults to the title.",
                      namevar=True),
                Param("target", "string", "What the link points to."),
                Param("ensure", "string", "Whether the link exists.", "present",
                      ("present", "absent")),
                Param("force", "boolean", "Replace a regular file or empty directory in the way.",
                      False),
            ),
            path_based=True,
            properties=("ensure", "target"),
        ),
        ResourceType(
            "line",
            "One line in a file: ensure it is present (replacing the line that matches 'match') "
            "or absent.",
            (
                Param("name", "string", "A name for this line; defaults to the title.",
                      namevar=True),
                Param("path", "string", "The file that holds the line.", required=True),
                Param("line", "string", "The exact line (no newline)."),
                Param("match", "string", "Regex; the first matching line is replaced by 'line' "
                      "(present) or every matching line removed (absent)."),
                Param("ensure", "string", "Whether the line is there.", "present",
                      ("present", "absent")),
                Param("after", "string", "Regex; a new line goes after the last matching line "
                      "instead of at the end."),
            ),
            path_based=True,
            properties=("ensure", "line"),
        ),
        ResourceType(
            "package",
            "A system package through the platform's manager (apt/dpkg, dnf/rpm, apk). Installed "
            "packages are read once per run.",
            (
                Param("name", "string", "Package name; defaults to the title.", namevar=True),
                Param("ensure", "string", "installed, latest, absent, purged, or a version.",
                      "installed", ("installed", "present", "latest", "absent", "purged"),
                      open_allowed=True),
                Param("provider", "string", "Package manager; auto-detected by default.", "auto",
                      ("auto", "apt", "dnf", "apk")),
            ),
            path_based=False,
            properties=("ensure",),
        ),
        ResourceType(
            "service",
            "A systemd service: running or stopped, enabled at boot or not; restarted on refresh.",
            (
                Param("name", "string", "Unit name (\".service\" may be omitted); defaults to the "
                      "title.", namevar=True),
                Param("ensure", "string", "running or stopped.", None, ("running", "stopped")),
                Param("enable", "boolean", "Start at boot."),
                Param("restart_command", "string", "Run instead of 'systemctl restart' on "
                      "refresh."),
            ),
            path_based=False,
            properties=("ensure", "enable"),
            refreshable=True,
        ),
        ResourceType(
            "user",
            "A local user account (useradd/usermod/userdel).",
            (
                Param("name", "string", "Login name; defaults to the title.", namevar=True),
                Param("ensure", "string", "Whether the user exists.", "present",
                      ("present", "absent")),
                Param("uid", "integer", "Numeric user id."),
                Param("gid", "id", "Primary group (name or gid)."),
                Param("groups", "strings", "Supplementary groups (exactly these)."),
                Param("home", "string", "Home directory."),
                Param("shell", "string", "Login shell."),
                Param("comment", "string", "GECOS field."),
                Param("password", "string", "Password hash; give it as a secret."),
                Param("system", "boolean", "Create as a system account.", False),
                Param("managehome", "boolean", "Create the home directory on creation, remove it "
                      "on removal.", False),
            ),
            path_based=False,
            properties=("ensure", "uid", "gid", "groups", "home", "shell", "comment", "password"),
        ),
        ResourceType(
            "group",
            "A local group (groupadd/groupmod/groupdel).",
            (
                Param("name", "string", "Group name; defaults to the title.", namevar=True),
                Param("ensure", "string", "Whether the group exists.", "present",
                      ("present", "absent")),
                Param("gid", "integer", "Numeric group id."),
                Param("system", "boolean", "Create as a system group.", False),
            ),
            path_based=False,
            properties=("ensure", "gid"),
        ),
        ResourceType(
            "exec",
            "A command, run only when its guards say so. In noop, guards run only when "
            "'noop_safe' is true; otherwise the run is reported as pending.",
            (
                Param("command", "string", "Command line (run by /bin/sh -c); defaults to the "
                      "title.", namevar=True),
                Param("creates", "string", "Skip when this path exists."),
                Param("onlyif", "string", "Run only when this command exits 0."),
                Param("unless", "string", "Skip when this command exits 0."),
                Param("refreshonly", "boolean", "Run only when notified.", False),
                Param("timeout", "integer", "Seconds before the command is killed.", 300),
                Param("environment", "map", "Extra environment variables."),
                Param("cwd", "string", "Working directory."),
                Param("user", "string", "Run as this user (needs root)."),
                Param("returns", "integers", "Exit codes that mean success.", [0]),
                Param("noop_safe", "boolean", "The guards have no side effects, so noop may run "
                      "them to predict exactly.", False),
            ),
            path_based=False,
            properties=("executed",),
            refreshable=True,
        ),
        ResourceType(
            "cron",
            "An entry in a user's crontab, marked so that Steward finds it again.",
            (
                Param("name", "string", "Entry name; defaults to the title.", namevar=True),
                Param("command", "string", "The command."),
                Param("ensure", "string", "Whether the entry exists.", "present",
                      ("present", "absent")),
                Param("user", "string", "Whose crontab.", "root"),
                Param("minute", "string", "Minute field.", "*"),
                Param("hour", "string", "Hour field.", "*"),
                Param("monthday", "string", "Day-of-month field.", "*"),
                Param("month", "string", "Month field.", "*"),
                Param("weekday", "string", "Day-of-week field.", "*"),
                Param("special", "string", "@reboot, @daily, ... instead of the time fields.",
                      None, ("@reboot", "@yearly", "@annually", "@monthly", "@weekly", "@daily",
                             "@midnight", "@hourly")),
                Param("environment", "strings", "NAME=value lines placed before the entry."),
            ),
            path_based=False,
            properties=("ensure", "schedule", "command", "environment"),
        ),
        ResourceType(
            "host",
            "An entry in /etc/hosts (or 'target').",
            (
                Param("name", "string", "Canonical host name; defaults to the title.",
                      namevar=True),
                Param("ip", "string", "IPv4 or IPv6 address."),
                Param("host_aliases", "strings", "Other names for the host.", []),
                Param("comment", "string", "Trailing comment."),
                Param("ensure", "string", "Whether the entry exists.", "present",
                      ("present", "absent")),
                Param("target", "string", "The hosts file.", "/etc/hosts"),
            ),
            path_based=True,
            properties=("ensure", "ip", "host_aliases", "comment"),
        ),
    )
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_sensitive(value: Any) -> bool:
    return isinstance(value, dict) and list(value) == ["__sensitive__"]


_KIND_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str) or _is_sensitive(v),
    "content": lambda v: isinstance(v, str) or _is_sensitive(v),
    "integer": _is_int,
    "boolean": lambda v: isinstance(v, bool),
    "mode": lambda v: isinstance(v, str) and bool(_MODE.match(v)),
    "id": lambda v: isinstance(v, str) or _is_int(v),
    "strings": lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
    "integers": lambda v: isinstance(v, list) and all(_is_int(i) for i in v),
    "map": lambda v: isinstance(v, dict) and all(
        isinstance(k, str) and isinstance(i, str) for k, i in v.items()
    ),
}
