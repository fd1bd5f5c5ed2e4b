"""Running git: a scrubbed environment, and one bare repository's command line.

Every command runs in the same environment (no system or user configuration, no inherited
``GIT_*`` variables, C locale, UTC), so behaviour does not depend on who runs the server or
where.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from steward.gitrepo.errors import GitError, UnknownRefError


def git_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment every git command runs in: nothing from the caller's git setup."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GIT_") and k not in ("EMAIL", "TZ", "LANGUAGE")}
    env.update({
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ATTR_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_LITERAL_PATHSPECS": "1",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_OPTIONAL_LOCKS": "0",
        "LC_ALL": "C",
        "TZ": "UTC",
    })
    if extra:
        env.update(extra)
    return env


def run_git(args: Sequence[str], *, cwd: Path, input: bytes | None = None,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """``git ARGS`` in :func:`git_environment` (plus ``env``); the caller checks the status."""
    try:
        return subprocess.run(
            ["git", *args], input=input, capture_output=True, cwd=cwd,
            env=git_environment(env), check=False,
        )
    except FileNotFoundError:
        raise GitError("git is not installed (or not on PATH); the desired-state "
                       "repository needs it") from None


def failure(proc: subprocess.CompletedProcess[bytes]) -> str:
    """git's complaint on one line, without its ``error:``/``fatal:`` prefixes."""
    lines = [line.strip() for line in proc.stderr.decode("utf-8", "replace").splitlines()]
    lines = [line.removeprefix("error: ").removeprefix("fatal: ") for line in lines if line]
    return "; ".join(lines) or f"exit status {proc.returncode}"


class GitDir:
    """git commands against one bare repository (``--git-dir``), run from inside it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def raw(self, *args: str, input: bytes | None = None,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run ``git ARGS``; the caller judges the exit status."""
        return run_git(["--git-dir", str(self.path), *args], cwd=self.path, input=input,
                       env=env)

    def run(self, *args: str, input: bytes | None = None,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run ``git ARGS``; :class:`GitError` unless it succeeds."""
        proc = self.raw(*args, input=input, env=env)
        if proc.returncode != 0:
            raise GitError(f"git {args[0]} failed in {self.path}: {failure(proc)}")
        return proc

    def resolve(self, ref: str) -> str:
        """The full sha of the commit ``ref`` names (a branch, sha or abbreviation)."""
        if (not isinstance(ref, str) or not ref or ref.startswith("-")
                or any(c in ref for c in "\0\n\r")):
            raise UnknownRefError(str(ref))
        proc = self.raw("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        if proc.returncode != 0:
            raise UnknownRefError(ref)
        return proc.stdout.decode().strip()
