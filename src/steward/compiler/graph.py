"""The dependency graph: explicit relationships, automatic dependencies, cycle detection.

Edges are normalised PuppetDB-style so the source is always applied first. Automatic
dependencies ("autorequire") are materialised in the catalog, so the engine and every reader
see the same order the compiler checked for cycles.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Mapping
from typing import Any

from steward.catalog.model import Edge, Resource
from steward.catalog.types import TYPES
from steward.compiler.resources import RELATIONSHIP_KINDS, Expander, namevar_key
from steward.language.declarations import PATH_PARAMS
from steward.language.errors import CycleError, RelationshipError, at, did_you_mean

EdgeKey = tuple[int, int, str]
_CRON_USER = TYPES["cron"].by_name["user"].default
_HOSTS_FILE = TYPES["host"].by_name["target"].default
#: Type → the parameter holding its path (for the nearest-directory autorequire).
_PATH_PARAM = {kind: names[0] for kind, names in PATH_PARAMS.items()}
_OWNED = frozenset({"file", "directory"})
_RUN_AS = frozenset({"exec", "cron"})
#: Relationships declared on the resource applied first.
_FORWARD = frozenset({"before", "notify"})


def build_edges(expanded: Expander) -> list[Edge]:
    """All edges, sorted by (source index, target index, relationship); raises on cycles."""
    resources = expanded.resources
    by_ref = expanded.by_ref
    by_namevar = expanded.by_namevar
    edges: set[EdgeKey] = set()
    linked: set[tuple[int, int]] = set()
    for index, param, target_ref, line in expanded.relations:
        target = by_ref.get(target_ref)
        if target is None:
            target = _by_alias(target_ref, by_namevar)
            if target is None:
                raise _undeclared(expanded, index, param, target_ref, line)
        if param in _FORWARD:
            source, sink = index, target
        else:
            source, sink = target, index
        edges.add((source, sink, RELATIONSHIP_KINDS[param]))
        linked.add((source, sink) if source < sink else (sink, source))
    for source, sink in _autorequires(resources, expanded.namevars, by_namevar):
        pair = (source, sink) if source < sink else (sink, source)
        if source != sink and pair not in linked:
            edges.add((source, sink, "autorequire"))
    ordered = sorted(edges)
    # Declaration order is a valid application order when every edge points forward: no cycle
    # is possible and the (linear, but slower) proof is not needed.
    for source, sink, _ in ordered:
        if source >= sink:
            _check_cycles(expanded, ordered)
            break
    refs = expanded.refs
    return [Edge(refs[s], refs[t], kind) for s, t, kind in ordered]


def _by_alias(ref: str, by_namevar: Mapping[tuple[str, Any], int]) -> int | None:
    """``file[/etc/x]`` also names a file titled otherwise whose path is /etc/x."""
    type_name, _, rest = ref.partition("[")
    title = rest[:-1]
    if type_name in PATH_PARAMS and title.startswith("/"):
        title = posixpath.normpath(title)
    return by_namevar.get((type_name, title))


def _undeclared(
    expanded: Expander, index: int, param: str, target: str, line: int
) -> RelationshipError:
    if target in expanded.omitted:
        hint = (
            f"; it is declared at {expanded.omitted[target]} but its 'when' left it out for "
            "this node"
        )
    else:
        hint = did_you_mean(target, expanded.by_ref)
    resource = expanded.resources[index]
    return RelationshipError(
        f"{expanded.refs[index]}: {param} names {target}, which this catalog does not declare"
        f"{hint}",
        location=at(resource.file or "?", line),
    )


def _autorequires(
    resources: list[Resource],
    namevars: list[Any],
    by_namevar: Mapping[tuple[str, Any], int],
) -> list[tuple[int, int]]:
    """(required, requiring) index pairs the resource types imply."""
    get = by_namevar.get
    pairs: list[tuple[int, int]] = []
    add = pairs.append
    for index, resource in enumerate(resources):
        kind = resource.type
        params = resource.parameters
        path_param = _PATH_PARAM.get(kind)
        if path_param is not None:
            path = params.get(path_param, _HOSTS_FILE if kind == "host" else None)
            if type(path) is str:
                # The nearest enclosing directory the catalog declares (namevar: its path).
                end = path.rfind("/")
                while end > 0:
                    found = get(("directory", path[:end]))
                    if found is not None:
                        add((found, index))
                        break
                    end = path.rfind("/", 0, end)
                else:
                    if end == 0 and path != "/":
                        found = get(("directory", "/"))
                        if found is not None:
                            add((found, index))
        if kind in _OWNED:
            owner = params.get("owner")
            if type(owner) is str:
                found = get(("user", owner))
                if found is not None:
                    add((found, index))
            group = params.get("group")
            if type(group) is str:
                found = get(("group", group))
                if found is not None:
                    add((found, index))
        elif kind == "line":
            path = params.get("path")
            found = get(("file", path)) if type(path) is str else None
            if found is not None:
                add((found, index))
        elif kind == "service":
            found = get(("package", namevar_key(namevars[index])))
            if found is not None:
                add((found, index))
        elif kind == "user":
            groups = params.get("groups")
            for name in [params.get("gid"), *(groups if isinstance(groups, list) else ())]:
                found = get(("group", name)) if type(name) is str else None
                if found is not None:
                    add((found, index))
        elif kind in _RUN_AS:
            user = params.get("user", _CRON_USER if kind == "cron" else None)
            found = get(("user", user)) if type(user) is str else None
            if found is not None:
                add((found, index))
    return pairs


def _check_cycles(expanded: Expander, edges: list[EdgeKey]) -> None:
    """Kahn's algorithm proves the graph acyclic; only on failure is a cycle searched for."""
    count = len(expanded.resources)
    adjacency: list[list[tuple[int, str]]] = [[] for _ in range(count)]
    incoming = [0] * count
    for source, target, kind in edges:
        adjacency[source].append((target, kind))
        incoming[target] += 1
    ready = [i for i in range(count) if not incoming[i]]
    done = 0
    while ready:
        node = ready.pop()
        done += 1
        for target, _ in adjacency[node]:
            incoming[target] -= 1
            if not incoming[target]:
                ready.append(target)
    if done < count:
        raise _find_cycle(expanded, adjacency)


