"""Mount points from captured mount tables; package counts from real database formats."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from steward.facts import mounts
from steward.facts.mounts import mountpoint_facts, parse_mounts
from steward.facts.packages import collect_packages, count_apk, count_dpkg, package_facts
from tests.facts.conftest import MakeRoot, fixture_text


def test_parse_mounts_unescapes_paths() -> None:
    table = parse_mounts(fixture_text("mounts-server"))
    assert table[9][:3] == ("/dev/mapper/vg0-srv", "/srv/shared data", "xfs")
    assert table[4] == ("/dev/mapper/vg0-root", "/", "ext4", ["rw", "relatime",
                                                              "errors=remount-ro"])


def test_mountpoints_skip_pseudo_filesystems_and_keep_the_visible_mount() -> None:
    facts = mountpoint_facts(parse_mounts(fixture_text("mounts-debian12")))
    assert sorted(facts) == ["/", "/dev/shm", "/sys/fs/cgroup"]
    root = facts["/"]
    assert root["device"] == "/dev/vda"
    assert root["filesystem"] == "ext4"
    assert root["options"][:2] == ["rw", "relatime"]
    # "/" exists on every host, so statvfs answers: sizes are real and consistent.
    assert root["size_bytes"] > 0
    assert 0 <= root["available_bytes"] <= root["size_bytes"]
    assert 0 < root["used_bytes"] <= root["size_bytes"]


def test_mount_points_that_cannot_be_statted_have_no_sizes() -> None:
    facts = mountpoint_facts(parse_mounts(fixture_text("mounts-server")))
    assert set(facts) == {"/", "/run", "/boot", "/boot/efi", "/srv/shared data", "/home"}
    assert facts["/srv/shared data"] == {
        "device": "/dev/mapper/vg0-srv",
        "filesystem": "xfs",
        "options": ["rw", "relatime", "attr2", "inode64", "logbufs=8", "logbsize=32k",
                    "noquota"],
    }


def test_a_hanging_network_mount_is_reported_without_usage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = threading.Event()
    real_statvfs = os.statvfs

    def statvfs(path: str) -> os.statvfs_result:
        if path == "/home":
            release.wait(5)  # a dead NFS server
        return real_statvfs("/")

    monkeypatch.setattr(os, "statvfs", statvfs)
    monkeypatch.setattr(mounts, "NETWORK_STATVFS_TIMEOUT", 0.05)
    started = time.perf_counter()
    try:
        facts = mountpoint_facts(parse_mounts(fixture_text("mounts-server")))
    finally:
        release.set()
    assert time.perf_counter() - started < 2
    assert "size_bytes" not in facts["/home"]
    assert facts["/home"]["filesystem"] == "nfs4"
    assert "size_bytes" in facts["/boot"]


def test_dpkg_counts_installed_and_held_but_not_removed_or_unpacked() -> None:
    assert count_dpkg(fixture_text("dpkg-status").encode()) == 5


def test_apk_counts_package_entries() -> None:
    assert count_apk(fixture_text("apk-installed").encode()) == 3


def test_package_manager_is_detected_from_its_database(make_root: MakeRoot) -> None:
    root = make_root({"/var/lib/dpkg/status": fixture_text("dpkg-status")})
    assert package_facts(root) == {"manager": "dpkg", "count": 5}
    root = make_root({"/lib/apk/db/installed": fixture_text("apk-installed")})
    # the same tmp root now holds both; dpkg is checked first, as on a Debian host with apk
    assert package_facts(root) == {"manager": "dpkg", "count": 5}


def test_apk_and_pacman_roots(tmp_path: Path) -> None:
    alpine = tmp_path / "alpine"
    (alpine / "lib/apk/db").mkdir(parents=True)
    (alpine / "lib/apk/db/installed").write_text(fixture_text("apk-installed"))
    assert package_facts(str(alpine)) == {"manager": "apk", "count": 3}
    arch = tmp_path / "arch"
    for name in ("bash-5.2.026-2", "glibc-2.39-1", "pacman-6.1.0-3"):
        (arch / "var/lib/pacman/local" / name).mkdir(parents=True)
    (arch / "var/lib/pacman/local/ALPM_DB_VERSION").write_text("9\n")
    assert package_facts(str(arch)) == {"manager": "pacman", "count": 3}


def test_rpm_sqlite_database_is_read_without_rpm(tmp_path: Path) -> None:
    db = tmp_path / "var/lib/rpm/rpmdb.sqlite"
    db.parent.mkdir(parents=True)
    connection = sqlite3.connect(db)
    # rpm 4.16+'s schema for the main table.
    connection.execute(
        "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)"
    )
    connection.executemany("INSERT INTO Packages (blob) VALUES (?)", [(b"x",)] * 4)
    connection.commit()
    connection.close()
    assert package_facts(str(tmp_path)) == {"manager": "rpm", "count": 4}


def test_no_package_database_means_no_packages_fact(make_root: MakeRoot) -> None:
    assert collect_packages(make_root({"/etc/hostname": "x\n"})) == {}
