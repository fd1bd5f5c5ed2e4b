"""Per-node work: compile both sides with the node's latest facts, diff, build its entry.

Both sides are compiled from the same facts, so the difference is the change's and nothing
else's (facts that moved since the node's last run do not show up as the change). The
stored catalog is not used as the current side: it lacks the sensitive digests a
secret's change is judged by, and it may predate the node's latest facts; its hash is
reported beside the base compile's (``current.stored``) so a reader sees nodes that are not
at the base yet. A compile that fails is that node's ``failed`` entry, never an abort.

Sensitive content (a template or file that renders a secret) is diffed with its secret lines
masked: a line is shown only if it holds no secret value of the store verbatim *and* comes out
the same when the side is compiled again with every secret replaced by a stand-in (so a line
that renders a secret transformed, ``| upper`` or ``| b64encode``, is masked too). That second
compile runs only for nodes with such a change. Each node also names the changed templates
(with their includes) and static files that one of its secret-bearing resources renders
(``sensitive_inputs``): an edit that renders the same today (a branch on a fact no node has
yet) still needs review.

Large candidate sets are compiled in a process pool (the compiler is pure Python, one core
per process). A :class:`~steward.language.Repository` does not pickle (its mappings are
read-only proxies and its templates compiled Jinja): forked workers inherit the parent's,
spawned ones (when the parent runs several threads) load both sides from their directories
once and check every file digest against the parent's copy; if that cannot be done the work
runs in this process instead.
"""

from __future__ import annotations

import difflib
import multiprocessing
import os
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from steward.catalog.canonical import canonical_json
from steward.catalog.model import Catalog
from steward.compiler import CompileResult, compile_catalog
from steward.compiler.classify import classify
from steward.compiler.context import MIN_SCANNED_SECRET, FactView, NodeContext
from steward.errors import SecretError, StewardError
from steward.language import Repository, load_repository
from steward.language.values import Const
from steward.pipeline.impact.diff import (
    Side,
    classification_change,
    diff_catalogs,
    placeholder_keys,
    split_lines,
)
from steward.pipeline.impact.model import SENSITIVE_TEXT, ImpactError, NodeTask
from steward.pipeline.impact.report import (
    ClassificationChange,
    CompileFailure,
    CurrentSide,
    EdgeChange,
    NodeImpact,
    ProposedSide,
    ResourceChange,
)
from steward.secrets.store import SecretStore

#: Below this many nodes a pool's start-up (two repository loads per worker) is not worth it.
PARALLEL_MIN_NODES = 200
#: Nodes per pool task: small enough to balance the cores, large enough to amortise pickling.
CHUNK = 32
#: Secrets at least this long are searched for in error messages (shorter ones would hit
#: ordinary words; the compiler itself never puts a secret in a catalog or a message).
MIN_SCRUBBED_SECRET = 4


@dataclass(frozen=True, slots=True)
class Sides:
    """Everything a node's analysis needs besides the node itself."""

    base: Repository
    head: Repository
    environment: str
    base_code_id: str | None
    head_code_id: str | None
    secrets: SecretStore | None
    #: Secret values, longest first, kept out of messages and entries.
    secret_values: tuple[str, ...] = ()
    #: Changed files other than data files (profiles, roles, templates, static files).
    changed_code: frozenset[str] = frozenset()
    #: Every non-empty secret value, longest first: a content line holding one is masked.
    mask_values: tuple[str, ...] = ()


def make_sides(
    base: Repository,
    head: Repository,
    environment: str,
    base_code_id: str | None,
    head_code_id: str | None,
    secrets: SecretStore | None,
    changed_code: frozenset[str] = frozenset(),
) -> Sides:
    every = _secret_values(secrets, 1)
    return Sides(base, head, environment, base_code_id, head_code_id, secrets,
                 tuple(v for v in every if len(v) >= MIN_SCRUBBED_SECRET), changed_code, every)


def _secret_values(secrets: SecretStore | None, shortest: int) -> tuple[str, ...]:
    if secrets is None:
        return ()
    try:
        values = {secrets.get(name) for name in secrets.names()}
    except SecretError:
        return ()  # no readable store: no compile can resolve a secret either
    return tuple(sorted((v for v in values if len(v) >= shortest),
                        key=lambda v: (-len(v), v)))


# -- one node -----------------------------------------------------------------------------------


