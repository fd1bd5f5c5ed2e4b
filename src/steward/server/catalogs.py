"""Server-side compilation: a node's catalog from its latest facts, cached by input hash.

Two repository modes:

* **versioned** (``repo_path`` is a bare git repository, what ``steward init`` makes):
  environments are branches. A node's environment is its pin on the server, else what
  classification on the default environment's branch (the branch HEAD names) says; its
  catalog is compiled from the tip of that environment's branch with the environment
  forced, and the catalog's ``code_id`` is that commit (the agent copies it into its
  report, so the store knows which commit every run enforced);
* **unversioned** (``repo_path`` is a plain directory): one tree for every environment,
  reloaded when its files change; catalogs carry no ``code_id``.

The input hash covers everything a compile can read: the commit (or, unversioned, the
content digest of every file), the facts' digest, the secrets' keyed digests, the node name
and the environment. Equal inputs give byte-identical catalogs (the compiler is
deterministic), so a cache hit is exactly what a compile would return. The cache lives in
memory only, because an entry includes the catalog's sensitive values and those are never
written to disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steward.compiler import CompileResult, compile_catalog
from steward.compiler.classify import classify
from steward.compiler.context import FactView, NodeContext
from steward.errors import StewardError
from steward.gitrepo import DesiredStateRepo, is_full_sha
from steward.language import Repository, load_repository
from steward.secrets.store import SecretStore


class UnknownEnvironmentError(StewardError):
    """A node's environment has no branch in the desired-state repository."""


@dataclass(frozen=True, slots=True)
class CompiledCatalog:
    result: CompileResult
    input_hash: str
    cached: bool


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def facts_digest(facts: Any) -> str:
    return _sha256(json.dumps(facts, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              default=str))


