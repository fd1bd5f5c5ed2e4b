"""The package provider against real apt and dpkg, in a Debian root, with no network.

The root's sources are replaced by one flat repository of locally built packages:
steward-hello 1.0 and 2.0 (with a conffile, so absent and purged differ) and steward-dep,
which depends on steward-hello.
"""

from __future__ import annotations

import pytest

from tests.engine.providers.debian_root import ChrootSession
from tests.engine.providers.debs import build_deb, write_flat_repo
from tests.engine.providers.node import (
    EXIT_PENDING,
    Node,
    assert_noop_predicts,
    assert_unchanged,
    edge,
    resource,
)

pytestmark = pytest.mark.chroot

HELLO = "package[steward-hello]"
LISTING = ("dpkg-query", "-W", "-f")
#: Commands a noop run may issue: reads only.
READ_ONLY = {"dpkg-query", "apt-cache"}


@pytest.fixture(scope="module")
def repo(debian_root: ChrootSession) -> ChrootSession:
    """A local flat repository as the root's only apt source, and its lists fetched."""
    session = debian_root
    for version in ("1.0", "2.0"):
        build_deb(session, "/srv/repo", "steward-hello", version,
                  files={"/usr/share/steward-hello/VERSION": f"{version}\n",
                         "/etc/steward-hello.conf": f"greeting={version}\n"},
                  conffiles=["/etc/steward-hello.conf"])
    build_deb(session, "/srv/repo", "steward-dep", "1.0",
              files={"/usr/share/steward-dep/README": "needs steward-hello\n"},
              depends="steward-hello")
    write_flat_repo(session.path("/srv/repo"))
    session.sh(
        "mkdir -p /etc/apt/sources.disabled\n"
        "for f in /etc/apt/sources.list /etc/apt/sources.list.d/*; do\n"
        "  [ -e \"$f\" ] && mv \"$f\" /etc/apt/sources.disabled/\n"
        "done\n"
        "echo 'deb [trusted=yes] file:/srv/repo ./' > /etc/apt/sources.list.d/steward-local.list\n"
        "apt-get update -q -o Acquire::Languages=none >/dev/null\n"
    )
    return session


@pytest.fixture
def clean(repo: ChrootSession) -> ChrootSession:
    """No test package installed, not even its configuration files."""
    repo.run(["dpkg", "--purge", "steward-dep", "steward-hello"])
    return repo


def installed_version(session: ChrootSession, name: str) -> str | None:
    result = session.run(["dpkg-query", "-W", "-f", "${Version} ${db:Status-Abbrev}", name],
                         check=False)
    if result.returncode != 0:
        return None
    version, _, status = result.stdout.partition(" ")
    return version if status.startswith("ii") else f"{version} {status.strip()}"


def hello(ensure: str) -> dict[str, object]:
    return resource("package", "steward-hello", ensure=ensure)


def test_specific_version_is_predicted_installed_and_then_left_alone(
    node: Node, clean: ChrootSession
) -> None:
    noop = node.apply([hello("1.0")], noop=True)
    real = node.apply([hello("1.0")])
    assert_noop_predicts(noop, real)
    assert real.changes() == [(HELLO, "ensure", "absent", "1.0")]
    assert installed_version(clean, "steward-hello") == "1.0"
    assert clean.read("/usr/share/steward-hello/VERSION") == "1.0\n"
    assert_unchanged(node.apply([hello("1.0")]))


def test_latest_upgrades_to_the_candidate(node: Node, clean: ChrootSession) -> None:
    node.apply([hello("1.0")])
    noop = node.apply([hello("latest")], noop=True, record=True)
    real = node.apply([hello("latest")], record=True)
    assert_noop_predicts(noop, real)
    assert real.changes() == [(HELLO, "ensure", "1.0", "2.0")]
    assert real.events(HELLO)[0]["message"] == "upgraded steward-hello from 1.0 to 2.0"
    assert noop.calls_of("apt-cache", "policy") == [["apt-cache", "policy", "steward-hello"]]
    assert installed_version(clean, "steward-hello") == "2.0"
    assert_unchanged(node.apply([hello("latest")]))


def test_installed_and_present_accept_any_version(node: Node, clean: ChrootSession) -> None:
    node.apply([hello("1.0")])
    assert_unchanged(node.apply([hello("installed")]))
    assert_unchanged(node.apply([hello("present")]))
    assert installed_version(clean, "steward-hello") == "1.0"


def test_installed_when_missing_installs_the_candidate(node: Node, clean: ChrootSession) -> None:
    noop = node.apply([hello("installed")], noop=True)
    real = node.apply([hello("installed")])
    assert_noop_predicts(noop, real)
    assert real.changes() == [(HELLO, "ensure", "absent", "installed")]
    assert installed_version(clean, "steward-hello") == "2.0"


def test_a_specific_older_version_downgrades(node: Node, clean: ChrootSession) -> None:
    node.apply([hello("2.0")])
    noop = node.apply([hello("1.0")], noop=True)
    real = node.apply([hello("1.0")])
    assert_noop_predicts(noop, real)
    assert real.changes() == [(HELLO, "ensure", "2.0", "1.0")]
    assert installed_version(clean, "steward-hello") == "1.0"