def _find_cycle(expanded: Expander, adjacency: list[list[tuple[int, str]]]) -> CycleError:
    """Depth-first search in declaration order; the first cycle found is reported whole."""
    state = [0] * len(adjacency)  # 0 new, 1 on the current path, 2 finished
    for start in range(len(adjacency)):
        if state[start]:
            continue
        stack: list[tuple[int, Iterator[tuple[int, str]]]] = [(start, iter(adjacency[start]))]
        path: list[int] = [start]
        kinds: list[str] = []
        state[start] = 1
        while stack:
            node, children = stack[-1]
            for child, kind in children:
                if state[child] == 1:
                    begin = path.index(child)
                    return _cycle(expanded, path[begin:], [*kinds[begin:], kind])
                if state[child] == 0:
                    state[child] = 1
                    stack.append((child, iter(adjacency[child])))
                    path.append(child)
                    kinds.append(kind)
                    break
            else:
                state[node] = 2
                stack.pop()
                path.pop()
                if kinds:
                    kinds.pop()
    raise AssertionError("Kahn's algorithm found a cycle the search did not")  # pragma: no cover


def _cycle(expanded: Expander, members: list[int], kinds: list[str]) -> CycleError:
    def describe(index: int) -> str:
        resource = expanded.resources[index]
        return f"{expanded.refs[index]} ({at(resource.file or '?', resource.line)})"

    lines = [f"  {describe(members[0])}"]
    for member, kind in zip([*members[1:], members[0]], kinds, strict=True):
        lines.append(f"  -> [{kind}] {describe(member)}")
    first = expanded.resources[members[0]]
    return CycleError(
        f"dependency cycle among {len(members)} resource(s); none of them can be applied "
        "first:\n" + "\n".join(lines),
        location=at(first.file or "?", first.line),
    )