def analyse_node(sides: Sides, task: NodeTask) -> NodeImpact | None:
    """The node's report entry; None for a node of another environment that stays there."""
    env = sides.environment
    base_env = head_env = None
    if task.check_moves:
        base_env = _environment(sides.base, task)
        head_env = _environment(sides.head, task)
    if task.kind == "outsider":
        if head_env != env or base_env == env:
            return None
        head_result, head_error = _compile(sides, sides.head, sides.head_code_id, task)
        head_catalog = _catalog(head_result)
        resources, edges = diff_catalogs(None, head_catalog)
        status = "failed" if head_error is not None else "new"
        return _entry(sides, task, status, None, None, head_catalog, head_error,
                      [] if head_error else resources, [] if head_error else edges, None)
    base_result, base_error = _compile(sides, sides.base, sides.base_code_id, task)
    base_catalog = _catalog(base_result)
    if task.check_moves and base_env == env and head_env not in (None, env):
        return _entry(sides, task, "removed", base_catalog, base_error, None, None, [], [],
                      None, moved_to=head_env)
    head_result, head_error = _compile(sides, sides.head, sides.head_code_id, task)
    head_catalog = _catalog(head_result)
    if head_error is not None:
        return _entry(sides, task, "failed", base_catalog, base_error, None, head_error, [], [],
                      None)
    if base_catalog is not None and head_catalog is not None and (
        base_catalog.hash == head_catalog.hash
    ):
        resources, edges = [], []
    else:
        masker = _Masker(sides, task, base_result, head_result)
        resources, edges = diff_catalogs(base_catalog, head_catalog, masker)
    status = "changed" if resources or edges else "unchanged"
    return _entry(sides, task, status, base_catalog, base_error, head_catalog, None, resources,
                  edges, classification_change(base_catalog, head_catalog),
                  sensitive_inputs=_sensitive_inputs(sides, base_catalog, head_catalog))


def _catalog(result: CompileResult | None) -> Catalog | None:
    return result.catalog if result is not None else None


class _StandInStore(SecretStore):
    """The real store with every secret replaced by a stand-in of another length and other
    characters (never shown, never stored): what renders differently with it depends on a
    secret."""

    def __init__(self, real: SecretStore) -> None:  # no store of its own: no super()
        self._real = real

    def get(self, name: str) -> str:
        value = self._real.get(name)
        return "~" + self._real.digest(f"stand-in\0{name}\0{value}")[: max(8, len(value))]

    def names(self) -> list[str]:
        return self._real.names()

    def digest(self, value: str) -> str:
        return self._real.digest(value)


class _Masker:
    """Which lines of a node's sensitive contents hold or depend on a secret."""

    def __init__(self, sides: Sides, task: NodeTask, base: CompileResult | None,
                 head: CompileResult | None) -> None:
        self.sides = sides
        self.task = task
        self.results = {"before": base, "after": head}
        self.probes: dict[str, dict[str, str] | None] = {}

    def value(self, side: Side, key: str) -> str | None:
        result = self.results[side]
        return result.sensitive_values.get(key) if result is not None else None

    def masked_lines(self, side: Side, key: str | None, text: str) -> set[int] | None:
        lines = split_lines(text)
        masked = _verbatim(text, lines, self.sides.mask_values)
        if key is None:  # a plain text: nothing in it was derived from a secret
            return masked
        probes = self._probe(side)
        probe = probes.get(key) if probes is not None else None
        if probe is None:
            return set(range(len(lines)))
        matcher = difflib.SequenceMatcher(None, lines, split_lines(probe), autojunk=False)
        for tag, i1, i2, _j1, _j2 in matcher.get_opcodes():
            if tag != "equal":
                masked.update(range(i1, i2))
        return masked

    def _probe(self, side: Side) -> dict[str, str] | None:
        if side not in self.probes:
            sides = self.sides
            repo = sides.base if side == "before" else sides.head
            code_id = sides.base_code_id if side == "before" else sides.head_code_id
            found: dict[str, str] | None = None
            if sides.secrets is not None:
                try:
                    found = compile_catalog(
                        repo, self.task.certname, self.task.facts,
                        environment=sides.environment, secrets=_StandInStore(sides.secrets),
                        code_id=code_id).sensitive_values
                except Exception:  # no probe: every line is masked
                    found = None
            self.probes[side] = found
        return self.probes[side]


def _verbatim(text: str, lines: list[str], secrets: tuple[str, ...]) -> set[int]:
    """Lines overlapping an occurrence of a secret value (one spanning lines masks each)."""
    starts: list[int] = []
    offset = 0
    for line in lines:
        starts.append(offset)
        offset += len(line)
    masked: set[int] = set()
    for secret in secrets:
        at = text.find(secret)
        while at != -1:
            end = at + len(secret)
            masked.update(i for i, start in enumerate(starts)
                          if start < end and start + len(lines[i]) > at)
            at = text.find(secret, at + 1)
    return masked


