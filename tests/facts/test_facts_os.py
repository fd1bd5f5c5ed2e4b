"""os-release parsing and the ``os``/``kernel`` facts, against real os-release files."""

from __future__ import annotations

from typing import Any

import pytest

from steward.facts.osinfo import (
    collect_os,
    kernel_facts,
    os_facts,
    parse_os_release,
)
from tests.facts.conftest import MakeRoot, fixture_text


def _os(name: str, machine: str = "x86_64", debian_version: str | None = None) -> dict[str, Any]:
    release = parse_os_release(fixture_text(f"os-release/{name}"))
    return os_facts(release, machine=machine, debian_version=debian_version)


def test_debian_12_reports_the_point_release_from_debian_version() -> None:
    facts = _os("debian-12", debian_version="12.5")
    assert facts == {
        "family": "Debian",
        "name": "Debian",
        "release": {"full": "12.5", "major": "12", "minor": "5"},
        "codename": "bookworm",
        "architecture": "amd64",
        "hardware": "x86_64",
        "pretty_name": "Debian GNU/Linux 12 (bookworm)",
    }


def test_debian_without_debian_version_falls_back_to_version_id() -> None:
    facts = _os("debian-12", debian_version="trixie/sid")
    assert facts["release"] == {"full": "12", "major": "12"}


def test_ubuntu_major_release_is_year_and_month_as_in_facter() -> None:
    facts = _os("ubuntu-24.04", machine="aarch64")
    assert facts["family"] == "Debian"
    assert facts["name"] == "Ubuntu"
    assert facts["release"] == {"full": "24.04", "major": "24.04"}
    assert facts["codename"] == "noble"
    assert facts["architecture"] == "arm64"
    assert facts["hardware"] == "aarch64"


def test_rocky_is_redhat_family_with_codename_from_version() -> None:
    facts = _os("rocky-9")
    assert facts["family"] == "RedHat"
    assert facts["name"] == "Rocky"
    assert facts["release"] == {"full": "9.4", "major": "9", "minor": "4"}
    assert facts["codename"] == "Blue Onyx"
    assert facts["architecture"] == "x86_64"


def test_alpine_has_no_codename() -> None:
    facts = _os("alpine-3.20")
    assert facts["family"] == "Alpine"
    assert facts["name"] == "Alpine"
    assert facts["release"] == {"full": "3.20.0", "major": "3", "minor": "20"}
    assert "codename" not in facts
    assert facts["pretty_name"] == "Alpine Linux v3.20"


@pytest.mark.parametrize(
    ("text", "family", "name"),
    [
        ('ID="opensuse-leap"\nID_LIKE="suse opensuse"\nNAME="openSUSE Leap"\n', "Suse",
         "openSUSE"),
        ("ID=amzn\nID_LIKE=\"centos rhel fedora\"\nNAME=\"Amazon Linux\"\n", "RedHat", "Amazon"),
        ("ID=manjaro\nID_LIKE=arch\nNAME=\"Manjaro Linux\"\n", "Archlinux", "Manjaro Linux"),
        ("ID=nixos\nNAME=NixOS\n", "NixOS", "NixOS"),
    ],
)
def test_family_comes_from_id_then_id_like(text: str, family: str, name: str) -> None:
    facts = os_facts(parse_os_release(text), machine="x86_64")
    assert (facts["family"], facts["name"]) == (family, name)
    assert "release" not in facts


def test_parser_handles_quoting_comments_and_garbage() -> None:
    text = (
        "# a comment\n"
        "\n"
        "NAME='Single Quoted'\n"
        'PRETTY_NAME="With \\"escaped\\" quotes"\n'
        "BROKEN=\"unbalanced\n"
        "not a field\n"
        "ID=plain\n"
    )
    assert parse_os_release(text) == {
        "NAME": "Single Quoted",
        "PRETTY_NAME": 'With "escaped" quotes',
        "BROKEN": "unbalanced",
        "ID": "plain",
    }


def test_collect_os_falls_back_to_usr_lib_os_release(make_root: MakeRoot) -> None:
    root = make_root({"/usr/lib/os-release": fixture_text("os-release/rocky-9")})
    assert collect_os(root)["os"]["name"] == "Rocky"


def test_collect_os_reads_debian_version_below_root(make_root: MakeRoot) -> None:
    root = make_root(
        {
            "/etc/os-release": fixture_text("os-release/debian-12"),
            "/etc/debian_version": "12.7\n",
        }
    )
    assert collect_os(root)["os"]["release"]["full"] == "12.7"


def test_collect_os_without_any_os_release_raises(make_root: MakeRoot) -> None:
    root = make_root({"/etc/hostname": "x\n"})
    with pytest.raises(FileNotFoundError):
        collect_os(root)


def test_kernel_version_is_the_numeric_part_of_the_release() -> None:
    assert kernel_facts("Linux", "6.1.0-18-amd64") == {
        "name": "Linux",
        "release": "6.1.0-18-amd64",
        "version": "6.1.0",
        "major": "6.1",
    }
    assert kernel_facts("Linux", "5.14.0-427.13.1.el9_4.x86_64")["version"] == "5.14.0"
