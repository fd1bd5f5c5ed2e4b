"""Local groups: read through the C library (``grp``), changed with groupadd/groupmod/groupdel.

Reading in-process costs no command per resource; the shadow tools do the writing because
they keep /etc/group and /etc/gshadow consistent and take the same locks as everything else.
"""

from __future__ import annotations

import grp
from collections.abc import Sequence

from steward.engine.provider import Change, Provider, ProviderError


def lookup_group(name: str) -> grp.struct_group | None:
    try:
        return grp.getgrnam(name)
    except KeyError:
        return None


def run_tool(provider: Provider, argv: Sequence[str], doing: str,
             input: str | None = None) -> None:
    """Run a shadow-utils command; a failure names the command and its stderr."""
    result = provider.ctx.runner.run(argv, input=input)
    if not result.ok:
        raise ProviderError(f"{doing}: {result.describe()}")


class GroupProvider(Provider):
    """ensure present/absent and the gid; ``system`` only matters at creation."""

    type_name = "group"

    def check(self) -> list[Change]:
        name = self.name
        current = lookup_group(name)
        if self.params.get("ensure") == "absent":
            if current is None:
                return []
            return [Change("ensure", "present", "absent", f"removed group {name}")]
        gid = self.params.get("gid")
        if current is None:
            detail = f" with gid {gid}" if gid is not None else ""
            return [Change("ensure", "absent", "present", f"created group {name}{detail}")]
        if gid is not None and current.gr_gid != gid:
            return [Change("gid", current.gr_gid, gid,
                           f"changed gid of group {name} from {current.gr_gid} to {gid}")]
        return []

    def sync(self, changes: list[Change]) -> None:
        name = self.name
        for change in changes:
            if change.property == "ensure" and change.new == "absent":
                run_tool(self, ["groupdel", name], f"removing group {name}")
            elif change.property == "ensure":
                argv = ["groupadd"]
                if self.params.get("gid") is not None:
                    argv += ["-g", str(self.params["gid"])]
                if self.params.get("system"):
                    argv.append("-r")
                run_tool(self, [*argv, name], f"creating group {name}")
            elif change.property == "gid":
                run_tool(self, ["groupmod", "-g", str(change.new), name],
                         f"changing gid of group {name}")
