"""Server-side compilation: a node's catalog from its latest facts, cached by input hash.

The input hash covers everything a compile can read: the repository's content digest (every
file's sha256), the facts' digest, the secrets' keyed digests, the node name and any pinned
environment. Equal inputs give byte-identical catalogs (the compiler is deterministic), so a
cache hit is exactly what a compile would return. The cache lives in memory only, because
an entry includes the catalog's sensitive values and those are never written to disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steward.compiler import CompileResult, compile_catalog
from steward.language import Repository, load_repository
from steward.secrets.store import SecretStore


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

    def __init__(self, repo_path: Path, secrets: SecretStore, cache_size: int = 512) -> None:
        self.repo_path = repo_path
        self.secrets = secrets
        self.cache_size = max(0, cache_size)
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._repo: tuple[str, Repository, str] | None = None
        self._cache: OrderedDict[str, CompileResult] = OrderedDict()
        self.hits = 0
        self.misses = 0

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
        """The loaded repository and its content digest, reloaded when files change."""
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
        return self.repository()[0].settings.default_environment

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
        repo, repo_digest = self.repository()
        key = _sha256(json.dumps(
            [certname, environment, repo_digest, facts_digest(facts), self.secrets_digest()],
            separators=(",", ":"),
        ))
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                self.hits += 1
                return CompiledCatalog(hit, key, cached=True)
        result = compile_catalog(repo, node=certname, facts=facts, environment=environment,
                                 secrets=self.secrets)
        with self._lock:
            self.misses += 1
            if self.cache_size:
                self._cache[key] = result
                self._cache.move_to_end(key)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return CompiledCatalog(result, key, cached=False)
