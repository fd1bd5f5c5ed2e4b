"""Tiny RPM packages and a local dnf repository, so dnf tests never need the network.

Packages are built from a generated spec file with the root's own ``rpmbuild`` (noarch, no
build step: ``%install`` copies a staged tree), published with ``createrepo_c``, and dnf is
configured to see that repository and nothing else.

Run as a script to re-capture the dnf/rpm transcripts under ``fixtures/dnf/`` (needs root
and the rpm root of ``rpm_root.py``)::

    python -m tests.engine.providers.rpms --capture
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.engine.providers.debian_root import ChrootSession, remove_tree
from tests.engine.providers.rpm_root import installed_versions, unpack_rpm_root

TOPDIR = "/srv/rpmbuild"
REPO = "/srv/rpmrepo"
REPO_ID = "steward-local"
#: dnf cannot detect a release version on Debian (no package provides system-release);
#: the local repository does not use $releasever, but dnf warns on every call without it.
RELEASEVER = "9"
FIXTURES = Path(__file__).parent / "fixtures" / "dnf"

#: Close to Fedora's and RHEL's defaults, but explicit about where dnf looks, so nothing but
#: the local repository is ever consulted, and loud (skip_if_unavailable=False) if that
#: repository is broken.
DNF_CONF = """\
# Steward test root: written by tests/engine/providers/rpms.py
[main]
gpgcheck=True
installonly_limit=3
clean_requirements_on_remove=True
best=False
skip_if_unavailable=False
reposdir=/etc/yum.repos.d
cachedir=/var/cache/dnf
logdir=/var/log
install_weak_deps=False
"""

#: metadata_expire=0: dnf checks repomd.xml (a local file) rather than trusting its cache, so
#: a version published between two runs is seen by the next one, as after ``dnf makecache``
#: on a real system (``publish`` also expires the cache: see there why).
LOCAL_REPO = """\
[{repo_id}]
name=Steward test packages
baseurl=file://{path}
enabled=1
gpgcheck=0
repo_gpgcheck=0
metadata_expire=0
"""

_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/+-]+$")
_SAFE_WORD = re.compile(r"^[A-Za-z0-9._+-]+$")


@dataclass(frozen=True)
class Rpm:
    """One built package: its identity and where it is inside the root."""

    name: str
    version: str
    release: str
    epoch: int | None
    path: str

    @property
    def evr(self) -> str:
        """As ``rpm --qf '%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}'`` prints it."""
        prefix = f"{self.epoch}:" if self.epoch is not None else ""
        return f"{prefix}{self.version}-{self.release}"

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[1]


def _check_word(kind: str, value: str) -> None:
    if not _SAFE_WORD.match(value):
        raise ValueError(f"{kind} {value!r} would need quoting in a spec file")


def _check_path(value: str) -> None:
    if not _SAFE_PATH.match(value) or "/../" in value + "/":
        raise ValueError(f"path {value!r} would need quoting in a spec file")


def spec_text(
    name: str,
    version: str,
    release: str,
    epoch: int | None,
    staging: str,
    files: Iterable[str],
    config_files: Iterable[str],
    dirs: Iterable[str],
    requires: Iterable[str],
    provides: Iterable[str] = (),
) -> str:
    header = [f"Name: {name}"]
    if epoch is not None:
        header.append(f"Epoch: {epoch}")
    header += [
        f"Version: {version}",
        f"Release: {release}",
        f"Summary: Steward test package {name}",
        "License: Apache-2.0",
        "BuildArch: noarch",
        *(f"Requires: {r}" for r in requires),
        *(f"Provides: {p}" for p in provides),
    ]
    config = set(config_files)
    listed = [f"%dir {d}" for d in dirs]
    listed += [f"%config(noreplace) {f}" if f in config else f for f in files]
    return "\n".join([
        *header,
        "",
        "%description",
        f"Steward test package {name}, built by tests/engine/providers/rpms.py.",
        "",
        "%prep",
        "%build",
        "%install",
        f"cp -a {staging}/. %{{buildroot}}/",
        "",
        "%files",
        *listed,
        "",
    ])


def build_rpm(
    session: ChrootSession,
    name: str,
    version: str,
    release: str = "1",
    *,
    files: Mapping[str, str],
    config_files: Sequence[str] = (),
    dirs: Sequence[str] = (),
    requires: Sequence[str] = (),
    provides: Sequence[str] = (),
    epoch: int | None = None,
) -> Rpm:
    """Build ``name-version-release.noarch.rpm`` with the root's ``rpmbuild``.

    ``files`` maps absolute paths to their content; ``config_files`` (a subset) are marked
    ``%config(noreplace)``; ``dirs`` are directories the package owns (removed with it).
    ``requires`` and ``provides`` are dependency strings (``name`` or ``name >= 1.0``).
    """
    for kind, value in (("name", name), ("version", version), ("release", release)):
        _check_word(kind, value)
    for path in [*files, *dirs]:
        _check_path(path)
    unknown = set(config_files) - set(files)
    if unknown:
        raise ValueError(f"config files not among the files: {sorted(unknown)}")
    for dependency in [*requires, *provides]:
        if not re.fullmatch(r"[A-Za-z0-9._+()-]+(?: [<>=]{1,2} [A-Za-z0-9._:~^+-]+)?",
                            dependency):
            raise ValueError(f"dependency {dependency!r} would need quoting in a spec file")
    nvr = f"{name}-{version}-{release}"
    staging = f"{TOPDIR}/SOURCES/{nvr}"
    stage = session.path(staging)
    if stage.exists():
        remove_tree(stage)
    for path, content in files.items():
        session.write(f"{staging}{path}", content)
    spec = f"{TOPDIR}/SPECS/{nvr}.spec"
    session.write(spec, spec_text(name, version, release, epoch, staging, files, config_files,
                                  dirs, requires, provides))
    session.run(["rpmbuild", "--quiet", "--define", f"_topdir {TOPDIR}", "-bb", spec])
    built = f"{TOPDIR}/RPMS/noarch/{nvr}.noarch.rpm"
    query = session.run(["rpm", "-qp", "--qf", "%{NAME} %|EPOCH?{%{EPOCH}}:{-}| %{VERSION} "
                         "%{RELEASE} %{ARCH}", built]).stdout.split()
    expected = [name, str(epoch) if epoch is not None else "-", version, release, "noarch"]
    if query != expected:
        raise AssertionError(f"rpmbuild made {query}, not {expected}")
    return Rpm(name, version, release, epoch, built)


def publish(session: ChrootSession, rpms: Iterable[Rpm], repo: str = REPO) -> None:
    """Make the repository hold exactly ``rpms`` (earlier contents are dropped), indexed."""
    directory = session.path(repo)
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.rpm"):
        old.unlink()
    for rpm in rpms:
        (directory / rpm.filename).write_bytes(session.path(rpm.path).read_bytes())
    session.run(["createrepo_c", "--quiet", "--no-database", repo])
    # metadata_expire=0 alone is not enough: a cache dnf refreshed within the same second as
    # the publishing still counts as fresh (observed: about one query in five right after
    # publishing saw the old index). Marking the cache expired makes the next call reload.
    session.run(["dnf", "-q", "clean", "expire-cache"])


def configure_dnf(session: ChrootSession, repo: str = REPO) -> None:
    """dnf sees only the local repository; any other repository definition is moved out."""
    session.write("/etc/dnf/dnf.conf", DNF_CONF)
    session.write("/etc/dnf/vars/releasever", RELEASEVER + "\n")
    disabled = session.path("/etc/yum.repos.disabled")
    for directory in ("/etc/yum.repos.d", "/etc/distro.repos.d"):
        for definition in sorted(session.path(directory).glob("*.repo")):
            if definition.name != "local.repo":
                disabled.mkdir(exist_ok=True)
                definition.replace(disabled / definition.name)
    session.write("/etc/yum.repos.d/local.repo", LOCAL_REPO.format(repo_id=REPO_ID, path=repo))
    repos = session.run(["dnf", "-q", "repolist", "--enabled"]).stdout
    if REPO_ID not in repos or len([ln for ln in repos.splitlines()[1:] if ln.strip()]) != 1:
        raise AssertionError(f"dnf should see only {REPO_ID}:\n{repos}")


def installed_rpms(session: ChrootSession) -> dict[str, str]:
    """Name -> EVR of every package in the root's rpm database (rpm's own answer; for a
    package installed in several versions, the one rpm lists last)."""
    listing = session.run(["rpm", "-qa", "--qf",
                           "%{NAME} %|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\\n"]).stdout
    return dict(line.split(" ", 1) for line in listing.splitlines() if line)


def remove_packages(session: ChrootSession, names: Iterable[str]) -> None:
    """Remove whichever of ``names`` are installed, dependents or not (test set-up only)."""
    wanted = set(names)
    present = sorted(wanted & set(installed_rpms(session)))
    if present:
        session.run(["rpm", "-e", "--nodeps", "--allmatches", *present])
    left = wanted & set(installed_rpms(session))
    if left:
        raise AssertionError(f"still installed after rpm -e: {sorted(left)}")


def tool_versions(session: ChrootSession) -> dict[str, str]:
    """What printed the output: the tools' own words and the Debian package versions."""
    return {
        "rpm": session.run(["rpm", "--version"]).stdout.strip(),
        "dnf": session.run(["dnf", "--version"]).stdout.splitlines()[0].strip(),
        "debian_packages": ", ".join(f"{k} {v}" for k, v in
                                     sorted(installed_versions(session).items())),
    }


