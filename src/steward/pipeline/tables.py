"""The pipeline's own tables share one SQLAlchemy ``MetaData``.

Each pipeline module declares its tables on :data:`metadata` (changes, approvals, role
bindings, deployments); :mod:`steward.pipeline.schema` creates or migrates them. They live in
the server's database beside the server's and the store's tables, with their own Alembic
history (version table ``steward_pipeline_version``).
"""

from __future__ import annotations

from steward.access.tables import PIPELINE_METADATA

metadata = PIPELINE_METADATA
