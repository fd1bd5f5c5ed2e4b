"""``steward init``: the data directory, its TLS material, and clean errors for mistakes."""

from __future__ import annotations

import ipaddress
import json
import socket
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from steward.gitrepo import COMMITTER_NAME, DesiredStateRepo
from steward.server.config import load_config
from steward.server.errors import ConfigError
from steward.server.init import EXAMPLE_REPO, init_data_dir
from tests.e2e.harness import steward, steward_env, write_repo


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    data = tmp_path_factory.mktemp("init") / "data"
    proc = steward("init", "--data-dir", str(data), "--san", "steward.example.net")
    assert proc.returncode == 0, proc.stderr
    return data, proc.stdout


def test_init_lays_out_the_data_directory(initialised: tuple[Path, str]) -> None:
    data, out = initialised
    for name in ("config.json", "tls/ca.crt", "tls/server.crt", "desired.git/HEAD",
                 "desired.git/hooks/pre-receive", "secrets.key", "steward.db", "admin.token"):
        assert (data / name).exists(), name
    for private in ("tls/ca.key", "tls/server.key", "secrets.key", "admin.token"):
        assert (data / private).stat().st_mode & 0o777 == 0o600, private
    assert data.stat().st_mode & 0o777 == 0o700
    config = load_config(data)
    assert config.database_url == f"sqlite:///{data / 'steward.db'}"
    assert config.repo_path == data / "desired.git"
    assert config.repo_versioned
    assert config.environments == ("development", "staging", "production")
    assert not (data / "repo").exists()
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
                              "postgresql+psycopg://nobody:[redacted]@127.0.0.1:1/none: ")
    assert "Connection refused" in message
    assert "pw@" not in message
    # Nothing but the (empty) directory was written: init can simply be run again.
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == []
    with pytest.raises(ConfigError, match="is not a desired-state repository"):
        init_data_dir(tmp_path / "f", repo=tmp_path)


def test_init_makes_one_branch_per_environment_from_the_example(
    initialised: tuple[Path, str]
) -> None:
    data, out = initialised
    assert f"repository      {data / 'desired.git'} (git clone {data / 'desired.git'})" in out
    assert "environments    development, staging, production (one branch each)" in out
    repo = DesiredStateRepo(data / "desired.git")
    refs = repo.refs()
    assert refs.default == "production"  # examples/repo's default_environment
    assert sorted(refs.branches) == ["development", "production", "staging"]
    (commit,) = set(refs.branches.values())
    expected = sorted(p.relative_to(EXAMPLE_REPO).as_posix()
                      for p in EXAMPLE_REPO.rglob("*") if p.is_file())
    assert repo.list_files(commit) == expected
    entry = repo.log(commit)[0]
    assert entry["subject"] == "Initial desired state (from repo)"
    assert entry["author_name"] == entry["committer_name"] == COMMITTER_NAME
    assert repo.load(commit).settings.default_environment == "production"
    # No staging directory is left behind.
    assert sorted(p.name for p in data.iterdir() if p.name.startswith(".")) == []


def test_init_imports_a_repository_with_chosen_environments(tmp_path: Path) -> None:
    source = write_repo(tmp_path / "repo")
    before = sorted(p.relative_to(source).as_posix() for p in source.rglob("*"))
    proc = steward("init", "--data-dir", str(tmp_path / "data"), "--repo", str(source),
                   "--environment", "qa", "--environment", "production", "--no-save-token")
    assert proc.returncode == 0, proc.stderr
    document = json.loads((tmp_path / "data" / "config.json").read_text())
    assert document["repo"] == "desired.git"
    assert document["environments"] == ["qa", "production"]
    assert not (tmp_path / "data" / "admin.token").exists()
    config = load_config(tmp_path / "data")
    assert config.environments == ("qa", "production")
    repo = DesiredStateRepo(config.repo_path)
    assert sorted(repo.branches()) == ["production", "qa"]
    assert repo.read_file("qa", "profiles/app.yaml") == \
        (source / "profiles" / "app.yaml").read_bytes()
    # The source is read, never changed (no .git appears in it).
    assert sorted(p.relative_to(source).as_posix() for p in source.rglob("*")) == before


def test_init_unversioned_uses_the_repository_in_place(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo")
    proc = steward("init", "--data-dir", str(tmp_path / "data"), "--repo", str(repo),
                   "--unversioned", "--no-save-token")
    assert proc.returncode == 0, proc.stderr
    assert f"repository      {repo} (unversioned)" in proc.stdout
    document = json.loads((tmp_path / "data" / "config.json").read_text())
    assert document["repo"] == str(repo)
    config = load_config(tmp_path / "data")
    assert not config.repo_versioned
    assert not (tmp_path / "data" / "desired.git").exists()
    assert not (tmp_path / "data" / "repo").exists()


def test_init_refuses_environments_the_repository_cannot_use(tmp_path: Path) -> None:
    def refused(*args: str) -> str:
        data = tmp_path / f"data{len(list(tmp_path.iterdir()))}"
        proc = steward("init", "--data-dir", str(data), *args)
        assert proc.returncode != 0
        assert "Traceback" not in proc.stderr
        # Refused before anything was written.
        assert not data.exists() or list(data.iterdir()) == []
        return proc.stderr.strip()

    assert refused("--environment", "dev") == (
        f"steward: error: {EXAMPLE_REPO}/steward.yaml: default_environment 'production' is "
        "not one of the environments (dev); add it with --environment production")
    assert refused("--environment", "production") == (
        f"steward: error: {EXAMPLE_REPO}/classification.yaml:26: rule 'staging canary' places "
        "nodes in environment 'staging', which is not one of the environments (production); "
        "add it with --environment staging")
    assert "invalid environment name 'no way'" in refused("--environment", "no way")
    assert "environment 'qa' is listed twice" in refused(
        "--environment", "qa", "--environment", "qa", "--environment", "production")
    assert "'changes' is reserved" in refused("--environment", "changes/x")
    broken = write_repo(tmp_path / "broken")
    (broken / "roles" / "base.yaml").write_text("profiles:\n  missing: {}\n")
    message = refused("--repo", str(broken))
    assert message.startswith(f"steward: error: {broken} is not a valid desired-state "
                              "repository: ")
    assert "roles/base.yaml" in message


def test_load_config_explains_a_damaged_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{nope")
    with pytest.raises(ConfigError, match=r"config\.json:1:2: not valid JSON"):
        load_config(tmp_path)


def test_load_config_checks_the_environments(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(
        {"format": 1, "database_url": "sqlite:///x.db", "repo": "desired.git",
         "environments": "production"}))
    with pytest.raises(ConfigError, match=r"config\.json: environments must be a non-empty "
                                          r"list of names"):
        load_config(tmp_path)