# --- capturing transcripts -----------------------------------------------------------------

#: Runs steward's node CLI with a runner that records every command the providers ran, with
#: its exit code and output, to $STEWARD_TRANSCRIPT (node.Node's recorder keeps only argv).
#: The runner class is replaced in its module, where the CLI looks it up when ``apply`` runs.
TRANSCRIBER = '''\
import json, os, sys
import steward.engine.runner as runner_module
from steward.engine import cli

COMMANDS = []


class TranscribingRunner(runner_module.SubprocessRunner):
    def run(self, argv, **kwargs):
        entry = {"argv": list(argv)}
        COMMANDS.append(entry)
        result = super().run(argv, **kwargs)
        entry.update(returncode=result.returncode, stdout=result.stdout, stderr=result.stderr)
        return result


runner_module.SubprocessRunner = TranscribingRunner
if hasattr(cli, "SubprocessRunner"):  # a CLI that imports it with the module
    cli.SubprocessRunner = TranscribingRunner
try:
    code = cli.main(sys.argv[1:])
finally:
    with open(os.environ["STEWARD_TRANSCRIPT"], "w") as handle:
        json.dump(COMMANDS, handle)
sys.exit(code)
'''
TRANSCRIBER_PATH = "/opt/steward/transcribe_apply.py"