def _sensitive_inputs(sides: Sides, base: Catalog | None, head: Catalog | None) -> list[str]:
    """Changed templates and static files that a resource carrying a secret renders, at base
    or at head."""
    if not sides.changed_code:
        return []
    found: set[str] = set()
    for repo, catalog in ((sides.base, base), (sides.head, head)):
        if catalog is None or not catalog.sensitive:
            continue
        for resource in catalog.resources:
            if not placeholder_keys(resource.parameters):
                continue
            if resource.file is None or resource.line is None:
                return sorted(sides.changed_code)  # no provenance: any changed file may feed it
            found.update(_feeding(repo, resource.file, resource.line) & sides.changed_code)
    return sorted(found)


def _feeding(repo: Repository, file: str, line: int) -> set[str]:
    """The files a declaration renders into content: its template with everything it
    includes, or its static file; every template and file when the source is an expression.
    (The profile itself is not one: its edits show in the catalogs it produces.)"""
    files: set[str] = set()
    for profile in repo.profiles.values():
        if profile.file != file:
            continue
        for decl in profile.resources:
            source = decl.content_source
            if decl.line != line or source is None:
                continue
            if not isinstance(source.value, Const):
                files.update(t.path for t in repo.templates.values())
                files.update(f.path for f in repo.files.values())
            elif source.name == "template":
                template = repo.templates.get(str(source.value.value))
                files.update(template.closure if template is not None else ())
            else:
                static = repo.files.get(str(source.value.value))
                files.update((static.path,) if static is not None else ())
    return files


def _environment(repo: Repository, task: NodeTask) -> str | None:
    """Where classification puts the node (None when it cannot classify it)."""
    try:
        facts = FactView(task.facts, "", NodeContext(task.certname, None))
        return classify(repo, task.certname, facts, None).environment
    except StewardError:
        return None


def _compile(
    sides: Sides, repo: Repository, code_id: str | None, task: NodeTask
) -> tuple[CompileResult | None, CompileFailure | None]:
    try:
        result = compile_catalog(repo, task.certname, task.facts, environment=sides.environment,
                                 secrets=sides.secrets, code_id=code_id)
    except StewardError as err:
        return None, CompileFailure(_scrub(str(err), sides.secret_values),
                                    _scrub(err.location, sides.secret_values)
                                    if err.location else None)
    except Exception as err:  # a compiler bug must fail this node, not the analysis
        return None, CompileFailure(_scrub(f"internal error while compiling {task.certname}: "
                                           f"{type(err).__name__}: {err}", sides.secret_values),
                                    None)
    return result, None


def _entry(
    sides: Sides,
    task: NodeTask,
    status: str,
    base_catalog: Catalog | None,
    base_error: CompileFailure | None,
    head_catalog: Catalog | None,
    head_error: CompileFailure | None,
    resources: list[ResourceChange],
    edges: list[EdgeChange],
    classification: ClassificationChange | None,
    *,
    moved_to: str | None = None,
    sensitive_inputs: list[str] | None = None,
) -> NodeImpact:
    member = task.kind == "member"
    entry = NodeImpact(
        certname=task.certname,
        status=status,
        current=CurrentSide(
            catalog=base_catalog.hash if base_catalog is not None else None,
            code_id=sides.base_code_id if member else None,
            stored=task.stored_hash,
            error=base_error if member else None,
        ),
        proposed=ProposedSide(
            catalog=head_catalog.hash if head_catalog is not None else None,
            code_id=sides.head_code_id if status != "removed" else None,
            environment=moved_to if moved_to is not None else sides.environment,
        ),
        classification=classification,
        resources=tuple(resources),
        edges=tuple(edges),
        sensitive_inputs=tuple(sensitive_inputs or ()),
        error=head_error,
        live=None,
    )
    return _scrub_entry(entry, sides.secret_values)


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for value in secrets:
        if value in text:
            text = text.replace(value, SENSITIVE_TEXT)
    return text


def _scrub_entry(entry: NodeImpact, secrets: tuple[str, ...]) -> NodeImpact:
    """Belt and braces: a secret value found anywhere in the entry is replaced. The compiler
    already turns every secret-carrying value into a placeholder; this only costs a scan."""
    scanned = [value for value in secrets if len(value) >= MIN_SCANNED_SECRET]
    if not scanned:
        return entry
    document = entry.to_json()
    text = canonical_json(document)
    if not any(value in text for value in scanned):
        return entry
    return NodeImpact.from_json(_scrub_value(document, tuple(scanned)))


