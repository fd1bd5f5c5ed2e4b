"""Provider logic that needs no root: parsers on real output, and the backends this Debian
machine cannot run for real (dnf/rpm, apk), driven through ReplayRunner.

The dnf and apk transcripts below follow those tools' documented output formats (rpm's
``--qf`` as the provider asks for it, ``apk info -v``/``apk search``); unlike the apt and
systemctl fixtures they were not captured on a real system.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from steward.engine.context import Context
from steward.engine.provider import Change, Pending, ProviderError, Unresolved
from steward.engine.providers.cron import find_entries, split_entry
from steward.engine.providers.package import (
    DnfBackend,
    PackageProvider,
    PackageState,
    backend_for,
    compare_evr,
    parse_apt_policy,
    parse_dpkg_query,
    rpmvercmp,
)
from steward.engine.testing import ReplayRunner
from tests.engine.system.replay import FIXTURES, make_provider

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


RPM_QA = ("rpm", "-qa", "--qf",
          "%{NAME}\\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\\t%{ARCH}\\n")


def dnf_runner(installed: str, candidates: str, names: tuple[str, ...]) -> ReplayRunner:
    return ReplayRunner(
        programs={"dnf", "rpm"},
        responses={
            RPM_QA: (0, installed, ""),
            ("dnf", "-q", "repoquery", "--latest-limit=1", "--queryformat",
             "%{name}\\t%{evr}\\n", *names): (0, candidates, ""),
        },
    )


def test_dnf_latest_upgrades_only_when_the_candidate_is_newer() -> None:
    installed = ("bash\t5.2.26-3.fc40\tx86_64\nopenssl\t1:3.2.1-2.fc40\tx86_64\n"
                 "tzdata\t2024a-5.fc40\tnoarch\n")
    candidates = "bash\t5.2.26-3.fc40\nopenssl\t1:3.2.2-3.fc40\ntzdata\t2023c-1.fc40\n"
    runner = dnf_runner(installed, candidates, ("bash", "openssl", "tzdata"))
    ctx = Context(runner=runner)
    providers = [make_provider(ctx, "package", n, ensure="latest")
                 for n in ("openssl", "bash", "tzdata")]
    PackageProvider.prefetch(ctx, providers)
    openssl, bash, tzdata = providers
    assert openssl.check() == [Change("ensure", "1:3.2.1-2.fc40", "1:3.2.2-3.fc40",
                                      "upgraded openssl from 1:3.2.1-2.fc40 to 1:3.2.2-3.fc40")]
    assert bash.check() == []
    assert tzdata.check() == []  # the installed one is newer than the repository's

    runner.responses[("dnf", "-y", "-q", "upgrade", "openssl")] = (0, "", "")
    upgraded = installed.replace("1:3.2.1-2.fc40", "1:3.2.2-3.fc40")
    runner.responses[RPM_QA] = (0, upgraded, "")
    openssl.sync(openssl.check())
    assert runner.calls[-2:] == [("dnf", "-y", "-q", "upgrade", "openssl"), RPM_QA]


def test_dnf_versions_match_with_or_without_release_and_epoch() -> None:
    backend = DnfBackend(Context(runner=ReplayRunner()))
    assert backend.version_matches("1:3.2.1-2.fc40", "3.2.1")
    assert backend.version_matches("1:3.2.1-2.fc40", "3.2.1-2.fc40")
    assert backend.version_matches("1:3.2.1-2.fc40", "1:3.2.1-2.fc40")
    assert not backend.version_matches("1:3.2.1-2.fc40", "2:3.2.1-2.fc40")
    assert not backend.version_matches("1:3.2.1-2.fc40", "3.2.1-3.fc40")


def test_dnf_removal_uses_rpm_which_refuses_dependents() -> None:
    runner = dnf_runner("httpd\t2.4.58-1.fc40\tx86_64\n", "", ())
    err = "error: Failed dependencies:\n\thttpd is needed by (installed) mod_ssl-1:2.4.58-1\n"
    runner.responses[("rpm", "-e", "--allmatches", "httpd")] = (1, "", err)
    ctx = Context(runner=runner)
    provider = make_provider(ctx, "package", "httpd", ensure="absent")
    changes = provider.check()
    assert changes == [Change("ensure", "2.4.58-1.fc40", "absent", "removed httpd 2.4.58-1.fc40")]
    with pytest.raises(ProviderError, match=r"removing httpd: 'rpm -e --allmatches httpd' "
                                            r"exited 1: .*httpd is needed by"):
        provider.sync(changes)


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
