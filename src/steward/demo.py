"""The README's main job: compile the example repository for sandboxed nodes and enforce it.

Each node gets its own ``--root`` sandbox under the work directory. The run goes through the
whole loop a user cares about: compile, predict (noop), apply, prove idempotence, then drift
(someone edits a managed file behind Steward's back) and its correction, flagged as such.
"""

from __future__ import annotations

import json
import secrets as pysecrets
import shutil
from pathlib import Path
from typing import Any

from steward.catalog.model import Catalog
from steward.compiler import compile_catalog
from steward.engine.context import Context
from steward.engine.report import build_report
from steward.engine.runner import SubprocessRunner
from steward.engine.summary import render_summary
from steward.engine.transaction import apply_catalog
from steward.errors import UsageError
from steward.language import load_repository
from steward.secrets.store import SecretStore

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DEMO_NODES = ("web1", "web2", "db1")


#: Directories every Debian base system has, so a sandbox root looks like a fresh node.
_SKELETON = (
    "etc/default", "etc/sysctl.d", "etc/cron.d", "etc/apt/sources.list.d", "etc/ssh",
    "etc/systemd/system", "etc/logrotate.d", "home", "opt", "root", "srv", "tmp",
    "usr/local/bin", "usr/local/sbin", "var/backups", "var/cache", "var/lib", "var/log",
    "var/www",
)


def _debian_skeleton(root: Path, node: str) -> None:
    for sub in _SKELETON:
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "etc/hostname").write_text(f"{node}\n", encoding="utf-8")
    (root / "etc/hosts").write_text(
        f"127.0.0.1\tlocalhost\n127.0.1.1\t{node}\n::1\tlocalhost ip6-localhost\n",
        encoding="utf-8",
    )


def _say(text: str = "") -> None:
    print(text, flush=True)


def _apply(catalog: Catalog, root: Path, values: dict[str, str], *, noop: bool) -> dict[str, Any]:
    ctx = Context(runner=SubprocessRunner(), noop=noop, root=root,
                  state_dir=root / "var" / "lib" / "steward")
    return build_report(apply_catalog(catalog, ctx, values))


def _tamper(catalog: Catalog, root: Path) -> list[str]:
    """Drift one managed file's content and another's mode, as a careless admin would."""
    done: list[str] = []
    files = [r for r in catalog.resources
             if r.type == "file" and isinstance(r.parameters.get("content"), str)]
    if files:
        target = root / str(files[0].parameters.get("path", files[0].title)).lstrip("/")
        target.write_text("edited by hand\n", encoding="utf-8")
        done.append(f"edited {files[0].ref}")
    with_mode = [r for r in files[1:] if "mode" in r.parameters]
    if with_mode:
        target = root / str(with_mode[0].parameters.get("path", with_mode[0].title)).lstrip("/")
        target.chmod(0o666)
        done.append(f"chmod 0666 {with_mode[0].ref}")
    return done


def run_demo(workdir: Path, repo_path: Path | None = None) -> int:
    repo_path = repo_path or EXAMPLES / "repo"
    facts_dir = EXAMPLES / "facts"
    if not (repo_path / "classification.yaml").exists():
        raise UsageError(f"{repo_path} is not a desired-state repository (pass --repo)")
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    data_dir = workdir / "data"
    store = SecretStore(data_dir)
    store.set("db_password", pysecrets.token_urlsafe(18))
    _say(f"Steward demo: repository {repo_path}, work directory {workdir}")
    _say("  stored a generated 'db_password' in the encrypted secrets store "
         f"({data_dir}); its value appears nowhere below")

    repository = load_repository(repo_path)
    ok = True
    for node in DEMO_NODES:
        facts_file = facts_dir / f"{node}.json"
        facts = json.loads(facts_file.read_text(encoding="utf-8"))
        result = compile_catalog(repository, node=node, facts=facts, secrets=store)
        catalog = result.catalog
        (workdir / "catalogs").mkdir(exist_ok=True)
        (workdir / "catalogs" / f"{node}.json").write_text(catalog.dumps() + "\n", "utf-8")
        classes = catalog.classification
        _say()
        _say(f"== {node}: role {', '.join(classes.get('roles', [])) or '-'}; "
             f"{len(catalog.resources)} resources, {len(catalog.edges)} edges; "
             f"catalog {catalog.hash[:19]}…")
        root = workdir / "nodes" / node
        _debian_skeleton(root, node)

        # The first node is shown in full; the others by their headlines.
        brief = node != DEMO_NODES[0]

        def show(report: dict[str, Any], *, diffs: bool = False, full: bool = False,
                 brief: bool = brief) -> None:
            text = render_summary(report, show_diffs=diffs)
            _say(text if full or not brief else "\n".join(text.splitlines()[:2]))

        _say("-- 1. predict (noop): what would change")
        noop = _apply(catalog, root, result.sensitive_values, noop=True)
        show(noop)
        _say("-- 2. apply")
        first = _apply(catalog, root, result.sensitive_values, noop=False)
        show(first)
        _say("-- 3. apply again: nothing to do (idempotent)")
        second = _apply(catalog, root, result.sensitive_values, noop=False)
        show(second)
        tampered = _tamper(catalog, root)
        _say(f"-- 4. drift introduced by hand: {'; '.join(tampered)}")
        third = _apply(catalog, root, result.sensitive_values, noop=False)
        show(third, diffs=True, full=True)
        report_dir = workdir / "reports"
        report_dir.mkdir(exist_ok=True)
        for label, report in (("1-noop", noop), ("2-apply", first), ("3-apply", second),
                              ("4-drift", third)):
            (report_dir / f"{node}-{label}.json").write_text(
                json.dumps(report, sort_keys=True, indent=2) + "\n", "utf-8")
        node_ok = (first["status"] == "changed" and second["status"] == "unchanged"
                   and (third["corrective_change"] or not tampered)
                   and noop["noop_pending"])
        ok = ok and node_ok
    _say()
    _say(f"catalogs in {workdir / 'catalogs'}, reports in {workdir / 'reports'}, sandboxed "
         f"node roots in {workdir / 'nodes'}")
    _say("demo " + ("succeeded: predicted, enforced, idempotent, drift corrected and flagged"
                    if ok else "FAILED: see the reports above"))
    return 0 if ok else 1
