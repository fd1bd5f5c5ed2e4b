"""Compile limits: no repository line may make one compilation unbounded in memory or time.

A template such as ``{{ 'A' * 10**9 }}`` or ``{{ 2 ** 10**9 }}`` is a single expression, and
Jinja's sandbox lets it allocate gigabytes (the server's memory is the whole fleet's). So every
operation that can make a value much larger than its operands (repetition, concatenation,
padding, joining, formatting, integer powers) is checked *before* it runs, every value a
template produces is checked after, and each compilation has a budget of steps (loop
iterations, calls, operators), of produced text and of wall-clock time. The checks are
deterministic except the time limit, a backstop that a compile within the other limits does
not reach. Every violation raises :class:`~steward.language.errors.LimitError`, which the
evaluator locates at the template or YAML line, like any other expression error.

The budget of the compilation running in this thread (or task) lives in a context variable:
compilations share one environment (and threads), and Jinja's sandbox hooks receive no state
of ours; a context variable is per thread and per task, set and reset by :func:`budget`.
"""

from __future__ import annotations

import contextlib
import re
import string
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from steward.language.errors import LimitError

DOC = "docs/language.md#limits"


@dataclass(frozen=True, slots=True)
class Limits:
    """The compile limits (docs/language.md#limits); the defaults fit any real catalog."""

    #: Characters of any one string (a rendered template, file or parameter included).
    text: int = 4 * 1024 * 1024
    #: Entries of any one list or mapping, and iterations of any one loop.
    items: int = 100_000
    #: Bits of any one integer.
    int_bits: int = 4096
    #: Loop iterations, calls and operators in one compilation.
    steps: int = 10_000_000
    #: Characters (or list entries) produced by templates and operators in one compilation.
    produced: int = 256 * 1024 * 1024
    #: Resources in one catalog.
    resources: int = 100_000
    #: Wall-clock seconds for one compilation.
    seconds: float = 10.0


DEFAULT_LIMITS = Limits()


class Budget:
    """What one compilation has spent: steps, produced characters, time."""

    __slots__ = ("deadline", "limits", "produced", "steps")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.steps = 0
        self.produced = 0
        self.deadline = time.monotonic() + limits.seconds

    def step(self, count: int = 1) -> None:
        self.steps += count
        if self.steps > self.limits.steps:
            raise LimitError(
                f"the compilation exceeded {self.limits.steps} steps (loop iterations, calls "
                f"and operators); see {DOC}"
            )
        if time.monotonic() > self.deadline:
            raise LimitError(
                f"the compilation took longer than {self.limits.seconds:g} s; see {DOC}"
            )

    def produce(self, size: int) -> None:
        self.produced += size
        if self.produced > self.limits.produced:
            raise LimitError(
                f"the compilation produced more than {self.limits.produced} characters of "
                f"text and list entries; see {DOC}"
            )


_BUDGET: ContextVar[Budget | None] = ContextVar("steward_compile_budget", default=None)


@contextlib.contextmanager
def budget(limits: Limits) -> Iterator[Budget]:
    """Give the compilation running in this context its own budget."""
    spent = Budget(limits)
    token = _BUDGET.set(spent)
    try:
        yield spent
    finally:
        _BUDGET.reset(token)


def current_budget() -> Budget | None:
    return _BUDGET.get()


def step(count: int = 1) -> None:
    spent = _BUDGET.get()
    if spent is not None:
        spent.step(count)


def produce(size: int) -> None:
    spent = _BUDGET.get()
    if spent is not None:
        spent.produce(size)


# -- sizes ---------------------------------------------------------------------------------


def too_long(what: str, size: int, limit: int, unit: str = "characters") -> LimitError:
    return LimitError(f"{what} would be {size} {unit}; the limit is {limit} ({DOC})")


def measure(value: Any, limit: int) -> int:
    """About how many characters ``str(value)`` (or its JSON) takes, counting shared objects
    each time they appear; stops early once past ``limit``."""
    total = 0
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is str or kind is bytes or isinstance(item, str | bytes):
            total += len(item) + 2
        elif kind is bool or item is None:
            total += 5
        elif kind is int:
            total += item.bit_length() // 3 + 1
        elif isinstance(item, dict):
            total += 2 * len(item) + 2
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2 * len(item) + 2
            pending.extend(item)
        else:
            total += 24
        if total > limit:
            return total
    return total


def check_value(limits: Limits, value: Any, what: str) -> Any:
    """Refuse a value (a result) larger than the limits; charge it to the budget."""
    kind = type(value)
    if kind is str or kind is bytes or isinstance(value, str | bytes):
        if len(value) > limits.text:
            raise too_long(what, len(value), limits.text)
        produce(len(value))
    elif kind is int:
        if value.bit_length() > limits.int_bits:
            raise too_long(what, value.bit_length(), limits.int_bits, "bits")
    elif isinstance(value, list | tuple | dict | set | frozenset):
        if len(value) > limits.items:
            raise too_long(what, len(value), limits.items, "entries")
        produce(len(value))
    return value


def check_text_of(limits: Limits, value: Any, what: str) -> Any:
    """Refuse a value whose text (``str``) would exceed the limit, before it is converted."""
    if not isinstance(value, str | int | float | bool) and value is not None:
        size = measure(value, limits.text)
        if size > limits.text:
            raise too_long(what, size, limits.text)
    return value


