"""Resource-by-resource difference between a node's current and proposed catalogs.

What counts is what the engine would enforce: a resource is modified when its parameters
differ (compared as JSON, so ``1`` and ``true`` differ), and edges are compared as
``(source, target, relationship)``. A resource that only moved to another file or line, or
only changed tags, is not a change on the machine and is not listed.

Sensitive values never leave this module: a parameter holding a placeholder ``{"__sensitive__":
key}`` is shown as ``[redacted]`` (the one marker), and whether it changed is decided by the
keyed digests in each catalog's ``sensitive`` map (a rotation shows as a change without
revealing anything). Two placeholders with the same key are *not* the same value: an edit to
the template around a secret keeps the key (``param:<ref>:content``) and changes the digest, so
equal parameters still count as a change when a placeholder's digest differs. A resource that
carries a sensitive value on either side is marked ``sensitive``; its content diff, when the
caller can say which lines depend on a secret (:class:`LineMasker`), shows the other lines and
masks those.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Literal, Protocol

from steward.catalog.model import Catalog, Resource
from steward.catalog.sensitive import SENSITIVE_KEY, is_sensitive_placeholder
from steward.pipeline.impact.model import SENSITIVE_TEXT
from steward.pipeline.impact.report import (
    ClassificationChange,
    EdgeChange,
    PropertyChange,
    Provenance,
    ResourceChange,
)

#: Parameters whose text is shown as a unified diff as well as before → after.
CONTENT_PARAMS = ("content",)
#: What stands in a content diff for a line that holds (or depends on) a secret.
MASKED_LINE = SENSITIVE_TEXT

Side = Literal["before", "after"]


class LineMasker(Protocol):
    """Which lines of a sensitive text hold or depend on a secret (0-based), or None when
    that cannot be told (then no content diff is shown)."""

    def masked_lines(self, side: Side, key: str | None, text: str) -> set[int] | None: ...

    def value(self, side: Side, key: str) -> str | None: ...


def diff_catalogs(
    before: Catalog | None, after: Catalog | None, masker: LineMasker | None = None
) -> tuple[list[ResourceChange], list[EdgeChange]]:
    """(resource entries sorted by reference, edge entries sorted) from ``before`` to
    ``after``; a missing side counts as an empty catalog. ``masker`` (with the sensitive
    values of both sides) lets a sensitive content change show its non-secret lines."""
    old = before.resource_map() if before is not None else {}
    new = after.resource_map() if after is not None else {}
    old_digests = before.sensitive if before is not None else {}
    new_digests = after.sensitive if after is not None else {}
    moved = _changed_digests(old_digests, new_digests)
    entries: list[ResourceChange] = []
    for ref in sorted(old.keys() | new.keys()):
        was, now = old.get(ref), new.get(ref)
        if was is not None and now is not None:
            if _params_equal(was.parameters, now.parameters) and not (
                moved and not moved.isdisjoint(placeholder_keys(now.parameters))
            ):
                continue
            entry = _modified(ref, was, now, old_digests, new_digests, masker)
            if entry is not None:
                entries.append(entry)
        elif now is not None:
            entries.append(_whole(ref, now, "add", new_digests))
        elif was is not None:
            entries.append(_whole(ref, was, "remove", old_digests))
    old_edges = {(e.source, e.target, e.relationship) for e in before.edges} if before else set()
    new_edges = {(e.source, e.target, e.relationship) for e in after.edges} if after else set()
    edges = [
        EdgeChange(action, s, t, r)
        for action, group in (("add", new_edges - old_edges), ("remove", old_edges - new_edges))
        for s, t, r in group
    ]
    edges.sort(key=lambda e: (e.source, e.target, e.relationship, e.action))
    return entries, edges


def provenance(resource: Resource) -> Provenance:
    return Provenance(resource.file, resource.line)


def placeholder_keys(value: Any) -> set[str]:
    """The keys of every sensitive placeholder inside ``value``."""
    if is_sensitive_placeholder(value):
        return {str(value[SENSITIVE_KEY])}
    if isinstance(value, dict):
        return {key for item in value.values() for key in placeholder_keys(item)}
    if isinstance(value, list):
        return {key for item in value for key in placeholder_keys(item)}
    return set()


def _changed_digests(old: Mapping[str, str], new: Mapping[str, str]) -> frozenset[str]:
    """Sensitive keys whose keyed digest differs (or exists on one side only)."""
    if old == new:
        return frozenset()
    return frozenset(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))


def _modified(
    ref: str,
    was: Resource,
    now: Resource,
    old_digests: dict[str, str],
    new_digests: dict[str, str],
    masker: LineMasker | None = None,
) -> ResourceChange | None:
    properties: list[PropertyChange] = []
    content_diff: str | None = None
    for name in sorted(was.parameters.keys() | now.parameters.keys()):
        a, b = was.parameters.get(name), now.parameters.get(name)
        a_secret, b_secret = _is_sensitive(a), _is_sensitive(b)
        if a_secret or b_secret:
            changed = _sensitive_identity(a, old_digests, "before") != _sensitive_identity(
                b, new_digests, "after")
            if not changed:
                continue
            properties.append(_property(name, a, b, old_digests, new_digests))
            if name in CONTENT_PARAMS and masker is not None:
                label = str(now.parameters.get("path") or now.title)
                content_diff = _masked_content_diff(a, b, label, masker)
            continue
        if _strict_equal(a, b):
            continue
        properties.append(_property(name, a, b, old_digests, new_digests))
        if name in CONTENT_PARAMS and isinstance(a, str) and isinstance(b, str):
            label = str(now.parameters.get("path") or now.title)
            content_diff = unified_diff(a, b, label)
    if not properties:  # only sensitive placeholders that name the same value
        return None
    return ResourceChange(
        ref, now.type, now.title, "modify", provenance(was), provenance(now),
        tuple(properties), content_diff,
        _is_sensitive(was.parameters) or _is_sensitive(now.parameters),
    )


def _masked_content_diff(a: Any, b: Any, label: str, masker: LineMasker) -> str | None:
    """The unified diff of two contents of which at least one carries a secret, every line
    that holds or depends on one masked; None when a side cannot be read or masked."""
    texts: list[str] = []
    masks: list[set[int]] = []
    sides: tuple[tuple[Side, Any], ...] = (("before", a), ("after", b))
    for side, value in sides:
        key: str | None = None
        if is_sensitive_placeholder(value):
            key = str(value[SENSITIVE_KEY])
            text = masker.value(side, key)
        else:
            text = value if isinstance(value, str) else None
        if text is None:
            return None
        mask = masker.masked_lines(side, key, text)
        if mask is None:
            return None
        texts.append(text)
        masks.append(mask)
    return masked_unified_diff(texts[0], texts[1], label, masks[0], masks[1])


def _whole(ref: str, resource: Resource, action: str, digests: dict[str, str]) -> ResourceChange:
    """An added or removed resource: every parameter, with the other side null."""
    properties = []
    for name in sorted(resource.parameters):
        value = resource.parameters[name]
        if action == "add":
            properties.append(_property(name, None, value, {}, digests))
        else:
            properties.append(_property(name, value, None, digests, {}))
    return ResourceChange(
        ref, resource.type, resource.title, action,
        provenance(resource) if action == "remove" else None,
        provenance(resource) if action == "add" else None,
        tuple(properties), None, _is_sensitive(resource.parameters),
    )


def _property(
    name: str, a: Any, b: Any, old_digests: dict[str, str], new_digests: dict[str, str]
) -> PropertyChange:
    shown_a, secret_a = redact(a)
    shown_b, secret_b = redact(b)
    if not (secret_a or secret_b):
        return PropertyChange(name, shown_a, shown_b, False)
    return PropertyChange(name, shown_a, shown_b, True, _sensitive_identity(
        a, old_digests, "before") != _sensitive_identity(b, new_digests, "after"))


def redact(value: Any) -> tuple[Any, bool]:
    """``value`` with every sensitive placeholder replaced by ``[redacted]``, and whether
    there was one."""
    if is_sensitive_placeholder(value):
        return SENSITIVE_TEXT, True
    if isinstance(value, dict):
        found = False
        shown: dict[str, Any] = {}
        for key, item in value.items():
            shown[key], hit = redact(item)
            found = found or hit
        return shown, found
    if isinstance(value, list):
        items = [redact(item) for item in value]
        return [item for item, _ in items], any(hit for _, hit in items)
    return value, False


def _is_sensitive(value: Any) -> bool:
    if isinstance(value, dict):
        return SENSITIVE_KEY in value or any(_is_sensitive(v) for v in value.values())
    if isinstance(value, list):
        return any(_is_sensitive(v) for v in value)
    return False


def _sensitive_identity(value: Any, digests: Mapping[str, str], side: Side) -> Any:
    """What decides whether a possibly-sensitive value changed, without the value: a
    placeholder stands for its keyed digest, never for its key (two renderings of one
    template share a key). A placeholder without a digest cannot be compared, so it differs
    from everything (the side is part of its identity): unknown counts as changed."""
    if is_sensitive_placeholder(value):
        key = value[SENSITIVE_KEY]
        digest = digests.get(key)
        return ("digest", digest) if digest else ("unknown", side, key)
    if isinstance(value, dict):
        return ("map", tuple(sorted((k, _sensitive_identity(v, digests, side)) for k, v in
                                    value.items())))
    if isinstance(value, list):
        return ("list", tuple(_sensitive_identity(v, digests, side) for v in value))
    return ("value", type(value).__name__, value)


def _params_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """:func:`_strict_equal` for a resource's parameters, at C speed in the usual case: most
    resources of two catalogs are equal, and ``==`` only needs the types checked after it."""
    if a is b:
        return True
    if a != b:
        return False
    for key, value in a.items():
        other = b[key]
        kind = type(value)
        if kind is not type(other):
            return False
        if (kind is dict or kind is list) and not _strict_equal(value, other):
            return False
    return True


def _strict_equal(a: Any, b: Any) -> bool:
    """Equal as JSON documents: ``==`` with types kept apart (``1``, ``1.0``, ``True``)."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_strict_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_strict_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def unified_diff(before: str, after: str, name: str) -> str:
    """``diff -u`` of two texts, with git's marker for a last line without a newline."""
    lines: list[str] = []
    for line in difflib.unified_diff(
        _lines(before), _lines(after), fromfile=name, tofile=name, lineterm="\n"
    ):
        lines.append(line if line.endswith("\n") else f"{line}\n\\ No newline at end of file\n")
    return "".join(lines)


