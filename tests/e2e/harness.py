"""Real processes for control-plane tests: a Steward server on loopback TLS, pull agents,
a fresh PostgreSQL database per test module, and a small repository with a secret."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.openapi_check import checking_hook

PG_ADMIN_URL = os.environ.get("STEWARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
SECRET_VALUE = "s3cr3t-app-token-value"


def steward_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("STEWARD_") or k == "STEWARD_TEST_PG"}
    env.update(extra)
    return env


def steward(*args: str, env: dict[str, str] | None = None, timeout: float = 60,
            cwd: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "steward", *args], capture_output=True, text=True,
        env=env or steward_env(), timeout=timeout, check=False, cwd=cwd, input=stdin,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- databases ----------------------------------------------------------------------------


@contextlib.contextmanager
def postgresql_database(label: str) -> Iterator[str]:
    """A brand-new database for one test module; dropped afterwards. Skips if no server."""
    import psycopg

    name = f"steward_t_{label[:30]}_{uuid.uuid4().hex[:8]}".lower().replace("-", "_")
    admin = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    try:
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at {admin} is unreachable ({str(exc).strip()[:120]}); "
                    "set STEWARD_TEST_PG to a server where a database can be created")
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def database_url(backend: str, tmp: Path, label: str) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'steward.db'}"
    else:
        with postgresql_database(label) as url:
            yield url


# -- the repository -----------------------------------------------------------------------


def write_repo(repo: Path) -> Path:
    """Every node gets /etc/app with a greeting and a secret-bearing file."""
    (repo / "profiles").mkdir(parents=True)
    (repo / "roles").mkdir()
    (repo / "profiles" / "app.yaml").write_text(
        "parameters:\n"
        "  token: {type: string, default: {secret: app_token}}\n"
        "resources:\n"
        "  directory[/etc/app]:\n    mode: \"0755\"\n"
        "  file[/etc/app/greeting]:\n    content: \"hello {{ node }}\\n\"\n    mode: \"0644\"\n"
        "  file[/etc/app/token]:\n    content: \"{{ params.token }}\"\n    mode: \"0600\"\n",
        encoding="utf-8",
    )
    (repo / "roles" / "base.yaml").write_text("profiles:\n  app: {}\n", encoding="utf-8")
    (repo / "classification.yaml").write_text(
        "rules:\n  - name: all\n    match: {node: \"*\"}\n    role: base\n", encoding="utf-8"
    )
    return repo


def init_data_dir(tmp: Path, db_url: str, *, port: int | None = None) -> tuple[Path, str]:
    """A data directory with the test repository and the app_token secret: (dir, token).

    In-process for speed; tests/server/test_init.py runs ``steward init`` itself.
    """
    from steward.secrets.store import SecretStore
    from steward.server.init import init_data_dir as init

    result = init(tmp / "data", database_url=db_url, repo=write_repo(tmp / "repo"),
                  versioned=False, port=port or free_port())
    SecretStore(result.config.data_dir).set("app_token", SECRET_VALUE)
    return result.config.data_dir, result.admin_token


# -- the server process -------------------------------------------------------------------


@dataclass
class Server:
    data_dir: Path
    admin_token: str
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    starts: int = 0
    _openapi_hook: Any = field(default=None, repr=False, compare=False)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca(self) -> Path:
        return self.data_dir / "tls" / "ca.crt"

    def start(self, timeout: float = 30.0) -> None:
        self.starts += 1
        self.log_path = self.data_dir.parent / f"server-{self.starts}.log"
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "steward", "server", "--data-dir", str(self.data_dir),
             "--port", str(self.port), "--log-level", "warning"],
            stdout=log, stderr=subprocess.STDOUT, env=steward_env(),
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited {self.proc.returncode}:\n{self.log()}")
            try:
                with self.client() as client:
                    if client.get("/api/v1/whoami").status_code == 200:
                        return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the server did not come up in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as a crash or power cut."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca)

    def client(self, token: str | None = None) -> httpx.Client:
        """A client whose every answer is checked against the server's OpenAPI document."""
        if self._openapi_hook is None:
            self._openapi_hook = checking_hook(self._openapi)
        return httpx.Client(base_url=self.url, verify=self.tls(), timeout=30,
                            headers={"Authorization": f"Bearer {token or self.admin_token}"},
                            event_hooks={"response": [self._openapi_hook]})

    def _openapi(self) -> Any:
        with httpx.Client(base_url=self.url, verify=self.tls(), timeout=30) as client:
            response = client.get("/openapi.json",
                                  headers={"Authorization": f"Bearer {self.admin_token}"})
        response.raise_for_status()
        return response.json()

    def api(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
        with self.client(token) as client:
            response = client.request(method, path, **kwargs)
        assert response.is_success, (response.status_code, response.text)
        return response.json()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A CLI command as an operator on another machine runs it: URL, token, CA."""
        return steward(*args, env=steward_env(STEWARD_SERVER=self.url,
                                              STEWARD_TOKEN=self.admin_token,
                                              STEWARD_CA_CERT=str(self.ca)))

    def reports(self, certname: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.api(
            "GET", "/pdb/query/v4/reports",
            params={"query": f'["=", "certname", "{certname}"]'},
        )
        return rows


# -- agents -------------------------------------------------------------------------------


@dataclass
class AgentNode:
    """One sandboxed node: its own --root (and so its own state dir) on this machine."""

    certname: str
    root: Path
    server: Server
    proc: subprocess.Popen[str] | None = None
    lines: list[str] = field(default_factory=list)
    pump: threading.Thread | None = None

    @property
    def state(self) -> Path:
        return self.root / "var" / "lib" / "steward" / "agent"

    def args(self, *extra: str, join_token: str | None = None) -> list[str]:
        argv = ["agent", "--server", self.server.url, "--ca-cert", str(self.server.ca),
                "--certname", self.certname, "--root", str(self.root), *extra]
        if join_token:
            token_file = self.root.parent / f"{self.certname}.join"
            token_file.write_text(join_token)
            argv += ["--join-token-file", str(token_file)]
        return argv

    def once(self, *extra: str, join_token: str | None = None) -> subprocess.CompletedProcess[str]:
        return steward(*self.args("--once", *extra, join_token=join_token))

    def start(self, *extra: str, join_token: str | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "steward", *self.args(*extra, join_token=join_token)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=steward_env(),
        )
        stream = self.proc.stdout
        assert stream is not None

        def pump() -> None:
            for line in stream:
                self.lines.append(line.rstrip("\n"))

        self.pump = threading.Thread(target=pump, daemon=True, name=f"agent-{self.certname}")
        self.pump.start()

    def read(self) -> list[str]:
        """The output so far (a thread collects it as the agent writes)."""
        return list(self.lines)

    def mark(self) -> int:
        """A position in the output, for wait_for(since=...)."""
        return len(self.lines)

    def wait_for(self, needle: str, timeout: float, count: int = 1, since: int = 0) -> float:
        """Seconds until ``needle`` has appeared ``count`` times in the output after ``since``."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if sum(needle in line for line in self.read()[since:]) >= count:
                return time.monotonic() - start
            if self.proc is not None and self.proc.poll() is not None:
                self.read()
                raise AssertionError(f"agent exited {self.proc.returncode}:\n"
                                     + "\n".join(self.lines))
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} x{count} not seen in {timeout}s:\n"
                             + "\n".join(self.read()))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.pump is not None:
            self.pump.join(5)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def token(self) -> str:
        import json

        return str(json.loads((self.state / "credential.json").read_text())["token"])

    def report_uuids(self) -> list[str]:
        return [line.split("report ", 1)[1].split(";", 1)[0].strip()
                for line in self.read() if "; report " in line]