class CatalogService:
    """Compiles catalogs on demand; thread-safe (handlers run in a thread pool)."""

    def __init__(self, repo_path: Path, secrets: SecretStore, cache_size: int = 512,
                 *, checkout_dir: Path | None = None) -> None:
        self.repo_path = repo_path
        self.secrets = secrets
        self.cache_size = max(0, cache_size)
        #: The desired-state git repository; None when ``repo_path`` is a plain directory.
        self.desired: DesiredStateRepo | None = (
            DesiredStateRepo(repo_path, checkout_dir)
            if DesiredStateRepo.is_repository(repo_path) else None
        )
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._repo: tuple[str, Repository, str] | None = None
        self._cache: OrderedDict[str, CompileResult] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @property
    def versioned(self) -> bool:
        """Whether environments are branches of a git repository (else one plain tree)."""
        return self.desired is not None

    def _fingerprint(self) -> str:
        """Cheap change detection (paths, sizes, mtimes); the content digest comes after."""
        entries: list[str] = []
        for directory, dirs, files in os.walk(self.repo_path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                path = Path(directory) / name
                try:
                    stat = path.stat()
                except OSError:
                    continue
                entries.append(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}")
        return _sha256("\n".join(entries))

    def repository(self) -> tuple[Repository, str]:
        """The loaded repository and its content identity.

        Versioned: the default environment's branch tip, identified by its commit.
        Unversioned: the plain tree, reloaded when files change, identified by a digest.
        """
        if self.desired is not None:
            commit = self._environment_commit(self.default_environment())
            return self.desired.load(commit), commit
        fingerprint = self._fingerprint()
        current = self._repo
        if current is not None and current[0] == fingerprint:
            return current[1], current[2]
        with self._load_lock:
            current = self._repo
            if current is not None and current[0] == fingerprint:
                return current[1], current[2]
            repo = load_repository(self.repo_path)
            digest = _sha256(json.dumps(sorted(repo.digests.items()), separators=(",", ":")))
            self._repo = (fingerprint, repo, digest)
            return repo, digest

    def default_environment(self) -> str:
        """The environment of nodes nothing else places.

        Versioned: the branch HEAD names (``steward init`` sets it to ``default_environment``
        of the imported ``steward.yaml``); unversioned: that setting of the plain tree.
        """
        if self.desired is not None:
            default = self.desired.refs().default
            if default is None:
                raise UnknownEnvironmentError(
                    f"{self.repo_path}: HEAD names no branch, so there is no default environment"
                )
            return default
        return self.repository()[0].settings.default_environment

    def environments(self) -> dict[str, str]:
        """Versioned: every environment branch and its tip commit (empty when unversioned).

        Every branch but the change pipeline's ``changes/*`` is an environment.
        """
        if self.desired is None:
            return {}
        return {name: sha for name, sha in self.desired.branches().items()
                if not name.startswith("changes/")}

    def node_environment(self, certname: str, facts: Mapping[str, Any],
                         pinned: str | None = None) -> str:
        """The node's environment: its pin, else classification on the default branch."""
        if pinned:
            return pinned
        if self.desired is None:
            repo = self.repository()[0]
        else:
            repo = self.desired.load(self._environment_commit(self.default_environment()))
        return classify(repo, certname, FactView(facts, "", NodeContext(certname, None)),
                        None).environment

    def environment_commit(self, environment: str, certname: str | None = None) -> str:
        """The tip of ``environment``'s branch; a clear error when there is no such branch."""
        if self.desired is None:
            raise UnknownEnvironmentError(
                f"{self.repo_path} is a plain directory, not a versioned desired-state "
                "repository: environments have no commits"
            )
        return self._environment_commit(environment, certname)

    def _environment_commit(self, environment: str, certname: str | None = None,
                            branches: Mapping[str, str] | None = None) -> str:
        assert self.desired is not None
        tips = self.desired.branches() if branches is None else branches
        commit = tips.get(environment) if not environment.startswith("changes/") else None
        if commit is None:
            known = ", ".join(n for n in tips if not n.startswith("changes/")) or "none"
            whose = f"node {certname!r} is in environment" if certname else "environment"
            raise UnknownEnvironmentError(
                f"{whose} {environment!r}, which has no branch in the desired-state "
                f"repository {self.repo_path} (environments: {known})"
            )
        return commit

    def secrets_digest(self) -> str:
        """Keyed digests of every secret: a rotation changes it, a reader learns nothing."""
        names = self.secrets.names()
        return _sha256(json.dumps(
            [[name, self.secrets.digest(self.secrets.get(name))] for name in names],
            separators=(",", ":"),
        ))

    def compile(
        self, certname: str, facts: dict[str, Any], environment: str | None = None
    ) -> CompiledCatalog:
        """The node's current catalog; ``environment`` is its server pin, if any.

        Versioned: compiled from the tip of the node's environment branch (see the module
        docstring), ``code_id`` = that commit. Unversioned: from the plain tree.
        """
        if self.desired is not None:
            refs = self.desired.refs()
            if environment:
                env = environment
            else:
                if refs.default is None:
                    raise UnknownEnvironmentError(
                        f"{self.repo_path}: HEAD names no branch, so node {certname!r} has "
                        "no default environment to be classified in"
                    )
                default_repo = self.desired.load(
                    self._environment_commit(refs.default, certname, refs.branches))
                env = classify(default_repo, certname,
                               FactView(facts, "", NodeContext(certname, None)),
                               None).environment
            commit = self._environment_commit(env, certname, refs.branches)
            return self.compile_at(certname, facts, env, commit)
        repo, repo_digest = self.repository()
        return self._compiled(repo, [certname, environment, repo_digest], certname, facts,
                              environment, None, use_cache=True)

    def compile_at(
        self, certname: str, facts: Mapping[str, Any], environment: str, commit: str,
        *, use_cache: bool = True,
    ) -> CompiledCatalog:
        """The node's catalog as ``commit`` would make it, in ``environment`` (forced).

        For impact analysis (the base and head of a change) and deploys. ``code_id`` is the
        commit. ``use_cache=False`` keeps a large one-off batch from evicting the catalogs
        agents are being served.
        """
        if self.desired is None:
            raise UnknownEnvironmentError(
                f"{self.repo_path} is a plain directory, not a versioned desired-state "
                f"repository: cannot compile {certname!r} at commit {commit[:12]}"
            )
        sha = commit if is_full_sha(commit) else self.desired.resolve(commit)
        repo = self.desired.load(sha)
        return self._compiled(repo, [certname, environment, sha], certname, facts,
                              environment, sha, use_cache=use_cache)

    def _compiled(self, repo: Repository, identity: list[str | None], certname: str,
                  facts: Mapping[str, Any], environment: str | None, code_id: str | None,
                  *, use_cache: bool) -> CompiledCatalog:
        key = _sha256(json.dumps(
            [*identity, facts_digest(facts), self.secrets_digest()], separators=(",", ":"),
        ))
        if use_cache:
            with self._lock:
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
                    self.hits += 1
                    return CompiledCatalog(hit, key, cached=True)
        result = compile_catalog(repo, node=certname, facts=facts, environment=environment,
                                 secrets=self.secrets, code_id=code_id)
        with self._lock:
            self.misses += 1
            if use_cache and self.cache_size:
                self._cache[key] = result
                self._cache.move_to_end(key)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return CompiledCatalog(result, key, cached=False)
