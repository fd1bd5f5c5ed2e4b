"""The data directory's layout and the server configuration read from it (``steward init``
makes the directory: :mod:`steward.server.init`).

Layout of ``<data>``::

    config.json         settings (no secrets): database URL, repository, environments,
                        listen address
    tls/ca.crt          the Steward CA (give it to agents: --ca-cert)
    tls/ca.key          its key (0600), for issuing further serving certificates
    tls/server.crt/.key the serving certificate (SANs: localhost, 127.0.0.1, ::1, hostname)
    desired.git/        the desired-state git repository (bare): one branch per environment,
                        first commit from examples/repo or ``--repo DIR``; people clone it
                        and push branches, the change pipeline moves the environment branches
    secrets.key/.enc    the encrypted secrets store (see steward.secrets)
    steward.db          the embedded SQLite database (default; WAL mode)
    admin.token         the local CLI's admin credential (0600); the server keeps only a hash

Everything is built into a frozen :class:`ServerConfig`, passed to the app factory; nothing
is read from globals after start-up.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from steward.server.errors import ConfigError

CONFIG_FILE = "config.json"
ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105 (a file name)
CONFIG_FORMAT = 1
DEFAULT_PORT = 8150
DEFAULT_ENVIRONMENTS = ("development", "staging", "production")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything the server needs; built by :func:`load_config`, or directly in tests."""

    data_dir: Path
    database_url: str
    #: The desired-state repository: a bare git repository (environments are branches), or
    #: a plain directory (unversioned: one tree for every environment).
    repo_path: Path
    #: The environments (branch names); the change pipeline targets only these.
    environments: tuple[str, ...] = DEFAULT_ENVIRONMENTS
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    #: How long a node's run-now long poll is held open before it is answered "no run".
    long_poll_seconds: float = 25.0
    #: Compiled catalogs kept in memory, keyed by their input hash.
    catalog_cache_size: int = 512
    #: How often agentless (SSH) nodes are pushed their catalog.
    ssh_run_interval_seconds: float = 1800.0
    #: How often the SSH scheduler looks for due nodes and run-now requests.
    scheduler_tick_seconds: float = 2.0
    #: The audit head is signed and witnessed at most this many seconds after an append
    #: (and at most once per this many seconds); None: only on demand (docs/audit.md).
    audit_checkpoint_interval: float | None = 1.0
    #: The append-only witness file of audit checkpoints (relative to the data directory).
    audit_witness_file: str = "audit-witness.jsonl"
    #: An external witness: a command (argv) given each checkpoint's JSON on stdin ...
    audit_witness_command: tuple[str, ...] = ()
    #: ... and/or an http(s) URL each checkpoint's JSON is POSTed to.
    audit_witness_url: str | None = None
    #: Request body limits in bytes, enforced before a body is read (docs/server.md#request-
    #: limits): enrolling without a token, facts, reports (and job results), everything else.
    max_unauthenticated_bytes: int = 256 * 1024
    max_facts_bytes: int = 4 * 1024 * 1024
    max_report_bytes: int = 16 * 1024 * 1024
    max_request_bytes: int = 4 * 1024 * 1024

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def ca_cert(self) -> Path:
        return self.tls_dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.tls_dir / "ca.key"

    @property
    def tls_cert(self) -> Path:
        return self.tls_dir / "server.crt"

    @property
    def tls_key(self) -> Path:
        return self.tls_dir / "server.key"

    @property
    def audit_witness_path(self) -> Path:
        return self.data_dir / self.audit_witness_file

    @property
    def secrets_dir(self) -> Path:
        return self.data_dir

    @property
    def repo_versioned(self) -> bool:
        """Whether ``repo_path`` is a git repository (else a plain, unversioned directory)."""
        from steward.gitrepo import DesiredStateRepo

        return DesiredStateRepo.is_repository(self.repo_path)

    @property
    def checkout_dir(self) -> Path:
        """Where commits of the desired-state repository are materialised (read-only)."""
        return self.data_dir / "cache" / "checkouts"

    @property
    def server_url(self) -> str:
        host = "localhost" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{self.port}"

    def with_overrides(self, **changes: Any) -> ServerConfig:
        """A copy with the non-None ``changes`` applied (command-line flags over the file)."""
        from steward.server.db import normalise_url

        given = {k: v for k, v in changes.items() if v is not None}
        if "database_url" in given:
            given["database_url"] = normalise_url(given["database_url"])
        if "repo_path" in given:
            given["repo_path"] = Path(given["repo_path"]).resolve()
        if "environments" in given:
            given["environments"] = check_environments(given["environments"])
        return replace(self, **given)


