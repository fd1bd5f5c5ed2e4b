"""The one place that talks to regopy, Microsoft's binding of the rego-cpp interpreter.

Modules are compiled once into a bundle with one entrypoint per rule we will ask for; each
evaluation then only sets the input and runs the entrypoints (about ten times cheaper than
``Interpreter.query``, which recompiles the query every time).

We call regopy's C-level functions (``regopy.rego_shared``) instead of its ``Interpreter`` and
``Output`` classes because of what regopy 1.5.2 gets wrong, all covered by tests:

- a query that fails inside the compiler returns a NULL output, which regopy's wrappers do not
  notice (they compare ``None == 0``) and then dereference: the process segfaults;
- ``regopy.Input`` stores strings unescaped, so any quote in the input corrupts the output
  JSON; we hand the input over as JSON text (``regoSetInputJSON``) instead;
- errors are reported as trieste S-expressions (``(error 15:policies/a.rego|55|13 (errormsg
  ...))``, byte offsets) on stdout; we silence the log and turn them into ``file:line:col``;
- ``with input as <document>`` (replacing the whole input) aborts the process while
  building; we refuse it before rego-cpp sees it (``with input.<field> as`` works).

rego-cpp has no step, time or memory limit of its own (``numbers.range(1, 1e9)`` runs and
grows until the machine runs out), and it reports recursion only when evaluation reaches it.
So :class:`RegoProgram` runs the engine (:class:`RegoEngine`) in a child process of its own
(:mod:`steward.pipeline.policy.sandbox`) with a memory limit (``RLIMIT_AS``, set once the
engine's allocator is initialised) and a wall-clock limit per rule: a rule that runs too long
or too big kills that child, fails with a message naming its policy file, and the next
evaluation starts a fresh child. A crash of the engine cannot take the server down either.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import selectors
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from regopy import rego_shared as _rs  # type: ignore[import-untyped]

from steward.pipeline.policy.errors import PolicyRuntimeError, RegoSyntaxError

_SET_INPUT_JSON = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p, ctypes.c_char_p)(
    ("regoSetInputJSON", _rs.rego)
)
_QUERY_ENTRYPOINT = ctypes.CFUNCTYPE(
    ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p
)(("regoBundleQueryEntrypoint", _rs.rego))
_BUILD = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)(("regoBuild", _rs.rego))


@dataclass(frozen=True, slots=True)
class RegoModule:
    """One ``.rego`` file: the path errors name, and its text."""

    path: str
    source: str


class _Undefined:
    """The value of a rule whose body did not succeed (Rego's ``undefined``)."""

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED = _Undefined()


def entrypoint(rule: str) -> str:
    """The bundle entrypoint of a dotted rule reference (``a.b.deny`` → ``a/b/deny``)."""
    return rule.removeprefix("data.").replace(".", "/")


# -- lexing: enough of Rego to find packages, rule heads and references outside strings ------


def blank_strings_and_comments(source: str) -> str:
    """``source`` with string literals and comments blanked out, offsets and newlines kept."""
    out = list(source)
    i, n = 0, len(source)
    while i < n:
        char = source[i]
        if char == "#":
            while i < n and source[i] != "\n":
                out[i] = " "
                i += 1
        elif char == '"':
            i += 1
            while i < n and source[i] not in '"\n':
                if source[i] == "\\" and i + 1 < n:
                    out[i] = " "
                    i += 1
                out[i] = " "
                i += 1
            i += 1
        elif char == "`":
            i += 1
            while i < n and source[i] != "`":
                if source[i] != "\n":
                    out[i] = " "
                i += 1
            i += 1
        else:
            i += 1
    return "".join(out)


_PACKAGE = re.compile(r"^[ \t]*package[ \t]+([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)",
                      re.MULTILINE)
_WITH_WHOLE_INPUT = re.compile(r"\bwith\s+input\s+as\b")


def line_of(source: str, index: int) -> int:
    return source.count("\n", 0, index) + 1


def package_of(module: RegoModule) -> tuple[str, int]:
    """The module's package and its line; a module without one is a syntax error."""
    match = _PACKAGE.search(blank_strings_and_comments(module.source))
    if match is None:
        raise RegoSyntaxError("Rego module has no 'package' declaration", location=module.path)
    return match.group(1), line_of(module.source, match.start(1))


def _refuse_whole_input_with(module: RegoModule) -> None:
    match = _WITH_WHOLE_INPUT.search(blank_strings_and_comments(module.source))
    if match is not None:
        raise RegoSyntaxError(
            "'with input as ...' (replacing the whole input) crashes regopy 1.5.2; replace "
            "the fields the rule reads instead, e.g. 'with input.impact as {...} with "
            "input.environment as \"production\"'",
            location=f"{module.path}:{line_of(module.source, match.start())}",
        )


# -- errors --------------------------------------------------------------------------------

_ERROR_HEAD = re.compile(rb"\(error\s+(?:(\d+):)?")
_LOCATION = re.compile(rb"\|(\d+)\|(\d+)")
_ERRORMSG = re.compile(rb"\(errormsg (\d+):")


def describe_errors(text: str, modules: Sequence[RegoModule]) -> list[tuple[str | None, str]]:
    """``(location, message)`` pairs out of rego-cpp's S-expression error text.

    Names and messages are length-prefixed (in bytes), so they are cut by length, not by
    parsing; offsets are bytes into the module's source, turned into ``file:line:col``.
    """
    data = text.encode("utf-8", "replace")
    sources = {module.path: module.source for module in modules}
    found: list[tuple[str | None, str]] = []
    pos = 0
    while (head := _ERROR_HEAD.search(data, pos)) is not None:
        cursor = head.end()
        name = ""
        if head.group(1) is not None:
            size = int(head.group(1))
            name = data[cursor:cursor + size].decode("utf-8", "replace")
            cursor += size
        offset: int | None = None
        where = _LOCATION.match(data, cursor)
        if where is not None:
            offset = int(where.group(1))
            cursor = where.end()
        message = "Rego error"
        msg = _ERRORMSG.search(data, cursor)
        next_error = _ERROR_HEAD.search(data, cursor)
        if msg is not None and (next_error is None or msg.start() < next_error.start()):
            size = int(msg.group(1))
            message = data[msg.end():msg.end() + size].decode("utf-8", "replace")
            cursor = msg.end() + size
        found.append((_locate(name, offset, sources), message))
        pos = cursor
    if not found and text.strip():
        found.append((None, " ".join(text.split())))
    return found


def _locate(name: str, offset: int | None, sources: Mapping[str, str]) -> str | None:
    if not name:
        return None
    source = sources.get(name)
    if source is None or offset is None:
        return name
    prefix = source.encode("utf-8")[:offset]
    line = prefix.count(b"\n") + 1
    column = offset - (prefix.rfind(b"\n") + 1) + 1
    return f"{name}:{line}:{column}"


def _raise_errors(text: str, modules: Sequence[RegoModule], what: str,
                  error: type[RegoSyntaxError | PolicyRuntimeError],
                  fallback: str | None = None) -> None:
    errors = describe_errors(text, modules) or [(None, "unknown error")]
    location, message = errors[0]
    location = location or fallback
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    raise error(f"{what}: {message}{more}", location=location)


def _node_error_text(node: Any) -> str:
    """The S-expressions of an error sequence node (a failed bundle or output)."""
    parts = []
    for index in range(_rs.rego_node_size(node)):
        parts.append(_rs.rego_node_json(_rs.rego_node_get(node, index)))
    return "\n".join(parts)


# -- the compiled program ------------------------------------------------------------------


def _free(interpreter: Any, bundle: Any) -> None:
    if bundle:
        _rs.rego_free_bundle(bundle)
    _rs.rego_free(interpreter)


class RegoEngine:
    """Modules compiled once into a bundle; evaluated many times against different inputs.

    In-process and unbounded: used inside the sandbox process (:class:`RegoProgram`).

    rego-cpp interpreters are not thread-safe, so evaluations of one program take turns.
    """

    #: After an input this large the bundle is rebuilt before the next evaluation (below).
    REBUILD_AFTER_INPUT_BYTES = 64 * 1024

    def __init__(self, modules: Sequence[RegoModule], rules: Iterable[str]) -> None:
        self.modules = tuple(modules)
        self.rules = tuple(dict.fromkeys(rules))
        self._lock = threading.Lock()
        for module in self.modules:
            _refuse_whole_input_with(module)
        self._packages = tuple((module.path, package_of(module)[0]) for module in self.modules)
        self._bundle: Any = None
        self._finalizer: weakref.finalize[Any, RegoEngine] | None = None
        self._stale = False
        self._build()

    def _build(self) -> None:
        """Compile the modules into a fresh bundle, raising RegoSyntaxError with file:line."""
        interpreter = _rs.rego_new()
        finalizer = weakref.finalize(self, _free, interpreter, None)
        _rs.rego_set_log_level(interpreter, _rs.LogLevel.NONE)
        for module in self.modules:
            try:
                _rs.rego_add_module(interpreter, module.path, module.source)
            except _rs.RegoError as exc:
                _raise_errors(str(exc), self.modules, "Rego syntax error", RegoSyntaxError)
        for rule in self.rules:
            _rs.rego_add_entrypoint(interpreter, entrypoint(rule))
        bundle = _BUILD(interpreter)
        if not bundle:
            _raise_errors(_rs.rego_get_error(interpreter), self.modules, "Rego compile error",
                          RegoSyntaxError)
        finalizer.detach()
        finalizer = weakref.finalize(self, _free, interpreter, bundle)
        if not _rs.rego_bundle_ok(bundle):
            _raise_errors(_node_error_text(_rs.rego_bundle_node(bundle)), self.modules,
                          "Rego compile error", RegoSyntaxError)
        if self._finalizer is not None:
            self._finalizer()
        self._bundle, self._finalizer, self._stale = bundle, finalizer, False

    def evaluate(self, input_json: str, rules: Sequence[str]) -> dict[str, Any]:
        """The value of each rule (``UNDEFINED`` when its body fails) for this input.

        Each evaluation runs the compiled bundle in a fresh interpreter, and a bundle that
        has seen a large input is rebuilt (about 10 ms for the built-ins) before the next
        one: in rego-cpp 1.5.2 a bundle queried with a large input stays slower for every
        later input (measured on 300 distinct diffs: 0.10 s, then 0.18-0.29 s each time;
        rebuilt: 0.10-0.15 s).
        """
        with self._lock:
            if self._stale:
                self._build()
            self._stale = len(input_json) > self.REBUILD_AFTER_INPUT_BYTES
            interpreter = _rs.rego_new()
            try:
                _rs.rego_set_log_level(interpreter, _rs.LogLevel.NONE)
                if _SET_INPUT_JSON(interpreter, input_json.encode("utf-8")) != 0:
                    raise PolicyRuntimeError(
                        f"rego-cpp refused the policy input: {_rs.rego_get_error(interpreter)}")
                return {rule: self._query(interpreter, rule) for rule in rules}
            finally:
                _rs.rego_free(interpreter)

    def evaluate_each(self, input_json: str, rules: Sequence[str]) -> Iterator[tuple[str, Any]]:
        """Each rule's value or its PolicyRuntimeError, one at a time (for streaming)."""
        for rule in rules:
            try:
                yield rule, self.evaluate(input_json, [rule])[rule]
            except PolicyRuntimeError as exc:
                yield rule, exc

    def _query(self, interpreter: Any, rule: str) -> Any:
        output = _QUERY_ENTRYPOINT(interpreter, self._bundle, entrypoint(rule).encode("utf-8"))
        where = self._module_of(rule)
        if not output:
            _raise_errors(_rs.rego_get_error(interpreter), self.modules,
                          f"evaluating {rule} failed", PolicyRuntimeError, where)
        try:
            if not _rs.rego_output_ok(output):
                _raise_errors(_node_error_text(_rs.rego_output_node(output)), self.modules,
                              f"evaluating {rule} failed", PolicyRuntimeError, where)
            text = _rs.rego_output_string(output)
        finally:
            _rs.rego_free_output(output)
        if text.lstrip().startswith("(error"):
            # Some failures (an unknown function) come back as an "ok" output holding errors.
            _raise_errors(text, self.modules, f"evaluating {rule} failed", PolicyRuntimeError,
                          where)
        return _decode(text, rule)

    def _module_of(self, rule: str) -> str | None:
        """The file declaring the rule's package, to name when rego-cpp gives no location."""
        package = rule.removeprefix("data.").rpartition(".")[0]
        paths = [path for path, name in self._packages if name == package]
        return ", ".join(paths) if paths else None


def _decode(text: str, rule: str) -> Any:
    if text.strip() == "undefined":
        return UNDEFINED
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        raise PolicyRuntimeError(
            f"{rule} produced a value rego-cpp could not serialise as JSON ({text[:120]!r}); "
            "regopy 1.5.2's sprintf quotes strings that come from function arguments or "
            "built-ins (upper, concat, ...): build messages with concat and use sprintf for "
            "numbers only"
        ) from None
    results = document if isinstance(document, list) else [document]
    if not results or not isinstance(results[0], dict):
        return UNDEFINED
    expressions = results[0].get("expressions") or []
    return expressions[0] if expressions else UNDEFINED


# -- the sandbox: the engine in a child process with memory and time limits ----------------


@dataclass(frozen=True, slots=True)
class RegoLimits:
    """Evaluation limits (docs/policy.md#limits)."""

    #: Wall-clock seconds one rule may take on one input.
    seconds: float = 10.0
    #: Memory (address space) the engine may take beyond what it has once started.
    memory: int = 1024 * 1024 * 1024
    #: Seconds to start the sandbox and compile the modules.
    startup_seconds: float = 60.0


DEFAULT_REGO_LIMITS = RegoLimits()


class _Child:
    """One sandbox process speaking JSON lines on its stdin/stdout."""

    def __init__(self, modules: Sequence[RegoModule], rules: Sequence[str],
                 limits: RegoLimits) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "steward.pipeline.policy.sandbox"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._buffer = b""
        self.send({"modules": [[m.path, m.source] for m in modules], "rules": list(rules),
                   "memory": limits.memory})

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(message).encode("utf-8") + b"\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the reply (EOF) says it died

    def receive(self, deadline: float) -> dict[str, Any] | None:
        """The next message; None when the child died; TimeoutError past ``deadline``."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    raise TimeoutError
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return None
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        message: dict[str, Any] = json.loads(line)
        return message

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.kill()
        code = self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        return code


def _stop_child(holder: list[_Child]) -> None:
    for child in holder:
        child.stop()
    holder.clear()


def _error_from(reply: dict[str, Any]) -> RegoSyntaxError | PolicyRuntimeError:
    kind = RegoSyntaxError if reply.get("kind") == "syntax" else PolicyRuntimeError
    return kind(str(reply.get("message", "Rego error")), location=reply.get("location"))


class RegoProgram:
    """The policy modules, compiled and evaluated in a sandbox process (module docstring).

    The same interface as :class:`RegoEngine`: building raises :class:`RegoSyntaxError`
    (file:line:col), :meth:`evaluate` raises :class:`PolicyRuntimeError`. Evaluations take
    turns (one child per program).
    """

    def __init__(self, modules: Sequence[RegoModule], rules: Iterable[str],
                 limits: RegoLimits = DEFAULT_REGO_LIMITS) -> None:
        self.modules = tuple(modules)
        self.rules = tuple(dict.fromkeys(rules))
        self.limits = limits
        for module in self.modules:
            _refuse_whole_input_with(module)
        self._packages = tuple((module.path, package_of(module)[0]) for module in self.modules)
        self._lock = threading.Lock()
        #: The running child, if any (a list so the finalizer can see it without ``self``).
        self._child: list[_Child] = []
        self._finalizer = weakref.finalize(self, _stop_child, self._child)
        with self._lock:
            self._start()

    def _start(self) -> _Child:
        if self._child:
            return self._child[0]
        child = _Child(self.modules, self.rules, self.limits)
        try:
            reply = child.receive(time.monotonic() + self.limits.startup_seconds)
        except TimeoutError:
            reply = {"kind": "runtime", "message": "the Rego sandbox did not start in "
                     f"{self.limits.startup_seconds:g} s"}
        if reply is None or "ok" not in reply:
            code = child.stop()
            raise _error_from(reply or {"kind": "runtime", "message": (
                f"the Rego sandbox exited while compiling the policies (exit code {code})")})
        self._child.append(child)
        return child

    def close(self) -> None:
        """Stop the sandbox process (it is restarted by the next evaluation)."""
        with self._lock:
            _stop_child(self._child)

    def evaluate(self, input_json: str, rules: Sequence[str]) -> dict[str, Any]:
        """The value of each rule (``UNDEFINED`` when its body fails) for this input."""
        values = self.evaluate_each(input_json, rules)
        for value in values.values():
            if isinstance(value, PolicyRuntimeError):
                raise value
        return values

    def evaluate_each(self, input_json: str, rules: Sequence[str]) -> dict[str, Any]:
        """Each rule's value, or the :class:`PolicyRuntimeError` that rule failed with: one
        rule over the limits fails alone (the others are evaluated in a fresh sandbox)."""
        results: dict[str, Any] = {}
        pending = list(dict.fromkeys(rules))
        with self._lock:
            while pending:
                child = self._start()
                child.send({"input": input_json, "rules": pending})
                while pending:
                    rule = pending[0]
                    try:
                        reply = child.receive(time.monotonic() + self.limits.seconds)
                    except TimeoutError:
                        _stop_child(self._child)
                        results[rule] = self._over_limit(
                            rule, f"took longer than {self.limits.seconds:g} s")
                        pending.pop(0)
                        break
                    if reply is None:
                        code = child.stop()
                        self._child.clear()
                        results[rule] = self._over_limit(
                            rule, f"exceeded the memory limit of {self.limits.memory >> 20} MiB "
                            f"or crashed the Rego engine (exit code {code})")
                        pending.pop(0)
                        break
                    pending.pop(0)
                    if "error" in reply:
                        results[rule] = _error_from(reply["error"])
                    elif reply.get("undefined"):
                        results[rule] = UNDEFINED
                    else:
                        results[rule] = reply.get("value")
        return results

    def _over_limit(self, rule: str, what: str) -> PolicyRuntimeError:
        return PolicyRuntimeError(
            f"evaluating {rule} {what}: the policy was stopped (docs/policy.md#limits); "
            "a recursive or unbounded rule (numbers.range, walk over a huge value) is the "
            "usual cause", location=self._module_of(rule))

    def _module_of(self, rule: str) -> str | None:
        """The file declaring the rule's package, to name when rego-cpp gives no location."""
        package = rule.removeprefix("data.").rpartition(".")[0]
        paths = [path for path, name in self._packages if name == package]
        return ", ".join(paths) if paths else None
