"""Errors a desired-state repository or its compilation can raise.

Each names the repository file and line at fault in ``location`` and the field in its message,
so the CLI prints one line a person (or an agent) can act on, never a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from steward.errors import StewardError


class LanguageError(StewardError):
    """Base of every error about the desired-state language."""


class RepositoryError(LanguageError):
    """A repository file cannot be read or does not follow the format (YAML, schema, syntax)."""


class DuplicateKeyError(RepositoryError):
    """A YAML mapping names the same key twice; PyYAML would silently keep the last one."""


class ClassificationError(LanguageError):
    """Matching rules disagree on a node's environment, role or profile parameters."""


class ParameterError(LanguageError):
    """A profile parameter is unknown, missing, of the wrong type or not allowed."""


class ResourceError(LanguageError):
    """A resource declaration is invalid: unknown type or parameter, wrong value."""


class DuplicateResourceError(ResourceError):
    """Two declarations manage the same resource (same title or same namevar)."""


class RelationshipError(ResourceError):
    """A relationship names a resource the catalog does not declare."""


class CycleError(LanguageError):
    """Relationships (explicit or automatic) form a cycle, so there is no order to apply."""


class DataError(LanguageError):
    """A hierarchical data lookup failed: missing key, bad merge, malformed data file."""


class ExpressionError(LanguageError):
    """A Jinja expression inside a repository YAML file failed to evaluate."""


class TemplateError(ExpressionError):
    """A template under templates/ failed to load or render."""


class LimitError(ExpressionError):
    """An expression, template or catalog exceeded a compile limit (size, loop length, steps,
    time): without the limits one repository line could exhaust the server's memory or CPU."""


def at(file: str, line: int | None) -> str:
    """The ``file:line`` form every location uses."""
    return f"{file}:{line}" if line is not None else file


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """A `` (did you mean 'x'?)`` suffix, or an empty string when nothing is close."""
    close = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def relocated(error: StewardError, location: str) -> StewardError:
    """The same error, located at ``location``; used when the raiser cannot know its call site."""
    if error.location is not None:
        return error
    new = type(error)(error.message, location=location)
    new.__cause__ = error.__cause__
    return new
