"""The desired-state repository, against real git: creation, commits, CAS, merges, reads."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from steward.gitrepo import (
    COMMITTER_EMAIL,
    COMMITTER_NAME,
    Author,
    DesiredStateRepo,
    EditError,
    GitError,
    MergeConflictError,
    PatchError,
    StaleBaseError,
    UnknownRefError,
)
from tests.gitrepo.conftest import ALICE, BOB, ENVIRONMENTS, plain_git

# -- creation -------------------------------------------------------------------------------


def test_create_puts_the_source_on_every_environment_branch(
    repo: DesiredStateRepo, source: Path
) -> None:
    refs = repo.refs()
    assert refs.default == "production"
    assert repo.default_branch() == "production"
    assert sorted(refs.branches) == sorted(ENVIRONMENTS)
    assert len(set(refs.branches.values())) == 1
    commit = refs.branches["production"]
    expected = sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
    assert repo.list_files(commit) == expected
    for path in expected:
        assert repo.read_file(commit, path) == (source / path).read_bytes()
    # The executable bit is kept; a read-only checkout reproduces it.
    checkout = repo.checkout(commit)
    assert os.stat(checkout / "files/check.sh").st_mode & 0o111
    assert not os.stat(checkout / "data/common.yaml").st_mode & 0o111
    (entry,) = repo.log("production")
    assert entry["commit"] == commit
    assert entry["parents"] == ""
    assert (entry["author_name"], entry["author_email"]) == (ALICE.name, ALICE.email)
    assert (entry["committer_name"], entry["committer_email"]) == (COMMITTER_NAME,
                                                                   COMMITTER_EMAIL)
    assert entry["subject"] == "Initial desired state"
    assert entry["author_date"].endswith("+00:00")


def test_create_refuses_bad_input(tmp_path: Path, source: Path) -> None:
    with pytest.raises(GitError, match="at least one environment"):
        DesiredStateRepo.create(tmp_path / "a.git", source, [], ALICE)
    with pytest.raises(GitError, match="invalid environment name 'bad name'"):
        DesiredStateRepo.create(tmp_path / "a.git", source, ["bad name"], ALICE)
    with pytest.raises(GitError, match="'staging' is listed twice"):
        DesiredStateRepo.create(tmp_path / "a.git", source, ["staging", "staging"], ALICE)
    with pytest.raises(GitError, match=r"default environment 'production' is not one of the "
                                       r"environments \(dev, test\)"):
        DesiredStateRepo.create(tmp_path / "a.git", source, ["dev", "test"], ALICE)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(GitError, match="already exists and is not empty"):
        DesiredStateRepo.create(tmp_path / "full", source, ENVIRONMENTS, ALICE)
    (source / "link.yaml").symlink_to(source / "steward.yaml")
    with pytest.raises(GitError, match=r"'link\.yaml' is a symlink"):
        DesiredStateRepo.create(tmp_path / "b.git", source, ENVIRONMENTS, ALICE)
    assert not (tmp_path / "a.git").exists()
    with pytest.raises(GitError, match="is not a bare git repository"):
        DesiredStateRepo(source)


def test_create_with_an_explicit_default_and_a_git_checkout_as_source(
    tmp_path: Path, source: Path
) -> None:
    plain_git("init", "-q", cwd=source)
    repo = DesiredStateRepo.create(tmp_path / "d.git", source, ["qa", "live"], BOB,
                                   default="qa", message="Import")
    assert repo.refs().default == "qa"
    files = repo.list_files("qa")
    assert "steward.yaml" in files
    assert not any(path.startswith(".git/") for path in files)
    assert repo.log("live")[0]["message"] == "Import"


def test_author_is_validated() -> None:
    with pytest.raises(GitError, match="author name must be a non-empty string"):
        Author("  ", "x@example.com")
    with pytest.raises(GitError, match="may not contain"):
        Author("Eve <evil@example.com>", "x@example.com")


# -- refs -----------------------------------------------------------------------------------


def test_resolve_names_the_unknown_ref(repo: DesiredStateRepo) -> None:
    tip = repo.tip("production")
    assert repo.resolve("production") == tip
    assert repo.resolve(tip[:10]) == tip
    assert repo.resolve(tip) == tip
    for bad in ("nope", "-rf", "", "production\nx", "0" * 40):
        with pytest.raises(UnknownRefError) as caught:
            repo.resolve(bad)
        assert repr(bad) in str(caught.value)
    with pytest.raises(UnknownRefError, match="no branch 'qa'"):
        repo.tip("qa")
    tree = subprocess.run(["git", "--git-dir", str(repo.path), "rev-parse", f"{tip}^{{tree}}"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with pytest.raises(UnknownRefError):
        repo.resolve(tree)  # a tree is not a commit


def test_set_branch_is_a_compare_and_swap(repo: DesiredStateRepo) -> None:
    base = repo.tip("staging")
    one = repo.commit(parent=base, author=ALICE, message="one", edits={"a.txt": "1"})
    two = repo.commit(parent=base, author=BOB, message="two", edits={"b.txt": "2"})
    repo.set_branch("staging", one, expected=base)
    with pytest.raises(StaleBaseError) as stale:
        repo.set_branch("staging", two, expected=base)
    assert stale.value.actual == one
    assert f"branch 'staging' moved: expected it at {base[:12]}, but it is now at " \
           f"{one[:12]}" in str(stale.value)
    assert repo.tip("staging") == one
    repo.set_branch("changes/chg-1", two, expected=None)
    with pytest.raises(StaleBaseError, match="expected it to be absent"):
        repo.set_branch("changes/chg-1", one, expected=None)
    with pytest.raises(GitError, match="invalid branch name"):
        repo.set_branch("../x", one, expected=None)
    with pytest.raises(UnknownRefError):
        repo.set_branch("other", "nope", expected=None)
    repo.delete_branch("changes/chg-1", expected=two)
    assert "changes/chg-1" not in repo.branches()
    with pytest.raises(GitError, match="refusing to delete 'production'"):
        repo.delete_branch("production")
    with pytest.raises(UnknownRefError):
        repo.delete_branch("changes/chg-1")


def test_concurrent_writers_exactly_one_wins(repo: DesiredStateRepo) -> None:
    base = repo.tip("development")
    commits = [repo.commit(parent=base, author=ALICE, message=f"c{i}", edits={"n.txt": str(i)})
               for i in range(8)]
    outcomes: list[str] = []
    barrier = threading.Barrier(len(commits))

    def race(commit: str) -> None:
        barrier.wait()
        try:
            repo.set_branch("development", commit, expected=base)
            outcomes.append("won")
        except StaleBaseError:
            outcomes.append("stale")

    threads = [threading.Thread(target=race, args=(c,)) for c in commits]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["stale"] * 7 + ["won"]
    assert repo.tip("development") in commits


# -- commits --------------------------------------------------------------------------------


def test_commit_from_edits_never_moves_a_branch(repo: DesiredStateRepo) -> None:
    base = repo.tip("production")
    head = repo.commit(parent="production", author=BOB, message="Raise workers\n\nWhy: load.",
                       edits={"data/common.yaml": "motd::owner: web-team\n",
                              "data/nodes/web1.yaml": b"x: 1\n",
                              "templates/motd.j2": None,
                              "files/check.sh": "#!/bin/sh\nexit 1\n"})
    assert repo.tip("production") == base
    assert repo.changed_files(base, head) == ["data/common.yaml", "data/nodes/web1.yaml",
                                              "files/check.sh", "templates/motd.j2"]
    assert repo.read_file(head, "data/common.yaml") == b"motd::owner: web-team\n"
    assert repo.read_file(head, "templates/motd.j2") is None
    assert repo.read_file(head, "templates") is None
    entry = repo.log(head, limit=1)[0]
    assert entry["parents"] == base
    assert entry["author_name"] == BOB.name
    assert entry["committer_name"] == COMMITTER_NAME
    assert entry["subject"] == "Raise workers"
    assert entry["message"] == "Raise workers\n\nWhy: load."
    # An edited script stays executable.
    assert os.stat(repo.checkout(head) / "files/check.sh").st_mode & 0o111
    assert len(repo.log(head)) == 2
    assert repo.merge_base(head, "production") == base
    assert repo.is_ancestor(base, head)
    assert not repo.is_ancestor(head, base)


@pytest.mark.parametrize(("path", "reason"), [
    ("../outside", "'..' components"),
    ("/etc/passwd", "must be relative"),
    (".git/config", "'.git' is reserved"),
    ("a/.GIT/hooks/x", "'.git' is reserved"),
    ("a//b", "empty"),
    ("a/./b", "'.'"),
    ("dir/", "empty"),
    ("", "non-empty string"),
    ("a\nb", "control characters"),
    ("a\\b", "backslashes"),
])
def test_commit_refuses_bad_paths(repo: DesiredStateRepo, path: str, reason: str) -> None:
    with pytest.raises(EditError) as caught:
        repo.commit(parent="production", author=ALICE, message="m", edits={path: "x"})
    assert reason in str(caught.value)
    assert "invalid path" in str(caught.value)


def test_commit_refuses_impossible_edits(repo: DesiredStateRepo) -> None:
    with pytest.raises(EditError, match=r"cannot delete 'nope\.yaml': no such file in"):
        repo.commit(parent="production", author=ALICE, message="m", edits={"nope.yaml": None})
    with pytest.raises(EditError,
                       match=r"cannot write 'steward\.yaml/x': 'steward\.yaml' is a file"):
        repo.commit(parent="production", author=ALICE, message="m",
                    edits={"steward.yaml/x": "x"})
    with pytest.raises(EditError, match="cannot write 'data': it is a directory"):
        repo.commit(parent="production", author=ALICE, message="m", edits={"data": "x"})
    with pytest.raises(EditError, match="change nothing"):
        repo.commit(parent="production", author=ALICE, message="m",
                    edits={"data/common.yaml": "motd::owner: ops\n"})
    with pytest.raises(EditError, match="commit message is required"):
        repo.commit(parent="production", author=ALICE, message=" \n", edits={"x": "y"})
    with pytest.raises(EditError, match="must be text, bytes or null"):
        repo.commit(parent="production", author=ALICE, message="m",
                    edits={"x": 3})  # type: ignore[dict-item]
    with pytest.raises(UnknownRefError, match="'nope'"):
        repo.commit(parent="nope", author=ALICE, message="m", edits={"x": "y"})
    # A file may become a directory when the same edit deletes the file.
    head = repo.commit(parent="production", author=ALICE, message="m",
                       edits={"steward.yaml": None, "steward.yaml/x": "x"})
    assert "steward.yaml/x" in repo.list_files(head)
    same = repo.commit(parent="production", author=ALICE, message="empty", allow_empty=True)
    assert repo.log(same, 1)[0]["parents"] == repo.tip("production")


def test_commit_from_a_patch(repo: DesiredStateRepo) -> None:
    base = repo.tip("production")
    edited = repo.commit(parent=base, author=ALICE, message="m",
                         edits={"data/common.yaml": "motd::owner: db-team\n",
                                "data/new.yaml": "a: 1\n"})
    patch = repo.diff(base, edited)
    assert "--- a/data/common.yaml" in patch
    assert "+motd::owner: db-team" in patch
    assert repo.diff(base, edited, ["data/new.yaml"]).count("diff --git") == 1
    applied = repo.commit(parent=base, author=BOB, message="as a patch", patch=patch)
    assert repo.changed_files(base, applied) == ["data/common.yaml", "data/new.yaml"]
    assert repo.read_file(applied, "data/new.yaml") == b"a: 1\n"
    # Patch plus edits: the patch first.
    both = repo.commit(parent=base, author=BOB, message="both", patch=patch,
                       edits={"data/new.yaml": "a: 2\n"})
    assert repo.read_file(both, "data/new.yaml") == b"a: 2\n"


def test_a_patch_that_does_not_apply_names_the_file_and_hunk(repo: DesiredStateRepo) -> None:
    base = repo.tip("production")
    edited = repo.commit(parent=base, author=ALICE, message="m",
                         edits={"data/common.yaml": "motd::owner: db-team\n"})
    patch = repo.diff(base, edited)
    with pytest.raises(PatchError) as caught:
        repo.commit(parent=edited, author=ALICE, message="again", patch=patch)
    message = str(caught.value)
    assert message.startswith(f"the patch does not apply to {edited[:12]}: ")
    assert "patch failed: data/common.yaml:1" in message
    assert "Traceback" not in message
    with pytest.raises(PatchError, match="no unified diff in the patch"):
        repo.commit(parent=base, author=ALICE, message="m", patch="just some text\n")
    with pytest.raises(PatchError, match="the patch is empty"):
        repo.commit(parent=base, author=ALICE, message="m", patch="")
    escape = ("diff --git a/../evil b/../evil\nnew file mode 100644\n--- /dev/null\n"
              "+++ b/../evil\n@@ -0,0 +1 @@\n+x\n")
    with pytest.raises(PatchError, match=r"invalid path '\.\./evil'"):
        repo.commit(parent=base, author=ALICE, message="m", patch=escape)
    link = ("diff --git a/link b/link\nnew file mode 120000\n--- /dev/null\n+++ b/link\n"
            "@@ -0,0 +1 @@\n+/etc/shadow\n\\ No newline at end of file\n")
    with pytest.raises(EditError, match="'link' would be a symlink"):
        repo.commit(parent=base, author=ALICE, message="m", patch=link)
    assert repo.tip("production") == base


# -- merges and reverts ---------------------------------------------------------------------


def test_merge_fast_forwards_merges_and_reports_conflicts(repo: DesiredStateRepo) -> None:
    base = repo.tip("staging")
    change = repo.commit(parent=base, author=ALICE, message="change",
                         edits={"data/common.yaml": "motd::owner: web\n"})
    assert repo.merge(into="staging", commit=change, author=BOB, message="m") == change
    assert repo.tip("staging") == change
    # Already contained: nothing happens.
    assert repo.merge(into="staging", commit=base, author=BOB, message="m") == change
    # Diverged without conflict: a merge commit with both parents and both edits.
    other = repo.commit(parent=base, author=BOB, message="other",
                        edits={"data/other.yaml": "x: 1\n"})
    merged = repo.merge(into="staging", commit=other, author=BOB, message="Merge other")
    entry = repo.log(merged, 1)[0]
    assert entry["parents"].split() == [change, other]
    assert entry["author_name"] == BOB.name
    assert repo.read_file(merged, "data/common.yaml") == b"motd::owner: web\n"
    assert repo.read_file(merged, "data/other.yaml") == b"x: 1\n"
    # Conflicting: the files are named, the branch does not move.
    clash = repo.commit(parent=base, author=ALICE, message="clash",
                        edits={"data/common.yaml": "motd::owner: db\n",
                               "data/other.yaml": "x: 2\n"})
    with pytest.raises(MergeConflictError) as caught:
        repo.merge(into="staging", commit=clash, author=BOB, message="m")
    assert caught.value.files == ("data/common.yaml", "data/other.yaml")
    assert "conflicts in data/common.yaml, data/other.yaml" in str(caught.value)
    assert repo.tip("staging") == merged
    with pytest.raises(UnknownRefError, match="no branch 'qa'"):
        repo.merge(into="qa", commit=clash, author=BOB, message="m")


def test_revert_restores_a_tree_with_a_new_commit(repo: DesiredStateRepo) -> None:
    good = repo.tip("production")
    bad = repo.commit(parent=good, author=ALICE, message="bad",
                      edits={"data/common.yaml": "motd::owner: oops\n", "extra.txt": "x"})
    repo.set_branch("production", bad, expected=good)
    rollback = repo.revert(branch="production", to_tree_of=good, author=BOB,
                           message="Roll back chg-1")
    assert repo.tip("production") == rollback
    assert repo.log(rollback, 1)[0]["parents"] == bad
    assert repo.changed_files(good, rollback) == []
    assert repo.changed_files(bad, rollback) == ["data/common.yaml", "extra.txt"]


def test_restore_and_read_files_build_without_moving_a_branch(repo: DesiredStateRepo) -> None:
    good = repo.tip("production")
    bad = repo.commit(parent=good, author=ALICE, message="bad",
                      edits={"data/common.yaml": "motd::owner: oops\n", "extra.txt": "x"})
    restored = repo.restore(parent=bad, to_tree_of=good, author=BOB, message="Roll back")
    assert repo.tip("production") == good
    assert repo.log(restored, 1)[0]["parents"] == bad
    assert repo.changed_files(good, restored) == []
    assert repo.read_files(bad, ["extra.txt", "missing.txt"]) == {"extra.txt": b"x",
                                                                  "missing.txt": None}


def test_common_base_is_none_without_shared_history(repo: DesiredStateRepo) -> None:
    tip = repo.tip("production")
    tree = plain_git("rev-parse", f"{tip}^{{tree}}", cwd=repo.path).stdout.strip()
    orphan = plain_git("commit-tree", tree, "-m", "orphan", cwd=repo.path).stdout.strip()
    assert repo.common_base(tip, tip) == tip
    assert repo.common_base(orphan, tip) is None
    with pytest.raises(GitError, match="share no history"):
        repo.merge_base(orphan, tip)


def test_changed_files_reports_a_rename_as_delete_and_add(repo: DesiredStateRepo) -> None:
    base = repo.tip("production")
    content = repo.read_file(base, "data/common.yaml")
    assert content is not None
    head = repo.commit(parent=base, author=ALICE, message="rename",
                       edits={"data/common.yaml": None, "data/shared.yaml": content})
    assert repo.changed_files(base, head) == ["data/common.yaml", "data/shared.yaml"]


# -- reading --------------------------------------------------------------------------------


def test_checkout_is_read_only_cached_and_complete(repo: DesiredStateRepo) -> None:
    tip = repo.tip("production")
    path = repo.checkout("production")
    assert path == repo.cache_dir / tip
    assert repo.checkout(tip) == path
    assert sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()) == \
        repo.list_files(tip)
    for entry in [path, *path.rglob("*")]:
        assert not entry.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH), entry
    # No temporary directories are left behind.
    assert [p.name for p in repo.cache_dir.iterdir()] == [tip]


def test_checkouts_race_safely_across_threads_and_processes(repo: DesiredStateRepo,
                                                            tmp_path: Path) -> None:
    heads = [repo.commit(parent="production", author=ALICE, message=f"c{i}",
                         edits={"data/common.yaml": f"motd::owner: o{i}\n"}) for i in range(3)]
    cache = tmp_path / "shared-cache"
    code = (
        "import sys; from pathlib import Path; from steward.gitrepo import DesiredStateRepo\n"
        "r = DesiredStateRepo(Path(sys.argv[1]), Path(sys.argv[2]))\n"
        "for sha in sys.argv[3:]:\n"
        "    p = r.checkout(sha)\n"
        "    assert (p / 'data/common.yaml').read_text().startswith('motd::owner: o')\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(repo.path), str(cache), *heads])
             for _ in range(4)]
    errors: list[BaseException] = []

    def in_thread() -> None:
        try:
            local = DesiredStateRepo(repo.path, cache)
            for sha in reversed(heads):
                local.checkout(sha)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=in_thread) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [proc.wait(60) for proc in procs] == [0, 0, 0, 0]
    assert errors == []
    assert sorted(p.name for p in cache.iterdir()) == sorted(heads)
    for i, sha in enumerate(heads):
        assert (cache / sha / "data/common.yaml").read_text() == f"motd::owner: o{i}\n"


def test_load_is_cached_per_commit_and_bounded(tmp_path: Path, source: Path) -> None:
    repo = DesiredStateRepo.create(tmp_path / "d.git", source, ENVIRONMENTS, ALICE)
    repo = DesiredStateRepo(repo.path, load_cache_size=2)
    tip = repo.tip("production")
    loaded = repo.load("production")
    assert loaded is repo.load(tip)
    assert loaded.settings.default_environment == "production"
    assert set(loaded.profiles) == {"motd"}
    heads = [repo.commit(parent=tip, author=ALICE, message=f"c{i}",
                         edits={"data/common.yaml": f"motd::owner: o{i}\n"}) for i in range(2)]
    for head in heads:
        repo.load(head)
    assert repo.load(tip) is not loaded  # evicted, loaded again


def test_a_pushed_symlink_cannot_be_checked_out(repo: DesiredStateRepo, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    plain_git("clone", "-q", str(repo.path), str(clone), cwd=tmp_path)
    plain_git("checkout", "-q", "-b", "sneaky", cwd=clone)
    (clone / "data" / "leak.yaml").symlink_to("/etc/shadow")
    plain_git("add", "-A", cwd=clone)
    plain_git("commit", "-qm", "link", cwd=clone)
    plain_git("push", "-q", "origin", "sneaky", cwd=clone)
    with pytest.raises(GitError, match=r"'data/leak\.yaml' is a symlink"):
        repo.checkout("sneaky")
    assert not any(repo.cache_dir.iterdir())


def test_humans_clone_push_branches_but_not_environments(repo: DesiredStateRepo,
                                                         tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    plain_git("clone", "-q", str(repo.path), str(clone), cwd=tmp_path)
    assert plain_git("branch", "--show-current", cwd=clone).stdout.strip() == "production"
    plain_git("checkout", "-q", "-b", "feature/owner", cwd=clone)
    (clone / "data" / "common.yaml").write_text("motd::owner: humans\n")
    plain_git("commit", "-qam", "Humans own the motd", cwd=clone)
    plain_git("push", "-q", "origin", "feature/owner", cwd=clone)
    pushed = repo.tip("feature/owner")
    assert repo.read_file(pushed, "data/common.yaml") == b"motd::owner: humans\n"
    assert repo.log(pushed, 1)[0]["author_name"] == "Hannah Human"
    assert repo.changed_files("production", pushed) == ["data/common.yaml"]
    # Environment and change branches move only through the pipeline.
    production = repo.tip("production")
    for target in ("production", "changes/chg-9"):
        refused = plain_git("push", "origin", f"feature/owner:{target}", cwd=clone, check=False)
        assert refused.returncode != 0
        assert f"steward: {target} is managed by Steward" in refused.stderr
    refused = plain_git("push", "origin", ":staging", cwd=clone, check=False)
    assert refused.returncode != 0
    assert repo.tip("production") == production
    assert "changes/chg-9" not in repo.branches()
    # What the server merges, people fetch.
    repo.merge(into="production", commit=pushed, author=ALICE, message="deploy")
    plain_git("fetch", "-q", "origin", cwd=clone)
    assert plain_git("rev-parse", "origin/production", cwd=clone).stdout.strip() == pushed


def test_the_callers_git_setup_changes_nothing(
    repo: DesiredStateRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(
        "[user]\n  name = Evil\n  email = evil@example.com\n"
        "[diff]\n  noprefix = true\n  mnemonicPrefix = true\n"
        "[commit]\n  gpgSign = true\n"
        "[core]\n  hooksPath = /nonexistent\n"
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.setenv("GIT_DIR", str(tmp_path))
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Mallory")
    monkeypatch.setenv("GIT_INDEX_FILE", str(tmp_path / "stray-index"))
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    head = repo.commit(parent="production", author=ALICE, message="m",
                       edits={"data/common.yaml": "motd::owner: x\n"})
    entry = repo.log(head, 1)[0]
    assert (entry["author_name"], entry["committer_name"]) == (ALICE.name, COMMITTER_NAME)
    assert entry["author_date"].endswith("+00:00")
    assert "--- a/data/common.yaml" in repo.diff("production", head)
    assert not (tmp_path / "stray-index").exists()
