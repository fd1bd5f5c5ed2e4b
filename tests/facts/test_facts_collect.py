"""The whole collection on this host, isolation of failing collectors, lookup and the CLI."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

import steward
import steward.facts
from steward.facts import collect_facts, lookup
from steward.facts.cli import main
from steward.facts.system import uptime_facts
from tests.facts.conftest import MakeRoot, fixture_text


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def test_collect_facts_on_this_host_has_every_fact_with_the_right_types() -> None:
    facts = collect_facts()
    json.dumps(facts)  # everything is plain JSON
    assert set(facts) >= {
        "os", "kernel", "hostname", "fqdn", "networking", "memory", "processors", "disks",
        "mountpoints", "python", "uptime", "timezone", "virtual", "is_virtual", "identity",
        "steward",
    }
    assert isinstance(facts["os"]["family"], str)
    assert isinstance(facts["os"]["name"], str)
    assert isinstance(facts["os"]["architecture"], str)
    assert facts["kernel"]["name"] == "Linux"
    assert facts["hostname"] == facts["networking"]["hostname"]
    assert facts["fqdn"].startswith(facts["hostname"])
    for name, interface in facts["networking"]["interfaces"].items():
        assert isinstance(name, str)
        for binding in interface.get("bindings", []) + interface.get("bindings6", []):
            assert set(binding) >= {"address", "netmask", "network"}
    for kind in ("system", "swap"):
        usage = facts["memory"][kind]
        assert all(_is_int(usage[k]) for k in ("total_bytes", "available_bytes", "used_bytes"))
    assert facts["memory"]["system"]["total_bytes"] > 0
    assert facts["processors"]["count"] >= 1
    assert facts["processors"]["physicalcount"] >= 1
    assert all(isinstance(m, str) for m in facts["processors"]["models"])
    assert all(_is_int(d["size_bytes"]) for d in facts["disks"].values())
    assert "/" in facts["mountpoints"]
    assert _is_int(facts["mountpoints"]["/"]["size_bytes"])
    assert isinstance(facts["mountpoints"]["/"]["options"], list)
    assert _is_int(facts["uptime"]["seconds"])
    assert isinstance(facts["is_virtual"], bool)
    assert _is_int(facts["identity"]["uid"])
    assert facts["steward"]["version"] == steward.__version__
    if "packages" in facts:
        assert _is_int(facts["packages"]["count"])
        assert facts["packages"]["manager"] in {"dpkg", "rpm", "apk", "pacman"}


def test_a_failing_collector_is_logged_and_left_out(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(root: str) -> dict[str, Any]:
        raise PermissionError(13, "Permission denied", "/proc/meminfo")

    collectors = tuple(
        (name, provides, broken if name == "memory" else fn)
        for name, provides, fn in steward.facts.COLLECTORS
    )
    monkeypatch.setattr(steward.facts, "COLLECTORS", collectors)
    with caplog.at_level(logging.WARNING, logger="steward.facts"):
        facts = collect_facts()
    assert "memory" not in facts
    assert "os" in facts
    assert "could not collect memory facts: PermissionError" in caplog.text


def test_only_runs_the_collectors_named(make_root: MakeRoot) -> None:
    root = make_root({"/etc/os-release": fixture_text("os-release/alpine-3.20")})
    assert set(collect_facts(root, only=["os"])) == {"os"}
    network_only = set(collect_facts(root, only=["fqdn"]))
    assert {"hostname", "fqdn", "networking"} <= network_only <= {
        "hostname", "fqdn", "domain", "networking"
    }


def test_lookup_by_dotted_path() -> None:
    facts = {
        "os": {"release": {"major": "12"}},
        "networking": {"interfaces": {"eth0.100": {"mtu": 1500}}},
        "mountpoints": {"/var/lib": {"size_bytes": 1}},
        "processors": {"models": ["A", "B"]},
    }
    assert lookup(facts, "os.release.major") == "12"
    assert lookup(facts, "networking.interfaces.eth0.100.mtu") == 1500
    assert lookup(facts, "mountpoints./var/lib.size_bytes") == 1
    assert lookup(facts, "processors.models.1") == "B"
    for missing in ("os.release.minor", "processors.models.2", "os.release.major.x", "nope"):
        with pytest.raises(KeyError):
            lookup(facts, missing)


def test_uptime_wording_follows_facter() -> None:
    assert uptime_facts(59) == {"seconds": 59, "hours": 0, "days": 0, "uptime": "0 minutes"}
    assert uptime_facts(3 * 3600 + 5 * 60)["uptime"] == "3:05 hours"
    assert uptime_facts(86400 + 7200) == {
        "seconds": 93600, "hours": 26, "days": 1, "uptime": "1 day"
    }
    assert uptime_facts(3 * 86400)["uptime"] == "3 days"


def test_cli_prints_all_facts_as_sorted_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    document = json.loads(out)
    assert list(document) == sorted(document)
    assert main(["--pretty"]) == 0
    pretty = capsys.readouterr().out
    assert pretty.startswith("{\n  ")
    assert set(json.loads(pretty)) == set(document)


def test_cli_prints_one_fact(make_root: MakeRoot, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_root({"/etc/os-release": fixture_text("os-release/rocky-9")})
    assert main(["--root", root, "os.family"]) == 0
    assert capsys.readouterr().out == "RedHat\n"  # a string prints bare, like facter
    assert main(["--root", root, "os.release"]) == 0
    assert json.loads(capsys.readouterr().out) == {"full": "9.4", "major": "9", "minor": "4"}
    assert main(["--root", root, "os.nothing"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no fact 'os.nothing'" in captured.err