def test_absent_keeps_configuration_and_purged_removes_it(
    node: Node, clean: ChrootSession
) -> None:
    node.apply([hello("2.0")])
    noop = node.apply([hello("absent")], noop=True)
    real = node.apply([hello("absent")])
    assert_noop_predicts(noop, real)
    assert real.changes() == [(HELLO, "ensure", "2.0", "absent")]
    assert installed_version(clean, "steward-hello") == "2.0 rc"
    assert clean.path("/etc/steward-hello.conf").exists()
    assert not clean.path("/usr/share/steward-hello/VERSION").exists()
    assert_unchanged(node.apply([hello("absent")]))

    noop = node.apply([hello("purged")], noop=True)
    real = node.apply([hello("purged")])
    assert_noop_predicts(noop, real)
    assert real.changes() == [(HELLO, "ensure", "absent", "purged")]
    assert real.events(HELLO)[0]["message"] == "purged configuration of steward-hello"
    assert installed_version(clean, "steward-hello") is None
    assert not clean.path("/etc/steward-hello.conf").exists()
    assert_unchanged(node.apply([hello("purged")]))


def test_purged_removes_an_installed_package_at_once(node: Node, clean: ChrootSession) -> None:
    node.apply([hello("1.0")])
    real = node.apply([hello("purged")])
    assert real.changes() == [(HELLO, "ensure", "1.0", "purged")]
    assert installed_version(clean, "steward-hello") is None


def test_installed_list_is_read_once_per_run(node: Node, clean: ChrootSession) -> None:
    catalog = [
        hello("latest"),
        resource("package", "steward-dep"),
        resource("package", "apt"),
        resource("package", "dpkg", ensure="installed"),
        resource("package", "steward-not-there", ensure="absent"),
        resource("package", "base-files", ensure="present"),
    ]
    noop = node.apply(catalog, noop=True, record=True)
    assert noop.calls_of(*LISTING) == [[*LISTING, "${Package}\\t${Version}\\t"
                                        "${db:Status-Abbrev}\\n"]]
    assert noop.calls_of("apt-cache") == [["apt-cache", "policy", "steward-hello"]]
    assert {c[0] for c in noop.calls} <= READ_ONLY, noop.calls

    real = node.apply(catalog, record=True)
    assert real.statuses()["package[steward-dep]"] == "changed"
    # One listing to start with, and one after each of the two installs.
    assert len(real.calls_of(*LISTING)) == 3
    assert len(real.calls_of("apt-get")) == 2

    again = node.apply(catalog, record=True)
    assert_unchanged(again)
    assert len(again.calls_of(*LISTING)) == 1


def test_drift_is_corrected_and_reported_as_corrective(node: Node, clean: ChrootSession) -> None:
    node.apply([hello("2.0")])
    clean.run(["dpkg", "--remove", "steward-hello"])  # behind the engine's back
    run = node.apply([hello("2.0")])
    assert run.changes() == [(HELLO, "ensure", "absent", "2.0")]
    assert run.resource(HELLO)["corrective_change"] is True
    assert installed_version(clean, "steward-hello") == "2.0"


def test_removal_never_takes_dependent_packages_along(node: Node, clean: ChrootSession) -> None:
    node.apply([resource("package", "steward-dep")])
    assert installed_version(clean, "steward-hello") == "2.0"
    run = node.apply([hello("absent")])
    assert run.status(HELLO) == "failed"
    message = run.resource(HELLO)["message"]
    assert "'dpkg --dry-run --remove steward-hello' exited 1" in message
    assert "steward-dep depends on steward-hello" in message
    assert installed_version(clean, "steward-hello") == "2.0"
    assert installed_version(clean, "steward-dep") == "1.0"


def test_an_unavailable_version_fails_with_apts_reason(node: Node, clean: ChrootSession) -> None:
    run = node.apply([hello("9.9")])
    assert run.status(HELLO) == "failed"
    message = run.resource(HELLO)["message"]
    assert "apt-get" in message
    assert "Version '9.9' for 'steward-hello' was not found" in message


def test_latest_without_candidate_is_pending_behind_a_pending_dependency(
    node: Node, clean: ChrootSession
) -> None:
    missing = resource("package", "steward-missing", ensure="latest")
    alone = node.apply([missing])
    assert alone.status("package[steward-missing]") == "failed"
    assert "no installation candidate" in alone.resource("package[steward-missing]")["message"]

    # A command that would add the repository first: in noop the package is pending.
    add_repo = resource("exec", "add-repository", command="/bin/true")
    noop = node.apply([add_repo, missing], [edge("exec[add-repository]",
                                                 "package[steward-missing]")], noop=True)
    assert noop.code & EXIT_PENDING
    assert noop.status("package[steward-missing]") == "pending"
    assert "exec[add-repository]" in noop.resource("package[steward-missing]")["message"]
