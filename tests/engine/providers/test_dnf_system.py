"""The package provider against real dnf and rpm, in a Debian root, with no network.

The root is the cached rpm variant of the Debian test root (``rpm_root.py``: Debian's own
rpm 4.18, dnf 4.14 and createrepo_c, one system rpm database). dnf sees one local repository
of packages built here with rpmbuild (``rpms.py``): steward-hello 1.0-1 and 2.0-1 (with a
``%config(noreplace)`` file), steward-dep 2:1.0-1 (an epoch; requires steward-hello),
steward-local 1.0-1 (1.1-1 is only installed from its file) and steward-kernel 1.0-1 and
2.0-1 (install-only, as kernels are). The engine runs as on a node (``python3 -m steward
apply``) with ``provider: dnf``, since the root also has apt, which auto-detection would
prefer; one test hides apt-get to check that auto-detection then finds dnf.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.engine.providers.debian_root import ChrootSession, private_root
from tests.engine.providers.node import (
    Node,
    Run,
    assert_noop_predicts,
    assert_unchanged,
    resource,
)
from tests.engine.providers.rpm_root import unpack_rpm_root
from tests.engine.providers.rpms import (
    FIXTURES,
    Packages,
    build_packages,
    capture,
    configure_dnf,
    installed_rpms,
    publish,
    remove_packages,
)

pytestmark = pytest.mark.chroot

HELLO = "package[steward-hello]"
DEP = "package[steward-dep]"
RPM_QA = ["rpm", "-qa", "--qf",
          "%{NAME}\\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\\t%{ARCH}\\n"]
REPOQUERY = ["dnf", "-q", "repoquery", "--latest-limit=1", "--queryformat",
             "%{name}\\t%{evr}\\n"]
CONF = "/etc/steward-hello.conf"


@pytest.fixture(scope="module")
def rpm_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChrootSession]:
    """A private copy of the cached rpm root; deleted after the module."""
    yield from private_root(tmp_path_factory, "rpm", unpack_rpm_root)


@pytest.fixture(scope="module")
def packages(rpm_root: ChrootSession) -> Packages:
    configure_dnf(rpm_root)
    return build_packages(rpm_root)


@pytest.fixture(scope="module")
def node(rpm_root: ChrootSession, packages: Packages) -> Node:
    return Node(rpm_root)


@pytest.fixture
def clean(rpm_root: ChrootSession, packages: Packages) -> ChrootSession:
    """No test package installed, no leftover configuration, the usual packages published."""
    remove_packages(rpm_root, packages.names)
    for leftover in (CONF, f"{CONF}.rpmsave", f"{CONF}.rpmnew"):
        rpm_root.path(leftover).unlink(missing_ok=True)
    publish(rpm_root, [packages.hello_1, packages.hello_2, packages.dep, packages.local_1,
                       packages.kernel_1, packages.kernel_2])
    return rpm_root


def hello(ensure: str, **parameters: Any) -> dict[str, Any]:
    return resource("package", "steward-hello", ensure=ensure, provider="dnf", **parameters)


def package(name: str, ensure: str) -> dict[str, Any]:
    return resource("package", name, ensure=ensure, provider="dnf")


def installed(session: ChrootSession, name: str) -> str | None:
    return installed_rpms(session).get(name)


def installed_versions(session: ChrootSession, name: str) -> list[str]:
    """Every installed version of ``name``, as rpm lists them (install-only: several)."""
    result = session.run(["rpm", "-q", "--qf", "%{VERSION}-%{RELEASE}\\n", name], check=False)
    return result.stdout.split() if result.returncode == 0 else []


def assert_read_only(run: Run) -> None:
    """A noop run lists packages and asks for candidates; nothing else."""
    for call in run.calls:
        assert call == RPM_QA or call[:len(REPOQUERY)] == REPOQUERY, call


def test_specific_version_is_predicted_installed_and_then_left_alone(
    node: Node, clean: ChrootSession
) -> None:
    noop = node.apply([hello("1.0")], noop=True, record=True)
    real = node.apply([hello("1.0")], record=True)
    assert_noop_predicts(noop, real)
    assert_read_only(noop)
    assert real.changes() == [(HELLO, "ensure", "absent", "1.0")]
    assert real.events(HELLO)[0]["message"] == "installed steward-hello 1.0"
    assert real.calls_of("dnf", "-y") == [["dnf", "-y", "-q", "install", "steward-hello-1.0"]]
    assert installed(clean, "steward-hello") == "1.0-1"
    assert clean.read("/usr/share/steward-hello/VERSION") == "1.0\n"
    assert clean.read(CONF) == "greeting=1.0\n"
    assert_unchanged(node.apply([hello("1.0")]))
    assert_unchanged(node.apply([hello("1.0-1")]))


def test_latest_upgrades_once_a_newer_version_is_published(
    node: Node, clean: ChrootSession, packages: Packages
) -> None:
    publish(clean, [packages.hello_1, packages.dep])
    noop = node.apply([hello("latest")], noop=True)
    real = node.apply([hello("latest")])
    assert_noop_predicts(noop, real)
    assert real.changes() == [(HELLO, "ensure", "absent", "1.0-1")]
    assert real.events(HELLO)[0]["message"] == "installed steward-hello 1.0-1"
    assert_unchanged(node.apply([hello("latest")]))

    publish(clean, [packages.hello_1, packages.hello_2, packages.dep])
    noop = node.apply([hello("latest")], noop=True, record=True)
    real = node.apply([hello("latest")], record=True)
    assert_noop_predicts(noop, real)
    assert_read_only(noop)
    assert real.changes() == [(HELLO, "ensure", "1.0-1", "2.0-1")]
    assert real.events(HELLO)[0]["message"] == "upgraded steward-hello from 1.0-1 to 2.0-1"
    assert noop.calls_of("dnf") == [[*REPOQUERY, "steward-hello"]]
    assert real.calls_of("dnf", "-y") == [["dnf", "-y", "-q", "upgrade", "steward-hello"]]
    assert installed(clean, "steward-hello") == "2.0-1"
    assert clean.read("/usr/share/steward-hello/VERSION") == "2.0\n"
    assert_unchanged(node.apply([hello("latest")]))


def test_latest_keeps_an_installed_version_newer_than_the_repositorys(
    node: Node, clean: ChrootSession, packages: Packages
) -> None:
    clean.run(["dnf", "-y", "-q", "install", packages.local_2.path])
    assert installed(clean, "steward-local") == "1.1-1"
    assert_unchanged(node.apply([package("steward-local", "latest")]))
    assert installed(clean, "steward-local") == "1.1-1"


def test_installed_and_present_accept_any_version(node: Node, clean: ChrootSession) -> None:
    node.apply([hello("1.0")])
    assert_unchanged(node.apply([hello("installed")]))
    assert_unchanged(node.apply([hello("present")]))
    assert installed(clean, "steward-hello") == "1.0-1"


def test_installed_when_missing_installs_the_candidate(node: Node, clean: ChrootSession) -> None:
    noop = node.apply([hello("installed")], noop=True)
    real = node.apply([hello("installed")])
    assert_noop_predicts(noop, real)
    assert real.changes() == [(HELLO, "ensure", "absent", "installed")]
    assert installed(clean, "steward-hello") == "2.0-1"


def test_a_specific_older_version_downgrades(node: Node, clean: ChrootSession) -> None:
    node.apply([hello("2.0")])
    assert installed(clean, "steward-hello") == "2.0-1"
    noop = node.apply([hello("1.0-1")], noop=True)
    real = node.apply([hello("1.0-1")])
    assert_noop_predicts(noop, real)
    assert real.changes() == [(HELLO, "ensure", "2.0-1", "1.0-1")]
    assert real.events(HELLO)[0]["message"] == "installed steward-hello 1.0-1 (was 2.0-1)"
    assert installed(clean, "steward-hello") == "1.0-1"
    assert clean.read("/usr/share/steward-hello/VERSION") == "1.0\n"


def test_an_epoch_matches_whether_or_not_the_catalog_names_it(
    node: Node, clean: ChrootSession
) -> None:
    noop = node.apply([package("steward-dep", "2:1.0-1")], noop=True)
    real = node.apply([package("steward-dep", "2:1.0-1")])
    assert_noop_predicts(noop, real)
    assert real.changes() == [(DEP, "ensure", "absent", "2:1.0-1")]
    assert installed(clean, "steward-dep") == "2:1.0-1"
    assert installed(clean, "steward-hello") == "2.0-1"  # pulled in as a dependency
    for ensure in ("1.0", "1.0-1", "2:1.0-1", "2:1.0", "installed", "latest"):
        assert_unchanged(node.apply([package("steward-dep", ensure)]))
    other = node.apply([package("steward-dep", "1:1.0-1")], noop=True)
    assert other.changes() == [(DEP, "ensure", "2:1.0-1", "1:1.0-1")]


def test_absent_removes_the_package_and_rpm_saves_a_modified_config(
    node: Node, clean: ChrootSession
) -> None:
    node.apply([hello("2.0")])
    clean.write(CONF, "greeting=edited\n")
    noop = node.apply([hello("absent")], noop=True, record=True)
    real = node.apply([hello("absent")], record=True)
    assert_noop_predicts(noop, real)
    assert_read_only(noop)
    assert real.changes() == [(HELLO, "ensure", "2.0-1", "absent")]
    assert real.events(HELLO)[0]["message"] == "removed steward-hello 2.0-1"
    assert real.calls_of("rpm", "-e") == [["rpm", "-e", "--allmatches", "steward-hello"]]
    assert installed(clean, "steward-hello") is None
    assert not clean.path("/usr/share/steward-hello").exists()
    # rpm's own rule for a modified %config file: kept beside, as .rpmsave.
    assert not clean.path(CONF).exists()
    assert clean.read(f"{CONF}.rpmsave") == "greeting=edited\n"
    assert_unchanged(node.apply([hello("absent")]))
    # rpm has no "configuration files left" state: purged is absent, already reached.
    assert_unchanged(node.apply([hello("purged")]))


def test_purged_removes_an_installed_package_as_absent_does(
    node: Node, clean: ChrootSession
) -> None:
    node.apply([hello("1.0")])
    noop = node.apply([hello("purged")], noop=True)
    real = node.apply([hello("purged")], record=True)
    assert_noop_predicts(noop, real)
    assert real.changes() == [(HELLO, "ensure", "1.0-1", "purged")]
    assert real.events(HELLO)[0]["message"] == "purged steward-hello 1.0-1"
    assert real.calls_of("rpm", "-e") == [["rpm", "-e", "--allmatches", "steward-hello"]]
    assert installed(clean, "steward-hello") is None
    assert not clean.path(CONF).exists()  # not modified: removed with the package
    assert not clean.path(f"{CONF}.rpmsave").exists()
    assert_unchanged(node.apply([hello("purged")]))


def test_a_version_kept_beside_a_newer_one_counts_as_installed(
    node: Node, clean: ChrootSession
) -> None:
    """dnf installs an install-only package's versions side by side (as kernels are); an
    older version asked for is then installed next to the newer one, not instead of it."""
    kernel = "package[steward-kernel]"
    node.apply([package("steward-kernel", "latest")])
    assert installed_versions(clean, "steward-kernel") == ["2.0-1"]
    noop = node.apply([package("steward-kernel", "1.0")], noop=True)
    real = node.apply([package("steward-kernel", "1.0")])
    assert_noop_predicts(noop, real)
    assert real.changes() == [(kernel, "ensure", "2.0-1", "1.0")]
    assert sorted(installed_versions(clean, "steward-kernel")) == ["1.0-1", "2.0-1"]
    for ensure in ("1.0", "2.0-1", "installed", "latest"):
        assert_unchanged(node.apply([package("steward-kernel", ensure)]))

    noop = node.apply([package("steward-kernel", "absent")], noop=True)
    real = node.apply([package("steward-kernel", "absent")])
    assert_noop_predicts(noop, real)
    assert real.changes() == [(kernel, "ensure", "1.0-1, 2.0-1", "absent")]
    assert real.events(kernel)[0]["message"] == "removed steward-kernel 1.0-1, 2.0-1"
    assert installed_versions(clean, "steward-kernel") == []


def test_installed_list_is_read_once_per_run(node: Node, clean: ChrootSession) -> None:
    catalog = [
        hello("latest"),
        package("steward-dep", "installed"),
        package("steward-local", "1.0"),
        package("steward-not-there", "absent"),
        package("steward-also-not-there", "purged"),
    ]
    noop = node.apply(catalog, noop=True, record=True)
    assert noop.calls_of("rpm") == [RPM_QA]
    assert noop.calls_of("dnf") == [[*REPOQUERY, "steward-hello"]]
    assert_read_only(noop)

    real = node.apply(catalog, record=True)
    assert_noop_predicts(noop, real)
    assert real.statuses() == {HELLO: "changed", DEP: "changed",
                               "package[steward-local]": "changed",
                               "package[steward-not-there]": "unchanged",
                               "package[steward-also-not-there]": "unchanged"}
    # One listing to start with, and one after each of the three installs.
    assert real.calls_of("rpm") == [RPM_QA] * 4
    assert real.calls_of("dnf", "-y") == [
        ["dnf", "-y", "-q", "install", "steward-hello"],
        ["dnf", "-y", "-q", "install", "steward-dep"],
        ["dnf", "-y", "-q", "install", "steward-local-1.0"],
    ]
    assert len(real.calls_of(*REPOQUERY)) == 1

    again = node.apply(catalog, record=True)
    assert_unchanged(again)
    assert again.calls_of("rpm") == [RPM_QA]
    assert again.calls_of("dnf") == [[*REPOQUERY, "steward-hello"]]


def test_drift_is_corrected_and_reported_as_corrective(node: Node, clean: ChrootSession) -> None:
    node.apply([hello("2.0")])
    clean.run(["rpm", "-e", "steward-hello"])  # behind the engine's back
    run = node.apply([hello("2.0")])
    assert run.changes() == [(HELLO, "ensure", "absent", "2.0")]
    assert run.resource(HELLO)["corrective_change"] is True
    assert installed(clean, "steward-hello") == "2.0-1"
    assert_unchanged(node.apply([hello("2.0")]))


def test_removal_never_takes_dependent_packages_along(node: Node, clean: ChrootSession) -> None:
    node.apply([package("steward-dep", "installed")])
    assert installed(clean, "steward-hello") == "2.0-1"
    run = node.apply([hello("absent")])
    assert run.status(HELLO) == "failed"
    message = run.resource(HELLO)["message"]
    assert "'rpm -e --allmatches steward-hello' exited 1" in message
    assert "steward-hello is needed by (installed) steward-dep-2:1.0-1.noarch" in message
    assert installed(clean, "steward-hello") == "2.0-1"
    assert installed(clean, "steward-dep") == "2:1.0-1"


def test_an_unavailable_version_fails_with_dnfs_reason(node: Node, clean: ChrootSession) -> None:
    run = node.apply([hello("9.9")])
    assert run.status(HELLO) == "failed"
    message = run.resource(HELLO)["message"]
    assert "'dnf -y -q install steward-hello-9.9' exited 1" in message
    assert "Unable to find a match: steward-hello-9.9" in message
    assert installed(clean, "steward-hello") is None


def test_auto_detection_finds_dnf_when_apt_is_not_installed(
    node: Node, clean: ChrootSession
) -> None:
    apt_get = clean.path("/usr/bin/apt-get")
    hidden = clean.path("/usr/bin/apt-get.hidden-by-steward-tests")
    apt_get.rename(hidden)
    try:
        auto = resource("package", "steward-hello", ensure="1.0")
        real = node.apply([auto], record=True)
        assert real.changes() == [(HELLO, "ensure", "absent", "1.0")]
        assert real.calls_of("dpkg-query") == []
        assert real.calls_of("dnf", "-y") == [["dnf", "-y", "-q", "install",
                                               "steward-hello-1.0"]]
        assert installed(clean, "steward-hello") == "1.0-1"
        assert_unchanged(node.apply([auto]))
    finally:
        hidden.rename(apt_get)


def test_the_captured_transcripts_are_what_rpm_and_dnf_print_here(
    clean: ChrootSession, packages: Packages
) -> None:
    """The fixtures the unit tests replay (``fixtures/dnf``) still match the real tools:
    the same engine commands, exit codes and output. Re-capture with
    ``python -m tests.engine.providers.rpms --capture`` when this fails after an update."""
    captured = capture(clean, packages)
    stored = {path.stem: json.loads(path.read_text()) for path in FIXTURES.glob("*.json")}
    assert sorted(captured) == sorted(stored)
    for name, transcript in captured.items():
        assert transcript["commands"] == stored[name]["commands"], (
            name, transcript["captured_with"], stored[name]["captured_with"])
        assert transcript["report"] == stored[name]["report"], name
