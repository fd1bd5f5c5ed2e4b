"""``steward init``: the data directory, its TLS material, and clean errors for mistakes."""

from __future__ import annotations

import ipaddress
import json
import socket
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from steward.server.config import init_data_dir, load_config
from steward.server.errors import ConfigError
from tests.e2e.harness import steward, steward_env, write_repo


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    data = tmp_path_factory.mktemp("init") / "data"
    proc = steward("init", "--data-dir", str(data), "--san", "steward.example.net")
    assert proc.returncode == 0, proc.stderr
    return data, proc.stdout


def test_init_lays_out_the_data_directory(initialised: tuple[Path, str]) -> None:
    data, out = initialised
    for name in ("config.json", "tls/ca.crt", "tls/server.crt", "repo/classification.yaml",
                 "secrets.key", "steward.db", "admin.token"):
        assert (data / name).exists(), name
    for private in ("tls/ca.key", "tls/server.key", "secrets.key", "admin.token"):
        assert (data / private).stat().st_mode & 0o777 == 0o600, private
    assert data.stat().st_mode & 0o777 == 0o700
    config = load_config(data)
    assert config.database_url == f"sqlite:///{data / 'steward.db'}"
    assert config.repo_path == data / "repo"
    token = (data / "admin.token").read_text().strip()
    assert token.startswith("stwa_")
    # Shown once on stdout; never in the config.
    assert token in out
    assert token not in (data / "config.json").read_text()


def test_the_server_certificate_names_this_machine(initialised: tuple[Path, str]) -> None:
    data, _ = initialised
    cert = x509.load_pem_x509_certificate((data / "tls/server.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = set(sans.get_values_for_type(x509.DNSName))
    ips = set(sans.get_values_for_type(x509.IPAddress))
    assert {"localhost", socket.gethostname(), "steward.example.net"} <= dns
    assert ipaddress.ip_address("127.0.0.1") in ips
    # It verifies against the CA under strict (RFC 5280 / CA-Browser Forum) path validation.
    ca = x509.load_pem_x509_certificate((data / "tls/ca.crt").read_bytes())
    for name in (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))):
        verifier = PolicyBuilder().store(Store([ca])).build_server_verifier(name)
        assert verifier.verify(cert, [])[-1] == ca


def test_init_refuses_an_initialised_directory(initialised: tuple[Path, str]) -> None:
    data, _ = initialised
    proc = steward("init", "--data-dir", str(data))
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"steward: error: {data} is already initialised " \
                                  "(it has config.json)"


def test_user_errors_are_one_line(tmp_path: Path) -> None:
    not_init = steward("server", "--data-dir", str(tmp_path / "nothing"))
    assert not_init.returncode == 1
    assert "run 'steward init --data-dir" in not_init.stderr
    assert "Traceback" not in not_init.stderr
    query = steward("query", "nodes {}", "--data-dir", str(tmp_path / "nothing"),
                    env=steward_env())
    assert query.returncode == 1
    assert "no server given" in query.stderr
    assert "Traceback" not in query.stderr


def test_init_explains_bad_databases_and_repositories(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unsupported database 'mysql'"):
        init_data_dir(tmp_path / "d", database_url="mysql://u@h/db")
    with pytest.raises(ConfigError) as unreachable:
        init_data_dir(tmp_path / "e", database_url="postgresql://nobody:pw@127.0.0.1:1/none")
    message = str(unreachable.value)
    assert message.startswith("cannot set up the database "
                              "postgresql+psycopg://nobody:***@127.0.0.1:1/none: ")
    assert "Connection refused" in message
    assert "pw@" not in message
    # Nothing but the (empty) directory was written: init can simply be run again.
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == []
    with pytest.raises(ConfigError, match="is not a desired-state repository"):
        init_data_dir(tmp_path / "f", repo=tmp_path)


def test_init_with_a_repository_in_place(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo")
    proc = steward("init", "--data-dir", str(tmp_path / "data"), "--repo", str(repo),
                   "--no-save-token")
    assert proc.returncode == 0, proc.stderr
    document = json.loads((tmp_path / "data" / "config.json").read_text())
    assert document["repo"] == str(repo)
    assert not (tmp_path / "data" / "admin.token").exists()
    assert not (tmp_path / "data" / "repo").exists()


def test_load_config_explains_a_damaged_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{nope")
    with pytest.raises(ConfigError, match=r"config\.json:1:2: not valid JSON"):
        load_config(tmp_path)
