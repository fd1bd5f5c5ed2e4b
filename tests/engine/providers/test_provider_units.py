"""Provider logic that needs no root: parsers on real output, and backends driven through
ReplayRunner.

The dnf/rpm transcripts (``fixtures/dnf``) were captured from the real engine running
Debian's rpm 4.18 and dnf 4.14 in the rpm test root (see ``fixtures/dnf/README.md``;
``test_dnf_system.py`` checks they still match). The apk transcripts below follow apk's
documented output formats (``apk info -v``/``apk search``); unlike the apt, dnf and systemctl
fixtures they were not captured on a real system.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from steward.engine.context import Context
from steward.engine.provider import Change, Pending, ProviderError, Unresolved
from steward.engine.providers.cron import find_entries, split_entry
from steward.engine.providers.package import PackageProvider, backend_for
from steward.engine.providers.package_apt import parse_apt_policy, parse_dpkg_query
from steward.engine.providers.package_backend import PackageState
from steward.engine.providers.package_dnf import DnfBackend, compare_evr, rpmvercmp
from steward.engine.testing import ReplayRunner
from tests.engine.providers.replay import FIXTURES, Transcript, make_provider

APT = FIXTURES / "apt"


def test_dpkg_query_listing_from_a_real_root() -> None:
    found = parse_dpkg_query((APT / "dpkg-query-W.txt").read_text())
    assert found["apt"] == PackageState("2.6.1")
    assert found["bsdutils"] == PackageState("1:2.38.1-5+deb12u3")
    # Removed with its configuration left: not installed, config-files state.
    assert found["steward-hello"] == PackageState(None, config_files=True)
    assert not found["steward-hello"].installed
    assert len(found) == 114


def test_dpkg_states_and_multiarch() -> None:
    text = ("libfoo\t1.0\tii \nlibfoo\t1.0\tun \nhalf\t2.0\tiF \nunpacked\t3.0\tiU \n"
            "gone\t\tpn \ninst\t1\tiHR\n")
    found = parse_dpkg_query(text)
    assert found["libfoo"] == PackageState("1.0")
    assert found["half"] == PackageState("2.0", broken="half-configured")
    assert found["half"].display() == "2.0 (half-configured)"
    assert found["unpacked"].broken == "unpacked"
    assert found["inst"].broken == "half-installed"
    assert "gone" not in found


def test_apt_cache_policy_from_a_real_root() -> None:
    found = parse_apt_policy((APT / "apt-cache-policy.txt").read_text())
    assert found == {"steward-hello": "2.0", "steward-dep": "1.0", "apt": "2.6.1"}
    assert parse_apt_policy("foo:\n  Installed: (none)\n  Candidate: (none)\n") == {"foo": None}


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1.0", "1.0", 0), ("1.0", "2.0", -1), ("2.0", "1.0", 1), ("2.0.1", "2.0.1", 0),
        ("2.0", "2.0.1", -1), ("2.0.1a", "2.0.1", 1), ("5.5p1", "5.5p2", -1),
        ("5.5p10", "5.5p1", 1), ("10xyz", "10.1xyz", -1), ("xyz10", "xyz10.1", -1),
        ("xyz.4", "8", -1), ("8", "xyz.4", 1), ("1.05", "1.5", 0), ("2_0", "2_0", 0),
        ("2.0", "2_0", 0), ("a", "a", 0), ("a+", "a_", 0), ("+a", "_a", 0),
        ("1.0~rc1", "1.0~rc1", 0), ("1.0~rc1", "1.0", -1), ("1.0", "1.0~rc1", 1),
        ("1.0~rc1", "1.0~rc2", -1), ("1.0~rc1~git123", "1.0~rc1", -1),
        ("1.0^", "1.0^", 0), ("1.0^", "1.0", 1), ("1.0", "1.0^", -1),
        ("1.0^git1", "1.0", 1), ("1.0^git1", "1.0^git2", -1), ("1.0^git1", "1.01", -1),
        ("1.0^20160101", "1.0.1", -1), ("1.0^20160101^git1", "1.0^20160101", 1),
        ("1.0~rc1^git1", "1.0~rc1", 1), ("1.0^git1~pre", "1.0^git1", -1),
    ],
)
def test_rpmvercmp_matches_rpms_own_test_vectors(a: str, b: str, expected: int) -> None:
    assert rpmvercmp(a, b) == expected


def test_evr_comparison_epoch_first() -> None:
    assert compare_evr("1:1.0-1", "2.0-1") == 1
    assert compare_evr("2.0-2.el9", "2.0-10.el9") == -1
    assert compare_evr("2.0", "2.0-5") == 0


def test_auto_detection_prefers_apt_then_dnf_then_apk() -> None:
    assert backend_for(Context(runner=ReplayRunner(programs={"apt-get", "dpkg-query", "apk"})),
                       "auto").name == "apt"
    assert backend_for(Context(runner=ReplayRunner(programs={"dnf", "rpm"})),
                       "auto").name == "dnf"
    assert backend_for(Context(runner=ReplayRunner(programs={"apk"})), "auto").name == "apk"
    with pytest.raises(ProviderError, match="no supported package manager found"):
        backend_for(Context(runner=ReplayRunner()), "auto")
    with pytest.raises(ProviderError, match="package provider 'dnf' needs dnf, rpm"):
        backend_for(Context(runner=ReplayRunner(programs={"apt-get", "dpkg-query"})), "dnf")


DNF = FIXTURES / "dnf"


def replay_dnf(name: str) -> tuple[dict[str, Any], ReplayRunner]:
    """A transcript captured from real rpm and dnf, and a runner answering from it: each
    program's commands must come exactly as captured, in the captured order."""
    document: dict[str, Any] = json.loads((DNF / f"{name}.json").read_text())
    commands = document["commands"]
    runner = ReplayRunner(programs={"dnf", "rpm"}, responders=[
        Transcript([c for c in commands if c["argv"][0] == program], program=program)
        for program in ("rpm", "dnf")
    ])
    return document, runner