def make_node(tmp: Path, certname: str, server: Server) -> AgentNode:
    root = tmp / "nodes" / certname
    (root / "etc").mkdir(parents=True)
    return AgentNode(certname, root, server)


# -- the change pipeline ------------------------------------------------------------------


@contextlib.contextmanager
def pipeline_server(tmp: Path, repo: Path, database: str, *,
                    policies: bool = True) -> Iterator[Server]:
    """A running server on a versioned data directory (desired.git, environment branches)."""
    from steward.pipeline.policy.evaluate import install_default_policies
    from steward.secrets.store import SecretStore
    from steward.server.init import init_data_dir as init

    port = free_port()
    result = init(tmp / "data", database_url=database, repo=repo, port=port)
    SecretStore(result.config.data_dir).set("app_token", SECRET_VALUE)
    if policies:
        install_default_policies(result.config.data_dir)
    srv = Server(result.config.data_dir, result.admin_token, port=port)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def call(server: Server, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
    """A request as the identity behind ``token``, whatever its answer."""
    with server.client(token) as client:
        client.timeout = httpx.Timeout(120)
        return client.request(method, path, **kwargs)


def ok(response: httpx.Response) -> Any:
    assert response.is_success, (response.status_code, response.text)
    return response.json()


def create_identity(server: Server, name: str, kind: str, *roles: str) -> str:
    """A human or agent identity with roles; returns its token."""
    created = server.api("POST", "/api/v1/identities",
                         json={"name": name, "kind": kind, "roles": list(roles)})
    return str(created["token"])
