"""Properties of commits from edits, over generated edit sets (real git, one repository)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steward.gitrepo import DesiredStateRepo
from tests.gitrepo.conftest import ALICE, ENVIRONMENTS, write_source

#: Paths that never clash as file and directory; with a space and non-ASCII, which git
#: quotes in diffs.
PATHS = ["a.txt", "d/b.txt", "d/e/c.yaml", "x y.txt", "ünï/cödé.txt", "data/common.yaml"]
CONTENT = st.one_of(
    st.text(max_size=200),
    # Binary (git sees the NUL) round-trips through --binary patches.
    st.binary(max_size=64).map(lambda raw: b"\0" + raw),
)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> DesiredStateRepo:
    tmp = tmp_path_factory.mktemp("props")
    return DesiredStateRepo.create(tmp / "d.git", write_source(tmp / "src"), ENVIRONMENTS, ALICE)


def _bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


@settings(max_examples=30, deadline=None)
@given(edits=st.dictionaries(st.sampled_from(PATHS), st.one_of(CONTENT, st.none()), min_size=1))
def test_a_commit_holds_exactly_its_edits_and_its_diff_replays(
    shared: DesiredStateRepo, edits: dict[str, str | bytes | None]
) -> None:
    base = shared.tip("production")
    before = {path: shared.read_file(base, path) for path in shared.list_files(base)}
    edits = {p: c for p, c in edits.items() if c is not None or p in before}
    expected = dict(before)
    for path, content in edits.items():
        if content is None:
            expected.pop(path)
        else:
            expected[path] = _bytes(content)
    changed = sorted(p for p in set(before) | set(expected) if before.get(p) != expected.get(p))
    if not changed:
        return
    head = shared.commit(parent=base, author=ALICE, message="generated", edits=edits)
    assert shared.tip("production") == base
    assert shared.list_files(head) == sorted(expected)
    for path, content in expected.items():
        assert shared.read_file(head, path) == content
    assert shared.changed_files(base, head) == changed
    # The diff, applied as a patch to the base, gives the same tree.
    replayed = shared.commit(parent=base, author=ALICE, message="replayed",
                             patch=shared.diff(base, head))
    assert shared.changed_files(head, replayed) == []
    checkout: Path = shared.checkout(head)
    for path, content in expected.items():
        assert (checkout / path).read_bytes() == content