def captured_argvs(document: dict[str, Any]) -> list[tuple[str, ...]]:
    return [tuple(c["argv"]) for c in document["commands"]]


def dnf_provider(ctx: Context, name: str, ensure: str) -> PackageProvider:
    provider = make_provider(ctx, "package", name, ensure=ensure, provider="dnf")
    assert isinstance(provider, PackageProvider)
    return provider


def test_dnf_latest_upgrades_only_when_the_candidate_is_newer() -> None:
    document, runner = replay_dnf("latest")
    ctx = Context(runner=runner)
    providers = [dnf_provider(ctx, r["title"], r["ensure"]) for r in document["catalog"]]
    PackageProvider.prefetch(ctx, providers)
    hello, dep, local = providers
    changes = hello.check()
    assert changes == [Change("ensure", "1.0-1", "2.0-1",
                              "upgraded steward-hello from 1.0-1 to 2.0-1")]
    hello.sync(changes)
    assert dep.check() == []  # 2:1.0-1 installed and published: the epoch on both sides
    assert local.check() == []  # 1.1-1 installed, only 1.0-1 published: installed is newer
    assert [c.message for c in changes] == document["report"][0]["events"]
    assert runner.calls == captured_argvs(document)


def test_dnf_versions_match_with_or_without_release_and_epoch() -> None:
    backend = DnfBackend(Context(runner=ReplayRunner()))
    assert backend.version_matches("1:3.2.1-2.fc40", "3.2.1")
    assert backend.version_matches("1:3.2.1-2.fc40", "3.2.1-2.fc40")
    assert backend.version_matches("1:3.2.1-2.fc40", "1:3.2.1-2.fc40")
    assert not backend.version_matches("1:3.2.1-2.fc40", "2:3.2.1-2.fc40")
    assert not backend.version_matches("1:3.2.1-2.fc40", "3.2.1-3.fc40")


