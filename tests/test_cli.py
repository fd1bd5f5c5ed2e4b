"""The command line as a user meets it: real processes, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from steward.cli.settings import FLAGS, Settings, collect, settings, with_connection, with_data_dir

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def steward(*args: str, cwd: Path | None = None, stdin: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "steward", *args],
        capture_output=True, text=True, cwd=cwd, input=stdin, check=False,
        env={**os.environ, **(env or {})},
    )


def assert_clean_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode not in (0, 2, 8), proc
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


@pytest.fixture
def tutorial_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "profiles").mkdir(parents=True)
    (repo / "roles").mkdir()
    (repo / "templates").mkdir()
    (repo / "profiles" / "motd.yaml").write_text(
        "resources:\n"
        "  directory[/etc/steward]:\n    mode: \"0755\"\n"
        "  file[/etc/motd]:\n    template: motd.j2\n    mode: \"0644\"\n"
        "  file[/etc/steward/owner]:\n    content: \"ops\\n\"\n    mode: \"0644\"\n"
    )
    (repo / "templates" / "motd.j2").write_text("Welcome to {{ node }}\n")
    (repo / "roles" / "base.yaml").write_text("profiles:\n  motd: {}\n")
    (repo / "classification.yaml").write_text(
        "rules:\n  - name: all\n    match: {node: \"*\"}\n    role: base\n")
    return repo


def test_compile_apply_cycle_exit_codes_and_drift(tutorial_repo: Path, tmp_path: Path) -> None:
    facts = tmp_path / "facts.json"
    facts.write_text(steward("facts").stdout)
    json.loads(facts.read_text())
    catalog = tmp_path / "catalog.json"
    compiled = steward("compile", "--repo", str(tutorial_repo), "--node", "n1", "--facts",
                       str(facts), "-o", str(catalog))
    assert compiled.returncode == 0, compiled.stderr
    again = steward("compile", "--repo", str(tutorial_repo), "--node", "n1", "--facts",
                    str(facts))
    assert again.stdout == catalog.read_text()  # deterministic, byte for byte
    sandbox = tmp_path / "sandbox"
    (sandbox / "etc").mkdir(parents=True)
    apply = ("apply", "--catalog", str(catalog), "--root", str(sandbox))
    noop = steward(*apply, "--noop")
    assert noop.returncode == 8
    assert json.loads(noop.stdout)["noop_pending"] is True
    assert not (sandbox / "etc/motd").exists()
    assert steward(*apply).returncode == 2
    assert (sandbox / "etc/motd").read_text() == "Welcome to n1\n"
    assert steward(*apply).returncode == 0
    (sandbox / "etc/motd").write_text("hacked\n")
    drift = steward(*apply)
    assert drift.returncode == 2
    report = json.loads(drift.stdout)
    assert report["corrective_change"] is True
    summary = steward(*apply, "--format", "summary")
    assert summary.returncode == 0
    assert "n1 (production): unchanged" in summary.stdout


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("compile", "--repo", "nope", "--node", "x", "--facts", "{facts}"), ["'nope'"]),
        (("compile", "--repo", "{repo}", "--node", "x", "--facts", "{bad_json}"),
         ["bad.json:1:", "not valid JSON"]),
        (("apply", "--catalog", "{bad_catalog}"), ["resources[0]", "'parameters'"]),
        (("apply", "--catalog", "{missing}"), ["cannot read catalog"]),
        (("apply", "--catalog", "{catalog}", "--root", "/nonexistent/root"), ["--root"]),
    ],
)
def test_bad_input_gives_one_clear_line(
    args: tuple[str, ...], needles: list[str], tutorial_repo: Path, tmp_path: Path
) -> None:
    (tmp_path / "facts.json").write_text('{"os": {"family": "Debian"}}')
    (tmp_path / "bad.json").write_text('{"os": ')
    (tmp_path / "bad_catalog.json").write_text(json.dumps({
        "catalog_format": 1, "node": "n", "environment": "e", "edges": [],
        "resources": [{"type": "file", "title": "/a", "parameters": []}]}))
    (tmp_path / "catalog.json").write_text(json.dumps({
        "catalog_format": 1, "node": "n", "environment": "e", "edges": [], "resources": []}))
    values = {"facts": tmp_path / "facts.json", "repo": tutorial_repo,
              "bad_json": tmp_path / "bad.json", "bad_catalog": tmp_path / "bad_catalog.json",
              "missing": tmp_path / "missing.json", "catalog": tmp_path / "catalog.json"}
    proc = steward(*(a.format(**values) for a in args))
    assert_clean_error(proc, *needles)


def test_repository_errors_name_file_line_and_field(tutorial_repo: Path, tmp_path: Path) -> None:
    (tutorial_repo / "profiles" / "motd.yaml").write_text(
        "resources:\n  file[/etc/motd]:\n    contnet: hi\n")
    facts = tmp_path / "facts.json"
    facts.write_text("{}")
    proc = steward("compile", "--repo", str(tutorial_repo), "--node", "n1", "--facts",
                   str(facts))
    assert_clean_error(proc, "profiles/motd.yaml:3", "contnet", "content")


def test_secrets_store_roundtrip_never_echoes_values(tmp_path: Path) -> None:
    data = tmp_path / "data"
    stored = steward("secret", "set", "db_password", "--data-dir", str(data),
                     stdin="hunter2-but-longer\n")
    assert stored.returncode == 0, stored.stderr
    assert "hunter2" not in stored.stdout + stored.stderr
    listed = steward("secret", "list", "--data-dir", str(data))
    assert listed.stdout.split() == ["db_password"]
    assert b"hunter2" not in (data / "secrets.enc").read_bytes()
    empty = steward("secret", "set", "x", "--data-dir", str(data), stdin="")
    assert_clean_error(empty, "empty")


def test_compile_keeps_secrets_out_of_the_catalog(tmp_path: Path) -> None:
    data = tmp_path / "data"
    steward("secret", "set", "db_password", "--data-dir", str(data), stdin="Sup3r-s3cret-pw\n")
    bundle = tmp_path / "bundle.json"
    proc = steward("compile", "--repo", str(EXAMPLES / "repo"), "--node", "db1", "--facts",
                   str(EXAMPLES / "facts" / "db1.json"), "--data-dir", str(data),
                   "--secrets-out", str(bundle))
    assert proc.returncode == 0, proc.stderr
    assert "Sup3r-s3cret-pw" not in proc.stdout
    assert "__sensitive__" in proc.stdout
    assert oct(bundle.stat().st_mode & 0o777) == "0o600"
    assert "Sup3r-s3cret-pw" in bundle.read_text()


# -- the shared options: before the command, at the command, from the environment ----------


def _settings_app(seen: list[Settings], *, root: bool = True) -> typer.Typer:
    app = typer.Typer()
    if root:
        app.callback()(collect)
    else:
        @app.callback()
        def bare() -> None:
            """A group without the root callback (as tests register sub-apps)."""

    @app.command()
    @with_connection
    def connected(ctx: typer.Context) -> None:
        seen.append(settings(ctx))

    @app.command()
    @with_data_dir
    def local(ctx: typer.Context) -> None:
        seen.append(settings(ctx))

    return app


@pytest.mark.parametrize(("argv", "env", "expected"), [
    (["connected"], {}, Settings()),
    (["connected"], {"STEWARD_DATA_DIR": "/env", "STEWARD_SERVER": "https://env:1",
                     "STEWARD_TOKEN": "env-token", "STEWARD_CA_CERT": "/env/ca.crt"},
     Settings(Path("/env"), "https://env:1", "env-token", Path("/env/ca.crt"))),
    # Before the command, or at it, as every command always took them.
    (["--data-dir", "/root", "--server", "https://root:1", "--token", "root-token",
      "--ca-cert", "/root/ca.crt", "connected"], {},
     Settings(Path("/root"), "https://root:1", "root-token", Path("/root/ca.crt"))),
    (["connected", "--data-dir", "/cmd", "--server", "https://cmd:1", "--token", "cmd-token",
      "--ca-cert", "/cmd/ca.crt"], {},
     Settings(Path("/cmd"), "https://cmd:1", "cmd-token", Path("/cmd/ca.crt"))),
    # The first found wins: the command's option, the root's, the environment, the default.
    (["--server", "https://root:1", "--token", "root-token", "connected", "--server",
      "https://cmd:1"], {"STEWARD_SERVER": "https://env:1", "STEWARD_TOKEN": "env-token",
                         "STEWARD_DATA_DIR": "/env"},
     Settings(Path("/env"), "https://cmd:1", "root-token", None)),
    (["--data-dir", "/root", "local"], {"STEWARD_DATA_DIR": "/env"}, Settings(Path("/root"))),
    (["local", "--data-dir", "/cmd"], {}, Settings(Path("/cmd"))),
    (["local"], {"STEWARD_DATA_DIR": ""}, Settings()),  # empty: unset, as click reads it
])
def test_shared_options_first_found_wins(argv: list[str], env: dict[str, str],
                                         expected: Settings,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for flag in FLAGS:
        monkeypatch.delenv(flag.envvar, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    seen: list[Settings] = []
    result = CliRunner().invoke(_settings_app(seen), argv)
    assert result.exit_code == 0, result.output
    assert seen == [expected]


def test_shared_options_without_the_root_callback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEWARD_DATA_DIR", "/env")
    seen: list[Settings] = []
    app = _settings_app(seen, root=False)
    assert CliRunner().invoke(app, ["local"]).exit_code == 0
    assert CliRunner().invoke(app, ["connected", "--token", "t"]).exit_code == 0
    assert seen == [Settings(Path("/env")), Settings(Path("/env"), token="t")]


def test_a_data_dir_command_takes_no_connection_options() -> None:
    result = CliRunner().invoke(_settings_app([]), ["local", "--server", "https://x:1"])
    assert result.exit_code == 2
    assert "No such option" in result.output


def test_connection_options_before_the_command_reach_it(tmp_path: Path) -> None:
    """The real CLI: the root's --data-dir and --server are the command's."""
    before = steward("--data-dir", str(tmp_path / "nowhere"), "change", "list")
    assert_clean_error(before, f"{tmp_path / 'nowhere'} has no config.json")
    secret = steward("--data-dir", str(tmp_path / "data"), "secret", "set", "k",
                     stdin="value-1\n")
    assert secret.returncode == 0, secret.stderr
    listed = steward("secret", "list", "--data-dir", str(tmp_path / "data"))
    assert listed.stdout.split() == ["k"]
    refused = steward("--server", "https://127.0.0.1:9", "--token", "t", "node", "list",
                      "--data-dir", str(tmp_path / "data"))
    assert_clean_error(refused, "cannot reach the Steward server at https://127.0.0.1:9")