def _scrub_value(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return _scrub(value, secrets)
    if isinstance(value, dict):
        return {_scrub(k, secrets): _scrub_value(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_value(v, secrets) for v in value]
    return value


# -- many nodes ---------------------------------------------------------------------------------


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def analyse_nodes(
    sides: Sides,
    batches: Iterable[list[NodeTask]],
    *,
    total: int,
    workers: int,
    parallel_min: int = PARALLEL_MIN_NODES,
) -> tuple[list[NodeImpact], int]:
    """Every entry (None results dropped) and the number of processes that did the work.

    ``batches`` is consumed lazily, so facts still being read overlap compiles running.
    """
    if workers <= 1 or total < parallel_min:
        return _serial(sides, (task for batch in batches for task in batch)), 1
    method, payload = _start_method(sides)
    given: list[NodeTask] = []
    futures: list[Future[list[dict[str, Any] | None]]] = []
    try:
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context(method),
            initializer=_init_worker,
            initargs=(payload,),
        ) as pool:
            for batch in batches:
                given.extend(batch)
                for start in range(0, len(batch), CHUNK):
                    futures.append(pool.submit(_work_chunk, batch[start : start + CHUNK]))
            entries = [NodeImpact.from_json(entry) for future in futures
                       for entry in future.result() if entry is not None]
    except BrokenProcessPool:
        # A worker could not load the repositories as the parent has them (a directory
        # changed underneath, say): do it here, with the parent's own objects.
        rest = (task for batch in batches for task in batch)
        return _serial(sides, _chain(given, rest)), 1
    return entries, workers


def _start_method(sides: Sides) -> tuple[str, Sides | _WorkerSpec]:
    """``fork`` when this process runs a single thread: workers inherit the loaded
    repositories and start at once. Otherwise (a server's thread pool) forking could copy a
    lock some other thread holds, so workers are spawned and load the repositories from
    their directories."""
    if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
        return "fork", sides
    return "spawn", _WorkerSpec.of(sides)


def _serial(sides: Sides, tasks: Iterable[NodeTask]) -> list[NodeImpact]:
    return [entry for task in tasks if (entry := analyse_node(sides, task)) is not None]


def _chain(first: list[NodeTask], rest: Iterator[NodeTask]) -> Iterator[NodeTask]:
    yield from first
    yield from rest


@dataclass(frozen=True, slots=True)
class _WorkerSpec:
    """What a worker process needs to rebuild :class:`Sides` (picklable)."""

    base_root: str
    base_digests: dict[str, str]
    head_root: str
    head_digests: dict[str, str]
    environment: str
    base_code_id: str | None
    head_code_id: str | None
    secrets: SecretStore | None
    secret_values: tuple[str, ...]
    changed_code: frozenset[str]
    mask_values: tuple[str, ...]

    @classmethod
    def of(cls, sides: Sides) -> _WorkerSpec:
        return cls(str(sides.base.root), dict(sides.base.digests), str(sides.head.root),
                   dict(sides.head.digests), sides.environment, sides.base_code_id,
                   sides.head_code_id, sides.secrets, sides.secret_values,
                   sides.changed_code, sides.mask_values)

    def load(self) -> Sides:
        base = _load_same(self.base_root, self.base_digests)
        head = base if self.head_root == self.base_root and self.head_digests == \
            self.base_digests else _load_same(self.head_root, self.head_digests)
        return Sides(base, head, self.environment, self.base_code_id, self.head_code_id,
                     self.secrets, self.secret_values, self.changed_code, self.mask_values)


def _load_same(root: str, digests: dict[str, str]) -> Repository:
    repo = load_repository(root)
    if dict(repo.digests) != digests:
        raise ImpactError(f"{root} no longer holds the repository being analysed")
    return repo


class _WorkerState:
    """The worker process's one analysis context, set once by the pool's initializer.

    A class attribute rather than a module variable so that it is plainly per-process state
    of a pool worker; the parent process never sets it.
    """

    sides: Sides | None = None


def _init_worker(payload: Sides | _WorkerSpec) -> None:
    _WorkerState.sides = payload if isinstance(payload, Sides) else payload.load()


def _work_chunk(tasks: list[NodeTask]) -> list[dict[str, Any] | None]:
    """The chunk's entries as JSON documents: pickling the typed entries costs ten times as
    much (dataclass state is set field by field), and the parent reads documents fast."""
    sides = _WorkerState.sides
    if sides is None:  # pragma: no cover - the initializer always runs first
        raise ImpactError("impact worker used before it was initialised")
    entries = (analyse_node(sides, task) for task in tasks)
    return [entry.to_json() if entry is not None else None for entry in entries]


def as_batches(
    tasks: Iterable[NodeTask], size: int
) -> Iterator[list[NodeTask]]:
    """Group a stream of tasks into lists of ``size``."""
    batch: list[NodeTask] = []
    for task in tasks:
        batch.append(task)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


__all__ = [
    "Sides",
    "analyse_node",
    "analyse_nodes",
    "as_batches",
    "default_workers",
    "make_sides",
]