def transcribe_apply(session: ChrootSession, resources: Sequence[Mapping[str, Any]]
                     ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run ``steward apply`` in the root (as node.Node does) and return the report and every
    command the providers ran, with its exit code and output."""
    session.install_steward()
    session.write(TRANSCRIBER_PATH, TRANSCRIBER)
    catalog = {"catalog_format": 1, "node": "node1.test", "environment": "test",
               "resources": [dict(r) for r in resources], "edges": []}
    session.write("/tmp/transcribe-catalog.json", json.dumps(catalog, indent=2))
    result = session.run(
        ["python3", TRANSCRIBER_PATH, "apply", "--catalog",
         "/tmp/transcribe-catalog.json"],
        env={"PYTHONPATH": "/opt/steward", "PYTHONDONTWRITEBYTECODE": "1",
             "STEWARD_TRANSCRIPT": "/tmp/transcript.json"},
        check=False,
    )
    try:
        report: dict[str, Any] = json.loads(result.stdout)
    except ValueError as exc:
        raise AssertionError(f"steward apply printed no report (exit {result.returncode}):\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}") from exc
    commands: list[dict[str, Any]] = json.loads(session.read("/tmp/transcript.json"))
    return report, commands


def _package(title: str, ensure: str) -> dict[str, Any]:
    return {"type": "package", "title": title, "parameters": {"ensure": ensure,
                                                               "provider": "dnf"},
            "tags": [], "file": "tests/engine/providers/rpms.py", "line": None}


@dataclass(frozen=True)
class Packages:
    """The test packages, as built (not yet published)."""

    hello_1: Rpm
    hello_2: Rpm
    dep: Rpm
    local_1: Rpm
    local_2: Rpm
    kernel_1: Rpm
    kernel_2: Rpm

    @property
    def names(self) -> tuple[str, ...]:
        return ("steward-dep", "steward-hello", "steward-kernel", "steward-local")


def build_packages(session: ChrootSession) -> Packages:
    """steward-hello 1.0-1 and 2.0-1 (a file, a %config(noreplace) file and a directory of
    its own), steward-dep 2:1.0-1 (an epoch; requires steward-hello) and steward-local 1.0-1
    and 1.1-1 (the tests publish only 1.0-1: 1.1-1 is installed from its file), and
    steward-kernel 1.0-1 and 2.0-1, install-only as kernels are: it provides
    ``installonlypkg(kernel)``, which is in dnf's default ``installonlypkgs``, so dnf keeps
    its versions side by side."""
    def hello(version: str) -> Rpm:
        return build_rpm(session, "steward-hello", version,
                         files={"/usr/share/steward-hello/VERSION": f"{version}\n",
                                "/etc/steward-hello.conf": f"greeting={version}\n"},
                         config_files=["/etc/steward-hello.conf"],
                         dirs=["/usr/share/steward-hello"])

    def local(version: str) -> Rpm:
        return build_rpm(session, "steward-local", version,
                         files={"/usr/share/steward-local/VERSION": f"{version}\n"},
                         dirs=["/usr/share/steward-local"])

    dep = build_rpm(session, "steward-dep", "1.0", epoch=2, requires=["steward-hello"],
                    files={"/usr/share/steward-dep/README": "needs steward-hello\n"},
                    dirs=["/usr/share/steward-dep"])
    def kernel(version: str) -> Rpm:
        return build_rpm(session, "steward-kernel", version,
                         files={f"/boot/steward-kernel-{version}": f"{version}\n"},
                         provides=["installonlypkg(kernel)"])

    return Packages(hello("1.0"), hello("2.0"), dep, local("1.0"), local("1.1"),
                    kernel("1.0"), kernel("2.0"))


def _dnf(session: ChrootSession, *args: str) -> None:
    session.run(["dnf", "-y", "-q", *args])


def capture(session: ChrootSession, packages: Packages) -> dict[str, dict[str, Any]]:
    """Drive the real engine through the scenarios the unit tests replay; return each
    transcript. Leaves no capture package installed."""
    p = packages
    publish(session, [p.hello_1, p.hello_2, p.dep, p.local_1, p.kernel_1, p.kernel_2])
    versions = tool_versions(session)
    captured: dict[str, dict[str, Any]] = {}

    def clean() -> None:
        remove_packages(session, p.names)

    def record(name: str, description: str, resources: list[dict[str, Any]]) -> None:
        report, commands = transcribe_apply(session, resources)
        captured[name] = {
            "description": description,
            "captured_with": versions,
            "catalog": [{"title": r["title"], **r["parameters"]} for r in resources],
            "report": [{"ref": r["ref"], "status": r["status"], "message": r.get("message"),
                        "events": [e["message"] for e in r["events"]]}
                       for r in report["resources"]],
            "commands": commands,
        }

    clean()
    _dnf(session, "install", f"steward-hello-{p.hello_1.version}", p.dep.name)
    _dnf(session, "install", p.local_2.path)
    record("latest",
           "ensure latest for three packages: steward-hello 1.0-1 installed, 2.0-1 published "
           "(upgraded); steward-dep 2:1.0-1 installed and published (unchanged; an epoch); "
           "steward-local 1.1-1 installed from a file, only 1.0-1 published (the installed "
           "one is newer: unchanged).",
           [_package("steward-hello", "latest"), _package("steward-dep", "latest"),
            _package("steward-local", "latest")])

    clean()
    _dnf(session, "install", p.dep.name)
    record("remove_needed",
           "ensure absent for steward-hello, which installed steward-dep needs: rpm -e "
           "refuses and names the dependent package.",
           [_package("steward-hello", "absent")])

    clean()
    _dnf(session, "install", p.kernel_2.name)
    record("install_only",
           "ensure 1.0 for steward-kernel (install-only, as kernels are) with 2.0-1 installed: "
           "dnf installs 1.0-1 beside 2.0-1, and rpm then lists both.",
           [_package("steward-kernel", p.kernel_1.version)])

    clean()
    record("version_missing",
           "a version the repository does not have: dnf's own error.",
           [_package("steward-hello", "9.9")])
    clean()
    return captured


def _capture_to_fixtures() -> int:
    work = Path(tempfile.mkdtemp(prefix="steward-rpm-capture-"))
    try:
        session = unpack_rpm_root(work / "root")
        configure_dnf(session)
        captured = capture(session, build_packages(session))
    finally:
        remove_tree(work)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for name, transcript in captured.items():
        path = FIXTURES / f"{name}.json"
        path.write_text(json.dumps(transcript, indent=2) + "\n", encoding="utf-8")
        sys.stderr.write(f"wrote {path}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--capture", action="store_true",
                        help=f"re-capture the transcripts in {FIXTURES}")
    args = parser.parse_args(argv)
    if not args.capture:
        parser.print_help()
        return 2
    return _capture_to_fixtures()


if __name__ == "__main__":
    sys.exit(main())