def masked_unified_diff(
    before: str, after: str, name: str, mask_before: set[int], mask_after: set[int]
) -> str:
    """:func:`unified_diff` of the real texts (so a change on a secret's line shows as a
    change), with every line in ``mask_before`` / ``mask_after`` (0-based) shown as
    ``[redacted]``; a context line is masked when either side masks it."""
    a, b = split_lines(before), split_lines(after)
    out: list[str] = []
    for group in difflib.SequenceMatcher(None, a, b, autojunk=False).get_grouped_opcodes(3):
        if not out:
            out += [f"--- {name}\n", f"+++ {name}\n"]
        first, last = group[0], group[-1]
        out.append(f"@@ -{_range(first[1], last[2])} +{_range(first[3], last[4])} @@\n")
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                out += [_shown(" ", a[i], i in mask_before or j1 + i - i1 in mask_after)
                        for i in range(i1, i2)]
                continue
            out += [_shown("-", a[i], i in mask_before) for i in range(i1, i2)]
            out += [_shown("+", b[j], j in mask_after) for j in range(j1, j2)]
    return "".join(out)


def _shown(mark: str, line: str, masked: bool) -> str:
    if masked:
        return f"{mark}{MASKED_LINE}\n"
    if line.endswith("\n"):
        return f"{mark}{line}"
    return f"{mark}{line}\n\\ No newline at end of file\n"


def _range(start: int, stop: int) -> str:
    """A unified diff hunk range, as difflib writes it."""
    length = stop - start
    if length == 1:
        return f"{start + 1}"
    return f"{start + 1 if length else start},{length}"


def split_lines(text: str) -> list[str]:
    """Lines split on ``\\n`` only, each keeping its newline (the last may lack one)."""
    return _lines(text)


def _lines(text: str) -> list[str]:
    """Lines split on ``\\n`` only (``str.splitlines`` also splits on form feeds and more)."""
    parts = text.split("\n")
    lines = [f"{part}\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def classification_change(
    before: Catalog | None, after: Catalog | None
) -> ClassificationChange | None:
    """Roles, profiles and rules before → after, when they differ."""
    if before is None or after is None or _strict_equal(before.classification,
                                                         after.classification):
        return None
    return ClassificationChange(before.classification, after.classification)
