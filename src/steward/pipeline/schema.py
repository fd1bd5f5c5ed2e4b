"""Create the pipeline's tables (Alembic history to follow; tests use this entry point)."""

from __future__ import annotations

from sqlalchemy import Engine


def create_all(engine: Engine) -> None:
    """Create every pipeline table that does not exist yet."""
    from steward.pipeline.tables import metadata

    # Importing the modules registers their tables on the shared metadata.
    for module in ("change_model", "rbac", "approvals", "deploy", "analyses"):
        try:
            __import__(f"steward.pipeline.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"steward.pipeline.{module}":
                raise
    metadata.create_all(engine)