def test_dnf_removal_uses_rpm_which_refuses_dependents() -> None:
    document, runner = replay_dnf("remove_needed")
    provider = dnf_provider(Context(runner=runner), "steward-hello", "absent")
    changes = provider.check()
    assert changes == [Change("ensure", "2.0-1", "absent", "removed steward-hello 2.0-1")]
    with pytest.raises(ProviderError, match=r"removing steward-hello: 'rpm -e --allmatches "
                       r"steward-hello' exited 1: .*steward-hello is needed by \(installed\) "
                       r"steward-dep-2:1\.0-1\.noarch$") as failure:
        provider.sync(changes)
    assert str(failure.value) == document["report"][0]["message"]
    assert runner.calls == captured_argvs(document)


def test_dnf_install_only_versions_side_by_side_all_count() -> None:
    document, runner = replay_dnf("install_only")
    provider = dnf_provider(Context(runner=runner), "steward-kernel", "1.0")
    changes = provider.check()
    assert changes == [Change("ensure", "2.0-1", "1.0", "installed steward-kernel 1.0 (was 2.0-1)")]
    provider.sync(changes)  # dnf kept 2.0-1: 1.0-1 beside it is what was asked for
    state = provider.backend.state("steward-kernel")
    assert state == PackageState("2.0-1", versions=("1.0-1", "2.0-1"))
    assert state.display() == "1.0-1, 2.0-1"
    assert provider.check() == []
    assert runner.calls == captured_argvs(document)


def test_dnf_reason_for_a_missing_version_is_reported() -> None:
    document, runner = replay_dnf("version_missing")
    provider = dnf_provider(Context(runner=runner), "steward-hello", "9.9")
    changes = provider.check()
    assert changes == [Change("ensure", "absent", "9.9", "installed steward-hello 9.9")]
    with pytest.raises(ProviderError) as failure:
        provider.sync(changes)
    assert str(failure.value) == document["report"][0]["message"]
    assert "Unable to find a match: steward-hello-9.9" in str(failure.value)
    assert runner.calls == captured_argvs(document)


def test_apk_listing_candidates_and_install() -> None:
    listing = "busybox-1.36.1-r15\nmusl-1.2.4_git20230717-r4\nsteward-hello-1.0-r0\n"
    runner = ReplayRunner(
        programs={"apk"},
        responses={
            ("apk", "info", "-v"): (0, listing, ""),
            ("apk", "search", "--exact", "steward-hello"): (0, "steward-hello-2.0-r0\n", ""),
            ("apk", "add", "--no-progress", "--upgrade", "steward-hello"): (0, "", ""),
        },
    )
    ctx = Context(runner=runner)
    provider = make_provider(ctx, "package", "steward-hello", ensure="latest")
    musl = make_provider(ctx, "package", "musl", ensure="1.2.4_git20230717-r4")
    PackageProvider.prefetch(ctx, [provider, musl])
    assert musl.check() == []
    changes = provider.check()
    assert changes == [Change("ensure", "1.0-r0", "2.0-r0",
                              "upgraded steward-hello from 1.0-r0 to 2.0-r0")]
    runner.responses[("apk", "info", "-v")] = (0, listing.replace("1.0-r0", "2.0-r0"), "")
    provider.sync(changes)
    assert runner.calls.count(("apk", "info", "-v")) == 2


