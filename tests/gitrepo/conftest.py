"""A small desired-state source tree and a bare repository made from it, with real git."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from steward.gitrepo import Author, DesiredStateRepo

ENVIRONMENTS = ("development", "staging", "production")
ALICE = Author("Alice Planner", "alice@example.com")
BOB = Author("Bob Builder", "bob@example.com")


def write_source(root: Path) -> Path:
    """A valid repository: one profile, one role, data, a template and a script."""
    (root / "profiles").mkdir(parents=True)
    (root / "roles").mkdir()
    (root / "data").mkdir()
    (root / "templates").mkdir()
    (root / "files").mkdir()
    (root / "steward.yaml").write_text("default_environment: production\n")
    (root / "classification.yaml").write_text(
        "rules:\n  - name: all\n    match: {node: \"*\"}\n    role: base\n"
        "  - name: staging nodes\n    match: {node: \"stg*\"}\n    environment: staging\n"
    )
    (root / "roles" / "base.yaml").write_text("profiles:\n  motd: {}\n")
    (root / "profiles" / "motd.yaml").write_text(
        "parameters:\n  owner: {type: string, default: nobody}\n"
        "resources:\n  file[/etc/motd]:\n    template: motd.j2\n    mode: \"0644\"\n"
    )
    (root / "templates" / "motd.j2").write_text("{{ node }} run by {{ params.owner }}\n")
    (root / "data" / "common.yaml").write_text("motd::owner: ops\n")
    script = root / "files" / "check.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    return root


def plain_git(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """git as a person runs it (isolated from this machine's configuration)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0",
               GIT_AUTHOR_NAME="Hannah Human", GIT_AUTHOR_EMAIL="hannah@example.com",
               GIT_COMMITTER_NAME="Hannah Human", GIT_COMMITTER_EMAIL="hannah@example.com")
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          check=check)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write_source(tmp_path / "source")


@pytest.fixture
def repo(tmp_path: Path, source: Path) -> DesiredStateRepo:
    return DesiredStateRepo.create(tmp_path / "desired.git", source, ENVIRONMENTS, ALICE)
