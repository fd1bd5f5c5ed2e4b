"""Helpers: write a small repository from a dict of files, compile it, load the examples."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from steward.compiler import CompileResult, compile_catalog
from steward.language import Repository, load_repository
from steward.secrets import SecretStore, init_store

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DEBIAN = {
    "os": {"family": "Debian", "name": "Debian", "release": {"major": "12"}},
    "fqdn": "web1.example.com",
    "processors": {"count": 2},
}

WriteRepo = Callable[..., Path]
Compile = Callable[..., CompileResult]


def write_files(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


@pytest.fixture
def write_repo(tmp_path: Path) -> WriteRepo:
    """``write_repo({"profiles/x.yaml": "..."})`` → the repository directory (dedented)."""
    counter = iter(range(1000))

    def write(files: dict[str, str]) -> Path:
        return write_files(tmp_path / f"repo{next(counter)}", files)

    return write


@pytest.fixture
def build(write_repo: WriteRepo) -> Compile:
    """Write a repository and compile one node: ``build(files, node="web1", facts=...)``."""

    def run(
        files: dict[str, str],
        node: str = "web1",
        facts: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> CompileResult:
        repo = load_repository(write_repo(files))
        return compile_catalog(repo, node, DEBIAN if facts is None else facts, **kwargs)

    return run


def one_profile(resources: str, parameters: str = "{}", role_params: str = "{}") -> dict[str, str]:
    """A repository where every node gets role ``r`` whose profile ``p`` holds ``resources``."""

    def block(text: str) -> str:
        return textwrap.indent(textwrap.dedent(text).strip("\n"), "  ")

    return {
        "classification.yaml": "rules:\n  - name: all\n    role: r\n",
        "roles/r.yaml": f"profiles:\n  p: {role_params}\n",
        "profiles/p.yaml": f"parameters:\n{block(parameters)}\nresources:\n{block(resources)}\n",
    }


@pytest.fixture(scope="session")
def example_repo() -> Repository:
    return load_repository(EXAMPLES / "repo")


def example_facts(node: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / "facts" / f"{node}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> SecretStore:
    values = json.loads((EXAMPLES / "secrets" / "demo-secrets.json").read_text(encoding="utf-8"))
    store, _key = init_store(tmp_path_factory.mktemp("secrets"), values)
    return store
