"""``steward init``: make a data directory (layout in :mod:`steward.server.config`).

Everything that can be checked is checked before anything is written, and the desired-state
repository is built aside and renamed into place last, so a failure leaves nothing
half-made.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from steward.secrets.store import KEY_ENV, KEY_FILE, generate_key
from steward.server.config import (
    ADMIN_TOKEN_FILE,
    CONFIG_FILE,
    DEFAULT_ENVIRONMENTS,
    DEFAULT_PORT,
    ServerConfig,
    check_environments,
    config_document,
    default_database_url,
    make_private,
    write_private,
)
from steward.server.errors import ConfigError

DESIRED_REPO = "desired.git"
EXAMPLE_REPO = Path(__file__).resolve().parents[3] / "examples" / "repo"


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
    from steward.server.db import normalise_url
    from steward.server.tls import fingerprint

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
    staging = data_dir / f".{DESIRED_REPO}.init"
    admin_token = _repository_and_database(config, staging, source if versioned else None,
                                           default_env)
    _write_tls(config, names or [])
    if versioned:
        staging.rename(repo_path)
    elif repo is None:
        shutil.copytree(EXAMPLE_REPO, config.repo_path, dirs_exist_ok=True)
    _write_files(config, admin_token if save_admin_token else None)
    return InitResult(config=config, admin_token=admin_token,
                      ca_fingerprint=fingerprint(config.ca_cert))


def _repository_and_database(config: ServerConfig, staging: Path, source: Path | None,
                             default_env: str | None) -> str:
    """Build the desired-state repository at ``staging`` (when ``source`` is given), then
    the database schema; returns the admin token. A failure removes ``staging``."""
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    from steward.server.db import redact_url
    from steward.server.services import bootstrap_database

    try:
        if source is not None:
            # Built aside and renamed into place last: a failure leaves no repository.
            _remove_staging(staging)
            _create_desired(staging, source, config.environments, default_env)
        # The database next: if it cannot be reached, nothing else has been written yet.
        try:
            return bootstrap_database(config)
        except (SQLAlchemyError, OSError) as exc:
            cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
            raise ConfigError(
                f"cannot set up the database {redact_url(config.database_url)}: "
                f"{_first_line(cause)}"
            ) from None
    except BaseException:
        _remove_staging(staging)
        raise


def _write_tls(config: ServerConfig, names: Sequence[str]) -> None:
    """A new CA and a serving certificate for ``names``, this host and the listen address."""
    from steward.server.tls import (
        create_ca,
        default_names,
        issue_server_certificate,
        write_certificate,
        write_key,
    )

    config.tls_dir.mkdir(exist_ok=True, mode=0o700)
    ca_key, ca_cert = create_ca(f"Steward CA {config.data_dir.name}")
    write_key(config.ca_key, ca_key)
    write_certificate(config.ca_cert, ca_cert)
    server_names = list(dict.fromkeys([*names, *default_names()]))
    host = config.host
    if host not in ("0.0.0.0", "::", "") and host not in server_names:  # noqa: S104
        server_names.append(host)
    key, cert = issue_server_certificate(ca_key, ca_cert, server_names)
    write_key(config.tls_key, key)
    write_certificate(config.tls_cert, cert)


def _write_files(config: ServerConfig, admin_token: str | None) -> None:
    """The secrets and audit keys, the admin token (when saved) and config.json, last."""
    from steward.access.checkpoints import ensure_audit_key

    key_path = config.secrets_dir / KEY_FILE
    if not os.environ.get(KEY_ENV) and not key_path.exists():
        write_private(key_path, generate_key() + "\n")
    ensure_audit_key(config.data_dir)  # signs the audit log's checkpoints
    if admin_token is not None:
        write_private(config.data_dir / ADMIN_TOKEN_FILE, admin_token + "\n")
    write_private(config.data_dir / CONFIG_FILE,
                  json.dumps(config_document(config), indent=2, sort_keys=True) + "\n")
    make_private(config.data_dir)


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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
