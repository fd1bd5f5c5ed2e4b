"""``POST /api/v1/ask``: the Infra Assistant over REST (thin; the rules live in
:func:`steward.assistant.answer`).

Needs ``query``; the generated query is authorised again for every entity it names, with
the server's authoriser, so a question reads nothing its asker could not query. The model
is the data directory's ``assistant.toml`` (read per request, so configuring needs no
restart), or ``extras["assistant_model"]`` when the embedding application supplies one.
Without a model the answer is 409 with how to configure one; ``/pdb/query/v4`` is
unaffected.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from steward.api.models_assistant import AskAnswer, AskBody, AskFailure
from steward.assistant.config import MODEL_EXTRA, AssistantConfigError, resolve_model
from steward.assistant.core import AskError, ModelFailed, answer
from steward.server.deps import QueryPermission, ServicesDep, json_response, state
from steward.server.models import COMMON_ERRORS, Error, errors


def model_for(request: Request) -> tuple[Any, str]:
    """The application's model, else the data directory's configured one; and its output
    mode."""
    app_state = state(request)
    return resolve_model(app_state.config.data_dir, app_state.extras.get(MODEL_EXTRA))


router = APIRouter(tags=["assistant"], responses={
    **COMMON_ERRORS, **errors(502),
    409: {"model": Error, "description": "No model is configured (the answer says how)"}})


@router.post("/api/v1/ask", response_model=AskAnswer, responses={
    422: {"model": AskFailure, "description": "No valid query came of the question"},
    502: {"model": AskFailure, "description": "The language model failed"}})
def ask(request: Request, body: AskBody, identity: QueryPermission,
        svc: ServicesDep) -> Response:
    """A question in plain language: the query the model wrote, its rows, a summary."""
    try:
        model, output = model_for(request)
    except AssistantConfigError as exc:
        # The server's configuration, not a fault.
        return json_response({"error": str(exc)}, 409)
    try:
        result = answer(body.question, identity=identity, services=svc,
                        model=model, authorizer=state(request).authorizer,
                        limit=body.limit, output=output)
    except AskError as exc:
        return json_response({"error": str(exc),
                              "attempts": [{"query": a.query, "error": a.error,
                                            "stage": a.stage} for a in exc.attempts]},
                             502 if isinstance(exc, ModelFailed) else 422)
    return json_response(result.to_json())
