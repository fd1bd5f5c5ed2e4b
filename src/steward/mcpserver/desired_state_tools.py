"""The desired-state tools: ``list_desired_state`` and ``read_desired_state``.

They read an environment's tip in the desired-state repository. Secret-looking paths are
never listed or served (secrets live in the server's encrypted store anyway), and a file's
text comes back inside the ``untrusted_file_content`` envelope: whoever wrote it is not the
caller's principal.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from steward.errors import StewardError
from steward.gitrepo import check_path
from steward.mcpserver.context import READ, Caller, call
from steward.mcpserver.data import file_content
from steward.pipeline.service import Pipeline

#: Largest desired-state file read_desired_state returns whole.
MAX_FILE_BYTES: Final = 256 * 1024
#: Paths never served from the desired-state repository (secrets live outside it anyway).
_SECRET_PATH: Final = ("secret", "secrets", ".git")


def register(server: MCPServer) -> None:
    server.add_tool(list_desired_state, title="List desired-state files", annotations=READ)
    server.add_tool(read_desired_state, title="Read a desired-state file", annotations=READ)


async def list_desired_state(
    ctx: Context,
    environment: Annotated[str, Field(description="An environment (a branch)")],
    prefix: Annotated[str, Field(description="Only paths starting with this")] = "",
) -> dict[str, Any]:
    """The files of an environment's desired state at its tip."""

    def run(c: Caller) -> dict[str, Any]:
        env = _environment(c.pipeline, environment)
        c.pipeline.authorise(c.identity, "desired_state:read", env,
                             action="desired_state.list", target=f"environment:{env}")
        commit = c.pipeline.repo.tip(env)
        files = [f for f in c.pipeline.repo.list_files(commit)
                 if f.startswith(prefix) and not _secret_path(f)]
        return {"environment": env, "commit": commit, "files": sorted(files)}

    return await call(ctx, run)


async def read_desired_state(
    ctx: Context,
    environment: Annotated[str, Field(description="An environment (a branch)")],
    path: Annotated[str, Field(description="A file path, e.g. data/roles/web.yaml")],
) -> dict[str, Any]:
    """One file of an environment's desired state at its tip (never secrets)."""

    def run(c: Caller) -> dict[str, Any]:
        env = _environment(c.pipeline, environment)
        c.pipeline.authorise(c.identity, "desired_state:read", env,
                             action="desired_state.read", target=f"environment:{env}")
        clean = check_path(path)
        if _secret_path(clean):
            raise StewardError(f"{clean}: secrets are never served (they live in the "
                               "server's encrypted store, not in desired state)")
        commit = c.pipeline.repo.tip(env)
        data = c.pipeline.repo.read_file(commit, clean)
        if data is None:
            raise StewardError(f"{clean}: no such file in {env} at {commit[:12]}")
        truncated = len(data) > MAX_FILE_BYTES
        text = data[:MAX_FILE_BYTES].decode("utf-8", errors="replace")
        return file_content(text, environment=env, commit=commit, path=clean,
                            bytes=len(data), truncated=truncated)

    return await call(ctx, run)


def _secret_path(path: str) -> bool:
    parts = path.lower().split("/")
    return any(part in _SECRET_PATH or part.startswith(("secret.", "secrets."))
               for part in parts)


def _environment(pipeline: Pipeline, name: str) -> str:
    if name not in pipeline.environments:
        raise StewardError(f"unknown environment {name!r}; environments: "
                           f"{', '.join(pipeline.environments)}")
    return name
