"""Per-compilation state and the views templates see of facts and parameters.

A :class:`NodeContext` lives for one ``compile_catalog`` call and records what the compile
read (files, data keys, fact paths: the catalog's ``inputs``) and which secrets it touched.
The views record reads as Jinja (or the fast path) walks them, and answer a missing key with a
StrictUndefined whose message names the fact or parameter, instead of ``'dict object' has no
attribute``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from jinja2 import StrictUndefined

from steward.errors import SecretError
from steward.language.checks import SecretText
from steward.language.errors import LanguageError, did_you_mean
from steward.language.jinja import DataView
from steward.secrets.store import SecretStore

#: Secrets shorter than this are not searched for inside rendered text (too many false hits).
MIN_SCANNED_SECRET = 6


class NodeContext:
    """What one compilation has read and which secrets it has resolved."""

    def __init__(self, node: str, secrets: SecretStore | None) -> None:
        self.node = node
        self.store = secrets
        self.files: dict[str, str] = {}
        self.data_keys: set[str] = set()
        self.fact_reads: set[str] = set()
        self.data_paths: list[str] = []
        #: Bumped whenever a secret is resolved or a secret-carrying parameter is read, so the
        #: compiler can tell whether evaluating a value touched a secret.
        self.taint = 0
        self.secrets: dict[str, SecretText] = {}
        self.scanned: list[str] = []
        self.sensitive_values: dict[str, str] = {}
        self.digests: dict[str, str] = {}

    def read_file(self, path: str, digest: str) -> None:
        self.files[path] = digest

    def secret(self, name: Any) -> SecretText:
        """Jinja's ``secret(name)`` and ``{secret: name}``."""
        if isinstance(name, SecretText) or not isinstance(name, str) or not name:
            raise SecretError("secret(): the name must be a non-empty string")
        self.taint += 1
        cached = self.secrets.get(name)
        if cached is not None:
            return cached
        if self.store is None:
            raise SecretError(
                f"secret {name!r} is referenced but the compiler was given no secrets store"
            )
        value = SecretText(self.store.get(name), name)
        self.secrets[name] = value
        if len(value) >= MIN_SCANNED_SECRET:
            self.scanned.append(str(value))
        return value

    def contains_secret(self, value: Any) -> bool:
        """Whether a resolved secret's text appears anywhere inside ``value``."""
        if not self.scanned:
            return False
        if isinstance(value, str):
            return any(secret in value for secret in self.scanned)
        if isinstance(value, list):
            return any(self.contains_secret(item) for item in value)
        if isinstance(value, dict):
            return any(
                self.contains_secret(key) or self.contains_secret(item)
                for key, item in value.items()
            )
        return False

    def sensitive(self, key: str, value: str) -> None:
        """Record a sensitive value and its keyed digest."""
        assert self.store is not None  # only reachable after a secret was resolved
        self.sensitive_values[key] = str(value)
        if key not in self.digests:
            self.digests[key] = self.store.digest(str(value))