def check_environments(environments: object) -> tuple[str, ...]:
    """A non-empty list of distinct environment names that are valid branch names."""
    from steward.gitrepo import GitError, check_branch_name

    if isinstance(environments, str) or not isinstance(environments, (list, tuple)) \
            or not environments:
        raise ConfigError("environments must be a non-empty list of names")
    names: list[str] = []
    for name in environments:
        try:
            check_branch_name(name, what="environment")
        except GitError as exc:
            raise ConfigError(str(exc)) from None
        if name.startswith("changes/") or name == "changes":
            raise ConfigError(f"invalid environment name {name!r}: 'changes' is reserved for "
                              "the branches of proposed changes")
        if name in names:
            raise ConfigError(f"environment {name!r} is listed twice")
        names.append(name)
    return tuple(names)


def default_database_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'steward.db').resolve()}"


def _read_document(data_dir: Path) -> dict[str, Any]:
    path = data_dir / CONFIG_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{data_dir} is not a Steward data directory (no {CONFIG_FILE}): "
            f"run 'steward init --data-dir {data_dir}' first"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    if not isinstance(document, dict) or document.get("format") != CONFIG_FORMAT:
        raise ConfigError(f"{path}: unsupported configuration (expected format {CONFIG_FORMAT})")
    return document


def load_config(data_dir: Path) -> ServerConfig:
    """Read ``<data>/config.json``; a missing or damaged one is a clear :class:`ConfigError`."""
    from steward.server.db import normalise_url

    data_dir = data_dir.resolve()
    path = data_dir / CONFIG_FILE
    document = _read_document(data_dir)
    try:
        port = int(document.get("port", DEFAULT_PORT))
        config = ServerConfig(
            data_dir=data_dir,
            database_url=normalise_url(str(document["database_url"])),
            repo_path=(data_dir / str(document["repo"])).resolve(),
            environments=check_environments(
                document.get("environments", list(DEFAULT_ENVIRONMENTS))),
            host=str(document.get("host", "127.0.0.1")),
            port=port,
            long_poll_seconds=float(document.get("long_poll_seconds", 25.0)),
            catalog_cache_size=int(document.get("catalog_cache_size", 512)),
            ssh_run_interval_seconds=float(document.get("ssh_run_interval_seconds", 1800.0)),
            **_audit_settings(document),
            **_body_limits(document),
        )
    except KeyError as exc:
        raise ConfigError(f"{path}: missing setting {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: invalid setting: {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return config


def _audit_settings(document: dict[str, Any]) -> dict[str, Any]:
    """The ``audit_*`` settings, checked (an old ``audit_checkpoint_every`` is ignored)."""
    interval = document.get("audit_checkpoint_interval", 1.0)
    if interval is not None:
        interval = float(interval)
        if not 0 < interval <= 3600:
            raise ConfigError(f"audit_checkpoint_interval must be in (0, 3600] seconds or "
                              f"null, not {interval}")
    witness = document.get("audit_witness_file", "audit-witness.jsonl")
    if not isinstance(witness, str) or not witness:
        raise ConfigError("audit_witness_file must be a file name or path")
    command = document.get("audit_witness_command", [])
    if isinstance(command, str) or not isinstance(command, list) \
            or not all(isinstance(arg, str) and arg for arg in command):
        raise ConfigError("audit_witness_command must be a list of arguments "
                          '(["/usr/local/bin/witness", "--log", "steward"]) or []')
    url = document.get("audit_witness_url")
    if url is not None and (not isinstance(url, str)
                            or not url.startswith(("https://", "http://"))):
        raise ConfigError(f"audit_witness_url must be an http(s) URL or null, not {url!r}")
    return {"audit_checkpoint_interval": interval, "audit_witness_file": witness,
            "audit_witness_command": tuple(command), "audit_witness_url": url}


#: The request body limit settings and their defaults (bytes).
BODY_LIMIT_SETTINGS = {
    "max_unauthenticated_bytes": 256 * 1024,
    "max_facts_bytes": 4 * 1024 * 1024,
    "max_report_bytes": 16 * 1024 * 1024,
    "max_request_bytes": 4 * 1024 * 1024,
}


def _body_limits(document: dict[str, Any]) -> dict[str, Any]:
    limits: dict[str, Any] = {}
    for name, default in BODY_LIMIT_SETTINGS.items():
        value = document.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 1024 <= value <= 1 << 31:
            raise ConfigError(f"{name} must be a number of bytes from 1024 to {1 << 31}, "
                              f"not {value!r}")
        limits[name] = value
    return limits


def config_document(config: ServerConfig) -> dict[str, Any]:
    """``config`` as ``config.json`` holds it (the inverse of :func:`load_config`)."""
    try:
        repo: str = str(config.repo_path.relative_to(config.data_dir))
    except ValueError:
        repo = str(config.repo_path)
    return {
        "format": CONFIG_FORMAT,
        "database_url": config.database_url,
        "repo": repo,
        "environments": list(config.environments),
        "host": config.host,
        "port": config.port,
        "long_poll_seconds": config.long_poll_seconds,
        "catalog_cache_size": config.catalog_cache_size,
        "ssh_run_interval_seconds": config.ssh_run_interval_seconds,
        "audit_checkpoint_interval": config.audit_checkpoint_interval,
        "audit_witness_file": config.audit_witness_file,
        "audit_witness_command": list(config.audit_witness_command),
        "audit_witness_url": config.audit_witness_url,
        **{name: getattr(config, name) for name in BODY_LIMIT_SETTINGS},
    }


def make_private(data_dir: Path) -> None:
    """Nothing under ``data_dir`` accessible by group or others (its owner's bits are kept:
    files 0600, git hooks 0700, read-only checkouts 0400, directories 0700 or 0500).

    Run at the end of ``steward init`` and when ``steward server`` starts (which also
    sets the umask to 077), so a data directory made by an older version or a looser
    umask is tightened too. Symbolic links are neither followed nor changed; a repository
    or database elsewhere (``--repo DIR``, PostgreSQL) is the operator's to protect.
    """
    import stat

    data_dir.chmod(0o700)
    for root, dirs, files in os.walk(data_dir):
        for name in (*dirs, *files):
            path = os.path.join(root, name)
            try:
                mode = os.lstat(path).st_mode
                if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                    continue  # symlinks, sockets
                wanted = stat.S_IMODE(mode) & 0o700
                if stat.S_IMODE(mode) != wanted:
                    os.chmod(path, wanted)
            except FileNotFoundError:
                continue  # removed meanwhile (a SQLite -shm, a checkout being replaced)
            except OSError as exc:
                raise ConfigError(f"cannot make {path} private: {exc.strerror}") from None


def write_private(path: Path, text: str) -> None:
    """Create ``path`` 0600 from the start and fsync it: it holds a credential."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def read_server_url(data_dir: Path) -> str:
    """The server's URL from the data directory, without loading the database layer.

    (The command-line client needs only this; importing SQLAlchemy would double its start.)
    """
    document = _read_document(data_dir.resolve())
    try:
        return ServerConfig(data_dir=data_dir, database_url="", repo_path=data_dir,
                            host=str(document.get("host", "127.0.0.1")),
                            port=int(document.get("port", DEFAULT_PORT))).server_url
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{data_dir / CONFIG_FILE}: invalid setting: {exc}") from None


def read_admin_token(data_dir: Path) -> str | None:
    """The local CLI's saved admin token, if ``steward init`` saved one here."""
    with contextlib.suppress(OSError):
        return (data_dir / ADMIN_TOKEN_FILE).read_text(encoding="utf-8").strip() or None
    return None
