"""The secrets store, and secrets in catalogs: placeholders, digests, never the value."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from steward.catalog.sensitive import sensitive_placeholder
from steward.errors import SecretError, StewardError
from steward.secrets import KEY_ENV, SecretStore, generate_key, init_store

from .conftest import Compile, one_profile

PASSWORD = "correct-horse-battery-staple"


# -- the store --------------------------------------------------------------------------------


def test_store_round_trip_and_key_file(tmp_path: Path) -> None:
    store = SecretStore(tmp_path / "state", environ={})
    store.set("db_password", PASSWORD)
    store.set("api/token", "t0k3n")
    assert store.get("db_password") == PASSWORD
    assert store.names() == ["api/token", "db_password"]
    key_file = tmp_path / "state" / "secrets.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "state" / "secrets.enc").stat().st_mode) == 0o600
    assert PASSWORD.encode() not in (tmp_path / "state" / "secrets.enc").read_bytes()
    reopened = SecretStore(tmp_path / "state", environ={})
    assert reopened.get("api/token") == "t0k3n"
    reopened.delete("api/token")
    assert SecretStore(tmp_path / "state", environ={}).names() == ["db_password"]
    leftovers = [p.name for p in (tmp_path / "state").iterdir()]
    assert sorted(leftovers) == ["secrets.enc", "secrets.key"]


def test_key_from_the_environment(tmp_path: Path) -> None:
    key = generate_key()
    SecretStore(tmp_path, environ={KEY_ENV: key}).set("a", "b")
    assert not (tmp_path / "secrets.key").exists()
    assert SecretStore(tmp_path, environ={KEY_ENV: key}).get("a") == "b"


def test_key_from_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = generate_key()
    monkeypatch.setenv(KEY_ENV, key)
    SecretStore(tmp_path).set("a", "b")
    assert SecretStore(tmp_path, key=key).get("a") == "b"


@pytest.mark.parametrize(
    ("action", "fragment"),
    [
        (lambda s: s.get("nope"), "secret 'nope' is not in the secrets store"),
        (lambda s: s.delete("nope"), "secret 'nope' is not in the secrets store"),
        (lambda s: s.set("bad name!", "x"), "is not a valid secret name"),
    ],
)
def test_store_misuse(tmp_path: Path, action: object, fragment: str) -> None:
    store, _ = init_store(tmp_path, {"a": "b"})
    with pytest.raises(SecretError, match=fragment):
        action(store)  # type: ignore[operator]


def test_wrong_key_corrupt_file_and_bad_key(tmp_path: Path) -> None:
    store, _key = init_store(tmp_path, {"a": "b"})
    with pytest.raises(SecretError, match=r"wrong key .* or the file is corrupt"):
        SecretStore(tmp_path, key=generate_key()).get("a")
    with pytest.raises(SecretError, match="is not a valid secrets key"):
        SecretStore(tmp_path, key="not-a-key").get("a")
    (tmp_path / "secrets.enc").write_bytes(b"garbage")
    with pytest.raises(SecretError, match="wrong key"):
        store.get("a")
    with pytest.raises(SecretError, match="no secrets key"):
        SecretStore(tmp_path / "empty", environ={}).digest("x")


def test_digest_is_keyed_and_stable(tmp_path: Path) -> None:
    one, _ = init_store(tmp_path / "one", {})
    two, _ = init_store(tmp_path / "two", {})
    assert one.digest("x") == one.digest("x")
    assert one.digest("x") != one.digest("y")
    assert one.digest("x") != two.digest("x")
    assert len(one.digest("x")) == 64


def test_store_notices_writes_by_another_instance(tmp_path: Path) -> None:
    first, key = init_store(tmp_path, {"a": "1"})
    assert first.get("a") == "1"
    SecretStore(tmp_path, key=key).set("a", "22")
    assert first.get("a") == "22"


# -- secrets in catalogs ----------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> SecretStore:
    store, _ = init_store(tmp_path / "secrets", {"db_password": PASSWORD, "short": "abc"})
    return store


POSTGRES = """
file[/etc/app/password]:
  content: {secret: db_password}
file[/etc/app/dsn]:
  content: "postgres://app:{{ secret('db_password') }}@db/app"
file[/etc/app/pgpass]:
  template: pgpass.j2
user[app]:
  password: "{{ params.password }}"
file[/etc/app/derived]:
  content: "{{ params.password | upper }}"
exec[show]:
  command: "echo {{ params.password }} > /dev/null"
file[/etc/app/plain]:
  content: "nothing secret about {{ node }}"