def test_a_manager_that_claims_success_without_effect_is_an_error() -> None:
    listing = ("dpkg-query", "-W", "-f", "${Package}\\t${Version}\\t${db:Status-Abbrev}\\n")
    install = ("apt-get", "-q", "-y", "-o", "Dpkg::Options::=--force-confdef", "-o",
               "Dpkg::Options::=--force-confold", "-o", "DPkg::Lock::Timeout=300", "install",
               "mail-transport-agent")
    runner = ReplayRunner(programs={"apt-get", "dpkg-query"},
                          responses={listing: (0, "exim4\t4.96-15\tii \n", ""),
                                     install: (0, "", "")})
    provider = make_provider(Context(runner=runner), "package", "mail-transport-agent")
    with pytest.raises(ProviderError, match="apt reported success but mail-transport-agent is "
                                            "absent instead of installed"):
        provider.sync(provider.check())


def test_latest_without_candidate_is_unresolved() -> None:
    ctx = Context(runner=ReplayRunner(
        programs={"apt-get", "dpkg-query"},
        responses={("dpkg-query", "-W", "-f", "${Package}\\t${Version}\\t"
                    "${db:Status-Abbrev}\\n"): (0, "", ""),
                   ("apt-cache", "policy", "nothere"): (0, "", "")}))
    with pytest.raises(Unresolved, match="package nothere has no installation candidate"):
        make_provider(ctx, "package", "nothere", ensure="latest").check()


def test_exec_guards_are_never_run_in_noop_unless_safe(tmp_path: Path) -> None:
    runner = ReplayRunner()  # any command would fail the test
    ctx = Context(runner=runner, noop=True)
    guarded = make_provider(ctx, "exec", "make", unless="test -f /x")
    with pytest.raises(Pending, match=r"^would run unless guards say otherwise: onlyif/unless "
                                      r"not evaluated in noop \(set noop_safe: true"):
        guarded.check()
    # creates is only a path check: evaluated in noop, and it wins over the guards.
    marker = tmp_path / "made"
    marker.write_text("")
    assert make_provider(ctx, "exec", "make", unless="false", creates=str(marker)).check() == []
    # Per-resource noop counts too.
    real_ctx = Context(runner=runner)
    with pytest.raises(Pending):
        make_provider(real_ctx, "exec", "make", onlyif="true", noop=True).check()
    assert runner.calls == []


def test_cron_lines_are_parsed_around_markers() -> None:
    lines = ["MAILTO=x", "# Steward: a", "PATH=/bin", "A = 1", "0  3 * * *   run  --it ",
             "# Steward: b", "@reboot  boot", "# Steward: c", "# commented out"]
    a, = find_entries(lines, "a")
    assert (a.start, a.end, a.environment, a.schedule, a.command) == (
        1, 5, ["PATH=/bin", "A = 1"], "0 3 * * *", "run  --it")
    b, = find_entries(lines, "b")
    assert (b.schedule, b.command) == ("@reboot", "boot")
    c, = find_entries(lines, "c")
    assert (c.start, c.end, c.schedule) == (7, 8, None)
    assert split_entry("*/5 1-3 * jan mon-fri cmd % with % input") == (
        "*/5 1-3 * jan mon-fri", "cmd % with % input")


def test_a_candidate_missing_at_prefetch_is_asked_for_again_once() -> None:
    """A resource earlier in the run (an exec adding a repository) may have made it appear."""
    listing = ("dpkg-query", "-W", "-f", "${Package}\\t${Version}\\t${db:Status-Abbrev}\\n")
    policy = ("apt-cache", "policy", "newpkg")
    runner = ReplayRunner(programs={"apt-get", "dpkg-query"},
                          responses={listing: (0, "", ""), policy: (0, "", "")})
    ctx = Context(runner=runner)
    provider = make_provider(ctx, "package", "newpkg", ensure="latest")
    PackageProvider.prefetch(ctx, [provider])
    runner.responses[policy] = (0, "newpkg:\n  Installed: (none)\n  Candidate: 3.1-2\n", "")
    assert provider.check() == [Change("ensure", "absent", "3.1-2", "installed newpkg 3.1-2")]
    assert runner.calls.count(policy) == 2
    assert provider.check() != []
    assert runner.calls.count(policy) == 2
