"""Drive the real engine inside a Debian root: write a catalog, run ``steward apply``, read.

``apply`` runs exactly what a node runs: ``python3 -m steward apply --catalog FILE``, with
this checkout's ``src/steward`` copied to /opt/steward. With ``record=True`` the same CLI
code runs through a small wrapper that also records every command the providers issued, so
tests can count prefetch calls and prove noop ran nothing that changes the system.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.engine.providers.debian_root import ChrootSession

#: Runs steward's node CLI with a runner that records each argv to $STEWARD_CALLS.
RECORDER = '''\
import json, os, sys
from steward.engine import cli, runner
from steward.engine.runner import SubprocessRunner

CALLS = []


class RecordingRunner(SubprocessRunner):
    def run(self, argv, **kwargs):
        CALLS.append(list(argv))
        return super().run(argv, **kwargs)


runner.SubprocessRunner = RecordingRunner  # the CLI imports it from here when it runs
try:
    code = cli.main(sys.argv[1:])
finally:
    with open(os.environ["STEWARD_CALLS"], "w") as handle:
        json.dump(CALLS, handle)
sys.exit(code)
'''

EXIT_CHANGED, EXIT_FAILED, EXIT_PENDING = 2, 4, 8


def resource(type_name: str, title: str, **parameters: Any) -> dict[str, Any]:
    return {"type": type_name, "title": title, "parameters": parameters, "tags": [],
            "file": "tests/engine/providers", "line": None}


def edge(source: str, target: str, relationship: str = "before") -> dict[str, str]:
    return {"source": source, "target": target, "relationship": relationship}


@dataclass
class Run:
    code: int
    report: dict[str, Any]
    stdout: str
    stderr: str
    calls: list[list[str]] = field(default_factory=list)

    def resource(self, ref: str) -> dict[str, Any]:
        for item in self.report["resources"]:
            if item["ref"] == ref:
                return dict(item)
        raise KeyError(f"{ref} not in report: {[r['ref'] for r in self.report['resources']]}")

    def status(self, ref: str) -> str:
        return str(self.resource(ref)["status"])

    def events(self, ref: str) -> list[dict[str, Any]]:
        return list(self.resource(ref)["events"])

    def changes(self) -> list[tuple[str, str, Any, Any]]:
        """(ref, property, old, new) of every event: what a run did or would do."""
        return [(r["ref"], e["property"], e["old_value"], e["new_value"])
                for r in self.report["resources"] for e in r["events"]]

    def statuses(self) -> dict[str, str]:
        return {r["ref"]: r["status"] for r in self.report["resources"]}

    def calls_of(self, *prefix: str) -> list[list[str]]:
        return [c for c in self.calls if tuple(c[:len(prefix)]) == prefix]


class Node:
    """The engine as installed in one Debian root."""

    _serial = itertools.count()

    def __init__(self, session: ChrootSession) -> None:
        self.session = session
        session.install_steward()
        session.write("/opt/steward/record_apply.py", RECORDER)

    def apply(
        self,
        resources: Iterable[Mapping[str, Any]],
        edges: Sequence[Mapping[str, str]] = (),
        *,
        noop: bool = False,
        secrets: Mapping[str, str] | None = None,
        record: bool = False,
    ) -> Run:
        n = next(self._serial)
        catalog = {
            "catalog_format": 1,
            "node": "node1.test",
            "environment": "test",
            "resources": [dict(r) for r in resources],
            "edges": [dict(e) for e in edges],
        }
        self.session.write(f"/tmp/catalog-{n}.json", json.dumps(catalog, indent=2))
        argv = ["apply", "--catalog", f"/tmp/catalog-{n}.json"]
        if noop:
            argv.append("--noop")
        if secrets is not None:
            self.session.write(f"/tmp/secrets-{n}.json", json.dumps(dict(secrets)), 0o600)
            argv += ["--secrets", f"/tmp/secrets-{n}.json"]
        env = {"PYTHONPATH": "/opt/steward", "PYTHONDONTWRITEBYTECODE": "1"}
        if record:
            env["STEWARD_CALLS"] = f"/tmp/calls-{n}.json"
            command = ["python3", "/opt/steward/record_apply.py", *argv]
        else:
            command = ["python3", "-m", "steward", *argv]
        result = self.session.run(command, env=env, check=False)
        try:
            report = json.loads(result.stdout)
        except ValueError as exc:
            raise AssertionError(
                f"steward apply printed no report (exit {result.returncode}):\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            ) from exc
        calls = json.loads(self.session.read(f"/tmp/calls-{n}.json")) if record else []
        return Run(result.returncode, report, result.stdout, result.stderr, calls)


def assert_noop_predicts(noop: Run, real: Run) -> None:
    """The noop run reported exactly the events the real run then performed."""
    assert noop.code & EXIT_PENDING, noop.report
    assert not noop.code & (EXIT_CHANGED | EXIT_FAILED), noop.report
    assert real.code == EXIT_CHANGED, real.report
    assert noop.changes() == real.changes()
    for item in noop.report["resources"]:
        for event in item["events"]:
            assert event["status"] == "noop"
            # The engine words events of sensitive properties itself, without the prefix.
            assert event["message"].startswith("would have ") or event["message"].endswith(
                "(sensitive value redacted)"), event
    predicted = [(r["ref"], e["message"].removeprefix("would have "))
                 for r in noop.report["resources"] for e in r["events"]]
    performed = [(r["ref"], e["message"]) for r in real.report["resources"] for e in r["events"]]
    assert predicted == performed
    assert all(e["status"] == "success" for r in real.report["resources"] for e in r["events"])


def assert_unchanged(run: Run) -> None:
    assert run.code == 0, run.report
    assert run.changes() == []
    assert set(run.statuses().values()) == {"unchanged"}, run.statuses()