"""


def test_secrets_never_reach_the_catalog(build: Compile, store: SecretStore) -> None:
    files = one_profile(
        POSTGRES,
        parameters="password: {type: string, default: {secret: db_password}}",
    )
    files["templates/pgpass.j2"] = "db:5432:*:app:{{ params.password }}\n"
    result = build(files, secrets=store)
    catalog = result.catalog
    document = catalog.dumps()
    assert PASSWORD not in document
    assert PASSWORD.upper() not in document
    params = {r.ref: r.parameters for r in catalog.resources}
    assert params["file[/etc/app/password]"]["content"] == sensitive_placeholder(
        "secret:db_password"
    )
    assert params["user[app]"]["password"] == sensitive_placeholder("secret:db_password")
    assert params["file[/etc/app/dsn]"]["content"] == sensitive_placeholder(
        "param:file[/etc/app/dsn]:content"
    )
    assert params["file[/etc/app/pgpass]"]["content"] == sensitive_placeholder(
        "param:file[/etc/app/pgpass]:content"
    )
    assert params["file[/etc/app/derived]"]["content"] == sensitive_placeholder(
        "param:file[/etc/app/derived]:content"
    )
    assert params["exec[show]"]["command"] == sensitive_placeholder("param:exec[show]:command")
    assert params["file[/etc/app/plain]"]["content"] == "nothing secret about web1"
    assert result.sensitive_values == {
        "param:exec[show]:command": f"echo {PASSWORD} > /dev/null",
        "param:file[/etc/app/derived]:content": PASSWORD.upper(),
        "param:file[/etc/app/dsn]:content": f"postgres://app:{PASSWORD}@db/app",
        "param:file[/etc/app/pgpass]:content": f"db:5432:*:app:{PASSWORD}\n",
        "secret:db_password": PASSWORD,
    }
    assert catalog.sensitive == {
        key: store.digest(value) for key, value in result.sensitive_values.items()
    }


def test_rotation_changes_the_hash_not_the_document_shape(build: Compile, tmp_path: Path) -> None:
    files = one_profile("file[/x]:\n  content: {secret: db_password}\n")
    store, key = init_store(tmp_path / "s", {"db_password": "first-value"})
    before = build(files, secrets=store).catalog
    store.set("db_password", "second-value")
    after = build(files, secrets=SecretStore(tmp_path / "s", key=key)).catalog
    assert before.hash != after.hash
    assert before.resources == after.resources
    assert before.sensitive != after.sensitive


@pytest.mark.parametrize(
    ("resources", "error", "fragments"),
    [
        pytest.param(
            "file[/x]:\n  content: {secret: nope}\n",
            SecretError,
            [
                "profiles/p.yaml:5",
                "file[/x]: parameter 'content'",
                "secret 'nope' is not in the secrets store",
            ],
            id="missing-secret",
        ),
        pytest.param(
            "file[/x]:\n  content: \"{{ secret('nope') }}\"\n",
            SecretError,
            ["profiles/p.yaml:5", "secret 'nope' is not in the secrets store"],
            id="missing-secret-in-expression",
        ),
        pytest.param(
            "'file[/{{ secret(\"db_password\") }}]': {}\n",
            StewardError,
            ["profiles/p.yaml:4", "the title must not use secrets"],
            id="in-title",
        ),
        pytest.param(
            "'file[/{{ item }}]':\n  for_each: \"{{ [secret('db_password')] }}\"\n",
            StewardError,
            ["profiles/p.yaml:5", "for_each must not use secrets"],
            id="in-for-each",
        ),
        pytest.param(
            "exec[x]:\n  returns: \"{{ [secret('db_password') | length] }}\"\n",
            StewardError,
            ["profiles/p.yaml:5", "only string parameters can hold secrets"],
            id="non-string-parameter",
        ),
        pytest.param(
            "exec[x]:\n  timeout: {secret: db_password}\n",
            StewardError,
            ["profiles/p.yaml:5", "parameter 'timeout'", "got the string <secret db_password>"],
            id="wrong-type-does-not-leak",
        ),
        pytest.param(
            "exec[x]:\n  cwd: \"{{ '/' ~ secret('db_password') ~ '/' ~ 1 }}\"\n"
            "  timeout: \"{{ secret('db_password') ~ 'x' }}\"\n",
            StewardError,
            ["profiles/p.yaml:6", "a value built from a secret does not fit"],
            id="derived-wrong-type-does-not-leak",
        ),
    ],
)
def test_secret_errors(
    build: Compile,
    store: SecretStore,
    resources: str,
    error: type[StewardError],
    fragments: list[str],
) -> None:
    with pytest.raises(error) as caught:
        build(one_profile(resources), secrets=store)
    message = str(caught.value)
    assert PASSWORD not in message
    for fragment in fragments:
        assert fragment in message


def test_no_store_given(build: Compile) -> None:
    with pytest.raises(SecretError) as caught:
        build(one_profile("file[/x]:\n  content: {secret: db_password}\n"))
    assert str(caught.value) == (
        "profiles/p.yaml:5: file[/x]: parameter 'content': secret 'db_password' is referenced "
        "but the compiler was given no secrets store"
    )


def test_secret_text_found_anywhere_is_sensitive(build: Compile, store: SecretStore) -> None:
    # The value reaches the second resource through a lookup of nothing secret: only the
    # text scan can tell, and it does.
    files = one_profile(
        "file[/a]:\n  content: {secret: db_password}\n"
        "file[/b]:\n  content: \"{{ lookup('copy') }}\"\n"
    )
    files["data/common.yaml"] = f"copy: 'embedded {PASSWORD} here'\n"
    result = build(files, secrets=store)
    assert PASSWORD not in result.catalog.dumps()
    assert result.sensitive_values["param:file[/b]:content"] == f"embedded {PASSWORD} here"


def test_example_store_helper(tmp_path: Path) -> None:
    store, key = init_store(tmp_path, {"db_password": "x"})
    assert os.path.exists(tmp_path / "secrets.enc")
    assert SecretStore(tmp_path, environ={KEY_ENV: key}).get("db_password") == "x"
    assert store.names() == ["db_password"]
