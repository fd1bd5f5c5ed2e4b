"""Value checks shared by load-time validation (constants) and compile-time (evaluated values)."""

from __future__ import annotations

import difflib
import functools
from typing import Any

from steward.catalog.model import make_ref, parse_ref
from steward.catalog.types import TYPES, Param
from steward.errors import describe_value

PROFILE_TYPES = {
    "string": "a string",
    "integer": "an integer",
    "boolean": "true or false",
    "list": "a list",
    "map": "a mapping",
    "any": "any value",
}


class SecretText(str):
    """A secret's value, marked so the compiler knows a parameter *is* that secret.

    Its ``repr`` never shows the value, so error messages cannot leak it.
    """

    secret_name: str

    def __new__(cls, value: str, name: str) -> SecretText:
        text = super().__new__(cls, value)
        text.secret_name = name
        return text

    def __repr__(self) -> str:
        return f"<secret {self.secret_name}>"


def describe(value: Any) -> str:
    """A short human description of a value's type and, for scalars, the value."""
    if isinstance(value, SecretText):
        return f"the secret {value.secret_name!r}"
    return describe_value(value)


def same_value(a: Any, b: Any) -> bool:
    """Equality that does not confuse ``true`` with ``1`` (Python's ``True == 1``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def check_profile_value(kind: str, allowed: tuple[Any, ...] | None, value: Any) -> str | None:
    """Why ``value`` does not fit a profile parameter of ``kind``, or None. Null means unset."""
    if value is None:
        return None
    if kind == "string":
        ok = isinstance(value, str)
    elif kind == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "list":
        ok = isinstance(value, list)
    elif kind == "map":
        ok = isinstance(value, dict)
    elif kind == "any":
        ok = True
    else:
        raise KeyError(kind)
    if not ok:
        return f"expected {PROFILE_TYPES[kind]}, got {describe(value)}"
    if allowed is not None and not any(same_value(value, choice) for choice in allowed):
        shown = ", ".join(repr(choice) for choice in allowed)
        return f"{value!r} is not one of the allowed values: {shown}"
    return None


def check_resource_value(param: Param, value: Any) -> str | None:
    """``Param.check`` plus a hint for the classic YAML octal trap (``mode: 0644``)."""
    problem = param.check(value)
    if problem is not None and param.kind == "mode" and isinstance(value, int):
        problem += f' (YAML read 0{value:o} as a number; quote it: "0{value:o}")'
    return problem


def _normalise_ref(text: str) -> str:
    head, bracket, rest = text.strip().partition("[")
    type_name, title = parse_ref(head.strip().lower() + bracket + rest)
    if type_name not in TYPES:
        close = difflib.get_close_matches(type_name, sorted(TYPES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown resource type {type_name!r} in {text!r}{hint}")
    title = title.strip()
    if not title:
        raise ValueError(f"{text!r} has an empty title")
    return make_ref(type_name, title)


#: Catalogs name the same references over and over (a failure is not memoised).
_normalise_ref_memo = functools.lru_cache(maxsize=4096)(_normalise_ref)


def normalise_ref(text: str) -> str:
    """``Package[ nginx ]`` → ``package[nginx]``; ValueError (with the reason) when invalid."""
    if type(text) is str:  # never a SecretText: the memo must not keep a secret alive
        return _normalise_ref_memo(text)
    return _normalise_ref(text)
