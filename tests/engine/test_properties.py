"""Properties of the engine over generated catalogs, on a real filesystem under --root.

* idempotence: after a real run, a second run changes nothing;
* noop is exact: every event noop predicts is the event the real run performs (same property,
  old and new value), and a resource noop calls pending is one the real run then changes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steward.catalog.model import Catalog, Edge, Resource
from steward.engine.context import Context
from steward.engine.report import build_report
from steward.engine.runner import SubprocessRunner
from steward.engine.transaction import apply_catalog

MODES = ["0600", "0640", "0644", "0755"]
NAMES = st.sampled_from(["a", "b", "c", "data", "x.txt"])
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@st.composite
def scenario(draw: st.DrawFn) -> dict[str, Any]:
    chosen = draw(st.sets(st.sampled_from(["/srv/app", "/srv/app/conf", "/srv/web"]),
                           min_size=1))
    if "/srv/app/conf" in chosen:
        chosen.add("/srv/app")  # a directory's parent must exist or be managed
    dirs = sorted(chosen)
    resources: list[Resource] = []
    edges: list[Edge] = []
    existing: dict[str, tuple[str, int]] = {}
    for d in dirs:
        params: dict[str, Any] = {"ensure": "present"}
        if draw(st.booleans()):
            params["mode"] = draw(st.sampled_from(["0755", "0750", "0700"]))
        resources.append(Resource("directory", d, params))
        parent = os.path.dirname(d)
        if parent in dirs:
            edges.append(Edge(f"directory[{parent}]", f"directory[{d}]", "autorequire"))
    for d in dirs:
        for name in sorted(draw(st.sets(NAMES, max_size=3))):
            path = f"{d}/{name}"
            params = {"content": draw(TEXT)}
            if draw(st.booleans()):
                params["mode"] = draw(st.sampled_from(MODES))
            if draw(st.booleans()):
                params["ensure"] = draw(st.sampled_from(["present", "absent"]))
            resources.append(Resource("file", path, params))
            edges.append(Edge(f"directory[{d}]", f"file[{path}]", "autorequire"))
            if draw(st.booleans()):
                existing[path] = (draw(TEXT), int(draw(st.sampled_from(MODES)), 8))
    lines_file = "/etc/app.cfg"
    existing_lines = draw(st.lists(st.sampled_from(["a=1", "b=2", "# c", "d=4"]), max_size=4))
    for i, text in enumerate(draw(st.lists(st.sampled_from(["a=1", "b=3", "e=5"]),
                                           max_size=3, unique=True))):
        params = {"path": lines_file, "line": text}
        if text.startswith("b"):
            params["match"] = "^b="
        resources.append(Resource("line", f"line{i}", params))
    for i, (host, ip) in enumerate(draw(st.lists(
            st.tuples(st.sampled_from(["db", "cache"]), st.sampled_from(["10.0.0.1", "10.0.0.2"])),
            max_size=2, unique_by=lambda t: t[0]))):
        resources.append(Resource("host", host, {"ip": ip, "host_aliases": [f"{host}{i}"]}))
    return {"resources": resources, "edges": edges, "existing": existing,
            "lines": existing_lines}


def _prepare(root: Path, sc: dict[str, Any]) -> None:
    (root / "etc").mkdir(parents=True)
    (root / "srv").mkdir()
    (root / "etc/app.cfg").write_text("".join(f"{x}\n" for x in sc["lines"]), "utf-8")
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n", "utf-8")
    for path, (content, mode) in sc["existing"].items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, "utf-8")
        target.chmod(mode)


def _run(catalog: Catalog, root: Path, *, noop: bool) -> dict[str, Any]:
    ctx = Context(runner=SubprocessRunner(), noop=noop, root=root,
                  state_dir=root / "var/lib/steward")
    return build_report(apply_catalog(catalog, ctx))


def _events(report: dict[str, Any]) -> dict[str, list[tuple[str, Any, Any]]]:
    return {
        r["ref"]: [(e["property"], e["old_value"], e["new_value"]) for e in r["events"]]
        for r in report["resources"]
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario())
def test_second_apply_changes_nothing_and_noop_predicts_exactly(sc: dict[str, Any]) -> None:
    catalog = Catalog("n1", "production", sc["resources"], sc["edges"]).seal()
    root = Path(tempfile.mkdtemp(prefix="steward-prop-"))
    try:
        _prepare(root, sc)
        predicted = _run(catalog, root, noop=True)
        applied = _run(catalog, root, noop=False)
        assert applied["status"] != "failed", [r for r in applied["resources"] if r["failed"]]
        statuses = {r["ref"]: r["status"] for r in predicted["resources"]}
        real = _events(applied)
        for ref, events in _events(predicted).items():
            if statuses[ref] == "pending":
                assert real[ref], f"{ref} was pending in noop but the real run changed nothing"
            else:
                assert events == real[ref], ref
        again = _run(catalog, root, noop=False)
        assert again["status"] == "unchanged", [r for r in again["resources"] if r["events"]]
        assert again["metrics"]["events"]["total"] == 0
    finally:
        shutil.rmtree(root)
