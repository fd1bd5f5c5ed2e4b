"""What the pipeline's routes depend on beyond the server's (``steward.server.deps``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from steward.pipeline.service import Pipeline
from steward.server.deps import extra


def pipeline(request: Request) -> Pipeline:
    """The application's :class:`Pipeline`; 503 on a plain-directory repository."""
    found = extra(request, "pipeline")
    if found is None:
        raise HTTPException(503, "the change pipeline is not available: the server's "
                                 "repository is a plain directory, not desired.git")
    assert isinstance(found, Pipeline)
    return found


PipelineDep = Annotated[Pipeline, Depends(pipeline)]
