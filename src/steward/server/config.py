"""The data directory (``steward init``) and the server configuration read from it.

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
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from steward.secrets.store import KEY_ENV, KEY_FILE, generate_key
from steward.server.errors import ConfigError

CONFIG_FILE = "config.json"
ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105 (a file name)
CONFIG_FORMAT = 1
DEFAULT_PORT = 8150
DEFAULT_ENVIRONMENTS = ("development", "staging", "production")
DESIRED_REPO = "desired.git"
EXAMPLE_REPO = Path(__file__).resolve().parents[3] / "examples" / "repo"


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


def _config_document(config: ServerConfig) -> dict[str, Any]:
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


@dataclass(frozen=True, slots=True)
class InitResult:
    config: ServerConfig
    #: Shown once by ``steward init``; the server stores only its hash.
    admin_token: str
    ca_fingerprint: str


def init_data_dir(
    data_dir: Path,
    *,
    database_url: str | None = None,
    repo: Path | None = None,
    environments: Sequence[str] | None = None,
    versioned: bool = True,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    names: list[str] | None = None,
    save_admin_token: bool = True,
) -> InitResult:
    """Create a data directory: TLS material, config, desired-state repository, schema, token.

    Versioned (the default): ``<data>/desired.git`` is created with one branch per
    environment, all at one first commit holding the files of ``repo`` (or of
    ``examples/repo``); HEAD names the repository's ``default_environment``. The source is
    loaded first, so a broken one, or one whose ``default_environment`` or classification
    names an environment that is not in ``environments``, is refused before anything is
    written. ``versioned=False`` keeps the older unversioned mode: ``repo`` used in place
    (or ``examples/repo`` copied to ``<data>/repo``), one tree for every environment.
    Refuses to touch an initialised directory; a failure leaves nothing half-made.
    """
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    from steward.server.db import normalise_url, redact_url
    from steward.server.tls import (
        create_ca,
        default_names,
        fingerprint,
        issue_server_certificate,
        write_certificate,
        write_key,
    )

    data_dir = data_dir.resolve()
    if (data_dir / CONFIG_FILE).exists():
        raise ConfigError(f"{data_dir} is already initialised (it has {CONFIG_FILE})")
    if repo is not None:
        repo = repo.resolve()
        if not (repo / "classification.yaml").is_file():
            raise ConfigError(f"{repo} is not a desired-state repository (no classification.yaml)")
    elif not (EXAMPLE_REPO / "classification.yaml").is_file():
        raise ConfigError("the example repository is not available here: pass --repo PATH")
    source = repo if repo is not None else EXAMPLE_REPO
    envs = check_environments(
        list(environments) if environments is not None else list(DEFAULT_ENVIRONMENTS))
    default_env = _check_source(source, envs) if versioned else None
    url = normalise_url(database_url) if database_url else default_database_url(data_dir)
    if not 0 < port < 65536:
        raise ConfigError(f"port {port} is out of range")

    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # First: while it is 0700, nothing made below is reachable by anyone else, whatever
    # the umask; make_private() then gives each file its own 0600 at the end.
    data_dir.chmod(0o700)
    if versioned:
        repo_path = data_dir / DESIRED_REPO
        if repo_path.exists():
            raise ConfigError(f"{repo_path} already exists: remove it or use another "
                              "data directory")
    else:
        repo_path = repo if repo is not None else data_dir / "repo"
    config = ServerConfig(data_dir=data_dir, database_url=url, repo_path=repo_path,
                          environments=envs, host=host, port=port)

    from steward.server.services import bootstrap_database

    staging = data_dir / f".{DESIRED_REPO}.init"
    try:
        if versioned:
            # Built aside and renamed into place last: a failure leaves no repository.
            _remove_staging(staging)
            _create_desired(staging, source, envs, default_env)
        # The database next: if it cannot be reached, nothing else has been written yet.
        try:
            admin_token = bootstrap_database(config)
        except (SQLAlchemyError, OSError) as exc:
            cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
            raise ConfigError(
                f"cannot set up the database {redact_url(url)}: {_first_line(cause)}"
            ) from None
    except BaseException:
        _remove_staging(staging)
        raise
    config.tls_dir.mkdir(exist_ok=True, mode=0o700)
    ca_key, ca_cert = create_ca(f"Steward CA {data_dir.name}")
    write_key(config.ca_key, ca_key)
    write_certificate(config.ca_cert, ca_cert)
    server_names = list(dict.fromkeys([*(names or []), *default_names()]))
    if host not in ("0.0.0.0", "::", "") and host not in server_names:  # noqa: S104
        server_names.append(host)
    key, cert = issue_server_certificate(ca_key, ca_cert, server_names)
    write_key(config.tls_key, key)
    write_certificate(config.tls_cert, cert)
    if versioned:
        staging.rename(repo_path)
    elif repo is None:
        shutil.copytree(EXAMPLE_REPO, config.repo_path, dirs_exist_ok=True)
    key_path = config.secrets_dir / KEY_FILE
    if not os.environ.get(KEY_ENV) and not key_path.exists():
        write_private(key_path, generate_key() + "\n")
    from steward.access.checkpoints import ensure_audit_key

    ensure_audit_key(data_dir)  # signs the audit log's checkpoints
    if save_admin_token:
        write_private(data_dir / ADMIN_TOKEN_FILE, admin_token + "\n")
    write_private(data_dir / CONFIG_FILE,
                  json.dumps(_config_document(config), indent=2, sort_keys=True) + "\n")
    make_private(data_dir)
    return InitResult(config=config, admin_token=admin_token,
                      ca_fingerprint=fingerprint(config.ca_cert))


def _check_source(source: Path, environments: Sequence[str]) -> str:
    """Load the repository to import; its environments must be among ``environments``.

    Returns its default environment (HEAD's branch).
    """
    from steward.errors import StewardError
    from steward.language import load_repository

    try:
        loaded = load_repository(source)
    except StewardError as exc:
        raise ConfigError(f"{source} is not a valid desired-state repository: {exc}") from None
    default = loaded.settings.default_environment
    known = ", ".join(environments)
    if default not in environments:
        raise ConfigError(
            f"{source}/steward.yaml: default_environment {default!r} is not one of the "
            f"environments ({known}); add it with --environment {default}"
        )
    classification = loaded.classification
    for rule in (*classification.rules, classification.default):
        if rule.environment is not None and rule.environment not in environments:
            raise ConfigError(
                f"{source}/{rule.file}:{rule.environment_line}: rule {rule.name!r} places nodes "
                f"in environment {rule.environment!r}, which is not one of the environments "
                f"({known}); add it with --environment {rule.environment}"
            )
    return default


def _create_desired(path: Path, source: Path, environments: Sequence[str],
                    default: str | None) -> None:
    from steward.gitrepo import STEWARD, DesiredStateRepo, GitError

    try:
        DesiredStateRepo.create(path, source, environments, STEWARD, default=default,
                                message=f"Initial desired state (from {source.name})")
    except GitError as exc:
        raise ConfigError(f"cannot create the desired-state repository: {exc}") from None
    # git writes objects, packs and refs with the umask's modes; this makes every later
    # write 0600 (directories 0700) even under a server started with a looser umask. Only
    # the server's user opens the repository: people clone and push through the server.
    done = subprocess.run(["git", "config", "--file", str(path / "config"),
                           "core.sharedRepository", "0600"],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ConfigError(f"cannot configure the desired-state repository: "
                          f"{done.stderr.strip()}")


def _remove_staging(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
