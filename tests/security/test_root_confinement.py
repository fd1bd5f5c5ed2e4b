"""Issue 10.5: ``--root`` confines every write, against a real server and the real pull agent.

The attacker controls desired state (a planner whose change got through, or anyone who can
write the repository): a symlink resource ``/etc/app`` pointing outside the node's root, then a
file ``/etc/app/conf`` under it. Before, the agent followed the link and wrote outside
``--root``. Now the file fails naming the link, nothing outside changes, and the report the
server stores says so. A real ``steward server`` on SQLite and PostgreSQL, and the real pull
agent (``steward agent --once --root``) as its own process.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.harness import Server, database_url, init_data_dir, make_node
from tests.engine.providers.test_pathutil import snapshot


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_hostile_catalog_cannot_write_outside_the_root(backend: str, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("outside\n")
    with database_url(backend, tmp_path, "confine") as url:
        data_dir, admin = init_data_dir(tmp_path, url)
        (tmp_path / "repo" / "profiles" / "app.yaml").write_text(
            "resources:\n"
            f"  symlink[/etc/app]:\n    target: {outside}\n"
            "  file[/etc/app/conf]:\n    content: \"pwned\\n\"\n"
            "    require: [\"symlink[/etc/app]\"]\n"
            "  file[/etc/motd]:\n    content: \"still managed\\n\"\n",
            encoding="utf-8")
        server = Server(data_dir, admin)
        server.start()
        try:
            join = server.api("POST", "/api/v1/tokens",
                              json={"kind": "join", "name": "confine", "expires_in": 600})
            node = make_node(tmp_path, "web1", server)
            before = snapshot(outside)
            run = node.once(join_token=join["token"])
            assert snapshot(outside) == before, "the agent wrote outside --root"
            assert os.readlink(node.root / "etc" / "app") == str(outside)
            assert (node.root / "etc" / "motd").read_text() == "still managed\n"
            assert "exit 6;" in run.stdout + run.stderr  # 4 (failures) + 2 (changes)
            [report] = server.reports("web1")
            assert report["status"] == "failed", report
            written = {(e["resource_title"], e["status"])
                       for e in report["resource_events"]["data"]}
            assert ("/etc/motd", "success") in written
            assert not any(title == "/etc/app/conf" for title, _ in written), written
        finally:
            server.stop()
        # The failure's message is tests/engine/providers/test_pathutil.py's to check: a failed
        # resource yields no event in the stored report yet (issue 13, failure events).
