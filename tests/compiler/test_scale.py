"""A realistic large node (about 300 resources) compiles correctly and deterministically."""

from __future__ import annotations

from pathlib import Path

from steward.compiler import compile_catalog
from steward.language import load_repository

from .conftest import example_facts
from .synthetic import large_repo
from .test_catalog import check_well_formed


def test_three_hundred_resources(tmp_path: Path) -> None:
    repo = load_repository(large_repo(tmp_path, resources=300))
    facts = example_facts("web1")
    first = compile_catalog(repo, "web1", facts).catalog
    check_well_formed(first)
    assert 280 <= len(first.resources) <= 320
    assert len(first.edges) > len(first.resources)
    # Compiling again from the same loaded repository gives the same bytes: nothing leaks
    # from one compilation into the next.
    assert compile_catalog(repo, "web1", facts).catalog.dumps() == first.dumps()
    other = compile_catalog(repo, "web2", example_facts("web2")).catalog
    assert compile_catalog(repo, "web1", facts).catalog.dumps() == first.dumps()
    assert other.hash != first.hash
