"""The node bundle: reproducible bytes, only the node side inside, runnable by a bare python3."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from steward.transport import TransportError
from steward.transport.bundle import (
    FIXED_DATE_TIME,
    build_bundle,
    build_bundle_bytes,
    package_dir,
)


def _isolated(
    bundle: Path, *args: str, stdin: str = "", cwd: Path
) -> subprocess.CompletedProcess[str]:
    """python3 -I -S: no site-packages, no PYTHON* variables, no current directory on the path."""
    return subprocess.run([sys.executable, "-I", "-S", str(bundle), *args], input=stdin,
                          capture_output=True, text=True, cwd=cwd, check=False,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})


def test_same_code_gives_the_same_bytes_and_sha(tmp_path: Path) -> None:
    first = build_bundle(cache_dir=tmp_path / "one")
    second = build_bundle(cache_dir=tmp_path / "two")
    assert first.sha256 == second.sha256
    assert first.path.read_bytes() == second.path.read_bytes() == build_bundle_bytes()
    assert first.path.name == f"bundle-{first.sha256}.pyz"
    assert hashlib.sha256(first.path.read_bytes()).hexdigest() == first.sha256


def test_file_times_do_not_matter_but_content_does(tmp_path: Path) -> None:
    copy = tmp_path / "steward"
    shutil.copytree(package_dir(), copy, ignore=shutil.ignore_patterns("__pycache__"))
    for path in copy.rglob("*.py"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    assert build_bundle_bytes(copy) == build_bundle_bytes()
    facts_cli = copy / "facts" / "cli.py"
    facts_cli.write_text(facts_cli.read_text() + "\n# edited\n")
    edited = build_bundle(copy, cache_dir=tmp_path / "cache")
    assert edited.sha256 != hashlib.sha256(build_bundle_bytes()).hexdigest()


def test_only_the_node_side_is_shipped(tmp_path: Path) -> None:
    bundle = build_bundle(cache_dir=tmp_path)
    with zipfile.ZipFile(bundle.path) as archive:
        infos = archive.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names)
    assert names[0] == "__main__.py"
    allowed = ("steward/__init__.py", "steward/__main__.py", "steward/clock.py",
               "steward/errors.py",
               "steward/catalog/", "steward/engine/", "steward/facts/")
    assert all(n == "__main__.py" or n.startswith(allowed) for n in names), names
    assert all(n.endswith(".py") for n in names)
    assert "steward/engine/cli.py" in names
    assert "steward/facts/cli.py" in names
    assert not any(n.startswith(("steward/cli/", "steward/transport/", "steward/compiler/"))
                   for n in names)
    assert {i.date_time for i in infos} == {FIXED_DATE_TIME}
    assert bundle.path.read_bytes().startswith(b"#!/usr/bin/env python3\n")


def test_bare_python_runs_facts_from_the_bundle(tmp_path: Path) -> None:
    bundle = build_bundle(cache_dir=tmp_path / "cache")
    done = _isolated(bundle.path, "facts", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert facts["steward"]["version"]
    assert facts["kernel"]["name"] == "Linux"


def test_bare_python_applies_with_secrets_from_stdin(tmp_path: Path) -> None:
    bundle = build_bundle(cache_dir=tmp_path / "cache")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    catalog = {
        "catalog_format": 1, "node": "bundle.test", "environment": "test", "edges": [],
        "resources": [{"type": "file", "title": "/etc/app.conf", "tags": [], "file": None,
                       "line": None,
                       "parameters": {"content": {"__sensitive__": "conf"}, "mode": "0600"}}],
    }
    stdin = json.dumps({"conf": "token=abc\n"}) + "\n" + json.dumps(catalog)
    args = ("apply", "--catalog", "-", "--secrets-on-stdin", "--root", str(root))
    done = _isolated(bundle.path, *args, stdin=stdin, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "changed"
    assert "token=abc" not in done.stdout
    assert (root / "etc/app.conf").read_text() == "token=abc\n"
    again = _isolated(bundle.path, *args, stdin=stdin, cwd=tmp_path)
    assert again.returncode == 0, again.stdout


def test_the_bundle_runs_node_commands_only(tmp_path: Path) -> None:
    bundle = build_bundle(cache_dir=tmp_path)
    done = _isolated(bundle.path, "compile", cwd=tmp_path)
    assert done.returncode == 1
    assert "runs only" in done.stderr


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    copy = tmp_path / "steward"
    shutil.copytree(package_dir(), copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "errors.py").unlink()
    with pytest.raises(TransportError, match=r"errors\.py is missing"):
        build_bundle(copy, cache_dir=tmp_path / "cache")