class FactView(DataView):
    """A node's facts (or a nested mapping of them) that records which paths are read.

    Built from the facts in sorted key order so iteration is deterministic however the caller
    ordered its dict. Nested mappings become views lazily; lists are canonicalised on first read.
    """

    __slots__ = ("_cache", "_ctx", "_path")

    def __init__(self, data: Mapping[str, Any], path: str, ctx: NodeContext) -> None:
        super().__init__(_sorted_items(data, path))
        self._path = path
        self._ctx = ctx
        #: key → (value as templates see it, the fact path reading it records or None).
        self._cache: dict[str, tuple[Any, str | None]] = {}

    def _child_path(self, key: object) -> str:
        return f"{self._path}.{key}" if self._path else str(key)

    def _entry(self, key: str) -> tuple[Any, str | None]:
        """What reading ``key`` (which exists) gives; nested mappings record no read of their
        own, only the paths read inside them do."""
        raw = dict.__getitem__(self, key)
        path = self._child_path(key)
        entry: tuple[Any, str | None]
        if isinstance(raw, dict):
            entry = (FactView(raw, path, self._ctx), None)
        elif isinstance(raw, list):
            entry = (_canonical(raw, path), path)
        else:
            entry = (raw, path)
        self._cache[key] = entry
        return entry

    def _value(self, key: str) -> Any:
        entry = self._cache.get(key)
        return (entry if entry is not None else self._entry(key))[0]

    def _whole(self) -> None:
        if self._path:
            self._ctx.fact_reads.add(self._path)
        else:
            self._ctx.fact_reads.update(dict.keys(self))

    def __getitem__(self, key: Any) -> Any:
        entry = self._cache.get(key)
        if entry is None:
            if not dict.__contains__(self, key):
                path = self._child_path(key)
                self._ctx.fact_reads.add(path)
                return StrictUndefined(
                    hint=f"fact {path!r} is not defined for node {self._ctx.node!r}",
                    name=str(key),
                )
            entry = self._entry(key)
        value, read = entry
        if read is not None:
            self._ctx.fact_reads.add(read)
        return value

    def get(self, key: Any, default: Any = None) -> Any:
        if dict.__contains__(self, key):
            return self[key]
        self._ctx.fact_reads.add(self._child_path(key))
        return default

    def __contains__(self, key: object) -> bool:
        self._ctx.fact_reads.add(self._child_path(key))
        return dict.__contains__(self, key)

    def __iter__(self) -> Iterator[str]:
        self._whole()
        return iter(list(dict.keys(self)))

    def __len__(self) -> int:
        self._whole()
        return dict.__len__(self)

    def keys(self) -> Any:
        self._whole()
        return list(dict.keys(self))

    def values(self) -> Any:
        self._whole()
        return [self._value(key) for key in dict.keys(self)]

    def items(self) -> Any:
        self._whole()
        return [(key, self._value(key)) for key in dict.keys(self)]

    def __eq__(self, other: object) -> bool:
        return self._plain() == other

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = None  # type: ignore[assignment]  # mutable mapping semantics: unhashable

    def __repr__(self) -> str:
        return repr(self._plain())

    def __str__(self) -> str:
        return repr(self._plain())

    def copy(self) -> dict[str, Any]:
        return self._plain()

    def _plain(self) -> dict[str, Any]:
        """A plain (sorted, deep) dict of this view; the whole subtree counts as read."""
        self._whole()
        return {
            key: value._plain() if isinstance(value, FactView) else value
            for key, value in ((k, self._value(k)) for k in dict.keys(self))
        }


class TrackedParams(DataView):
    """A profile's resolved parameters; reading one that carries a secret taints the value."""

    __slots__ = ("_ctx", "_declared", "_profile", "_tainted")

    def __init__(self, profile: str, declared: tuple[str, ...], ctx: NodeContext) -> None:
        super().__init__()
        self._profile = profile
        self._declared = declared
        self._ctx = ctx
        self._tainted: set[str] = set()

    def _set(self, name: str, value: Any, *, tainted: bool) -> None:
        dict.__setitem__(self, name, value)
        if tainted:
            self._tainted.add(name)

    def __getitem__(self, key: Any) -> Any:
        try:
            value = dict.__getitem__(self, key)
        except KeyError:
            if key in self._declared:
                hint = (
                    f"parameter {key!r} of profile {self._profile} is not resolved yet "
                    "(a default can only use parameters declared before it)"
                )
            else:
                hint = (
                    f"profile {self._profile} has no parameter {key!r}"
                    f"{did_you_mean(str(key), self._declared)}"
                )
            return StrictUndefined(hint=hint, name=str(key))
        if self._tainted and key in self._tainted:
            self._ctx.taint += 1
        return value

    def get(self, key: Any, default: Any = None) -> Any:
        return self[key] if dict.__contains__(self, key) else default

    def _all(self) -> None:
        if self._tainted:
            self._ctx.taint += 1

    def __iter__(self) -> Iterator[str]:
        return iter(list(dict.keys(self)))

    def values(self) -> Any:
        self._all()
        return list(dict.values(self))

    def items(self) -> Any:
        self._all()
        return list(dict.items(self))

    def __repr__(self) -> str:
        self._all()
        return dict.__repr__(self)

    def __str__(self) -> str:
        return self.__repr__()

    def copy(self) -> dict[str, Any]:
        self._all()
        return dict(dict.items(self))


def _sorted_items(data: Mapping[str, Any], path: str) -> list[tuple[str, Any]]:
    for key in data:
        if not isinstance(key, str):
            where = f"{path}.{key}" if path else str(key)
            raise LanguageError(f"facts: key {where!r} is not a string")
    return sorted(data.items())


def _canonical(value: Any, path: str) -> Any:
    """Lists inside facts: nested mappings re-built with sorted keys (determinism)."""
    if isinstance(value, dict):
        return {k: _canonical(v, f"{path}.{k}") for k, v in _sorted_items(value, path)}
    if isinstance(value, list):
        return [_canonical(item, path) for item in value]
    return value