def _length(value: Any) -> int | None:
    try:
        return len(value)
    except TypeError:
        return None


def check_binop(limits: Limits, operator: str, left: Any, right: Any) -> None:
    """Refuse ``left <operator> right`` when its result would exceed the limits."""
    what = f"the result of {operator!r}"
    if operator == "*":
        count, seq = (right, left) if isinstance(right, int) else (left, right)
        if isinstance(count, int) and not isinstance(seq, int | float):
            size = _length(seq)
            if size is not None:
                limit, unit = (
                    (limits.text, "characters") if isinstance(seq, str | bytes)
                    else (limits.items, "entries")
                )
                if size * count > limit:
                    raise too_long(what, size * count, limit, unit)
    elif operator == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            bits = (abs(left).bit_length() - 1) * right
            if bits > limits.int_bits:
                raise too_long(what, bits, limits.int_bits, "bits")
    elif operator == "+":
        a, b = _length(left), _length(right)
        if a is not None and b is not None and not isinstance(left, dict):
            text = isinstance(left, str | bytes)
            limit, unit = (limits.text, "characters") if text else (limits.items, "entries")
            if a + b > limit:
                raise too_long(what, a + b, limit, unit)
    elif operator == "%" and isinstance(left, str):
        check_percent(limits, left, right, what)


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_NUMBER = re.compile(r"\d+")


def _big_number_args(limits: Limits, args: Any) -> bool:
    values = args if isinstance(args, tuple | list) else (args,)
    return any(isinstance(v, int) and v > limits.text for v in values)


def check_percent(limits: Limits, template: str, args: Any, what: str) -> None:
    """``'%10000000000d' % 1``: widths and precisions (given or ``*``) within the limit."""
    for match in _PERCENT_SPEC.finditer(template):
        for part in match.groups():
            if part is None:
                continue
            if part == "*":
                if _big_number_args(limits, args):
                    raise too_long(what, limits.text + 1, limits.text)
            elif int(part) > limits.text:
                raise too_long(what, int(part), limits.text)
    size = measure(args, limits.text) + len(template)
    if size > limits.text:
        raise too_long(what, size, limits.text)


def check_format(limits: Limits, template: str, args: Any, what: str) -> None:
    """``'{:>10000000000}'.format(1)``: widths within the limit, nested ones included."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        return  # str.format raises the same error itself
    for _, _, spec, _ in fields:
        for number in _NUMBER.findall(spec or ""):
            if int(number) > limits.text:
                raise too_long(what, int(number), limits.text)
        if spec and "{" in spec and _big_number_args(limits, args):
            raise too_long(what, limits.text + 1, limits.text)
    size = measure(args, limits.text) + len(template)
    if size > limits.text:
        raise too_long(what, size, limits.text)


def check_width(limits: Limits, width: Any, base: int, lines: int, what: str) -> None:
    """Padding to ``width`` (an int, or a string repeated per line) stays within the limit."""
    per_line = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    size = base + per_line * max(lines, 1)
    if size > limits.text:
        raise too_long(what, size, limits.text)


def check_join(limits: Limits, separator: Any, items: list[Any], what: str) -> None:
    if len(items) > limits.items:
        raise too_long(what, len(items), limits.items, "entries")
    sep = len(separator) if isinstance(separator, str | bytes) else 0
    size = sep * max(len(items) - 1, 0)
    for item in items:
        size += len(item) if isinstance(item, str) else measure(item, limits.text)
        if size > limits.text:
            break
    if size > limits.text:
        raise too_long(what, size, limits.text)


def check_replace(limits: Limits, text: str, old: str, new: str, count: Any, what: str) -> None:
    if not isinstance(text, str) or not isinstance(old, str) or not isinstance(new, str):
        return
    hits = len(text) + 1 if not old else text.count(old)
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    size = len(text) + hits * (len(new) - len(old))
    if size > limits.text:
        raise too_long(what, size, limits.text)


def check_method(
    limits: Limits, method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Pre-check the string methods that can make a result much larger than their input."""
    owner = getattr(method, "__self__", None)
    if owner is None:  # the sandbox wraps str.format; the wrapper keeps the bound method
        owner = getattr(getattr(method, "__wrapped__", None), "__self__", None)
    if not isinstance(owner, str | bytes):
        return
    name = getattr(method, "__name__", "")
    what = f"the result of {name}()"
    first = args[0] if args else None
    if name in ("ljust", "rjust", "center", "zfill"):
        width = first if first is not None else kwargs.get("width")
        if isinstance(width, int) and width > limits.text:
            raise too_long(what, width, limits.text)
    elif name == "expandtabs":
        size = first if first is not None else kwargs.get("tabsize", 8)
        if isinstance(size, int) and isinstance(owner, str):
            check_width(limits, size, len(owner), owner.count("\t"), what)
    elif name == "join" and args:
        items = args[0] if isinstance(args[0], list | tuple) else None
        if items is not None:
            check_join(limits, owner, list(items), what)
    elif name == "replace" and len(args) >= 2 and isinstance(owner, str):
        check_replace(limits, owner, args[0], args[1], args[2] if len(args) > 2 else -1, what)
    elif name in ("format", "format_map") and isinstance(owner, str):
        check_format(limits, owner, (*args, *kwargs.values()), what)
