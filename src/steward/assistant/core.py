"""``answer(question)``: question -> PQL by a model -> Steward's parser -> read-only rows.

The model only *proposes* a query. Steward parses it with its own parser, checks the
caller's permissions for every entity it names (the same rule as ``/pdb/query/v4``), runs
it through the store's read-only query path with a row limit, and sends any syntax or
query error (with line and column) back to the model for another attempt, at most
:data:`MAX_ATTEMPTS` in all. A question can therefore read only what its asker could read
with ``steward query``, and can never write: PQL has no write form and the store runs it
in a read transaction.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError

from steward.access.authorize import Authorizer, Forbidden, entity_permissions, kind_authorizer
from steward.access.principal import Principal
from steward.assistant.prompt import (
    FleetContext,
    QueryStore,
    instructions,
    read_context,
    summary_prompt,
)
from steward.errors import StewardError
from steward.query.errors import QueryError, QuerySyntaxError
from steward.query.parser import parse_pql

log = logging.getLogger("steward.assistant")

MAX_ATTEMPTS = 3
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
#: Longest question and query an audit entry keeps.
AUDITED_CHARS = 500


class AskError(StewardError):
    """The model gave no query that runs within the attempts; lists each attempt's error."""

    def __init__(self, message: str, attempts: list[Attempt]) -> None:
        super().__init__(message)
        self.attempts = attempts


class ModelFailed(AskError):
    """The model itself could not be reached or answered nonsense."""


class PqlQuery(BaseModel):
    """The model's structured answer."""

    query: str = Field(description="One PQL query answering the question")


class AuditSink(Protocol):
    def record(self, *, actor: Any, action: str, target: str | None, outcome: str,
               reason: str | None = None, parameters: Any = None) -> Any: ...


class AskServices(Protocol):
    """What :func:`answer` needs of the server's services: the store and the audit log."""

    @property
    def store(self) -> QueryStore: ...

    @property
    def audit(self) -> AuditSink: ...


@dataclass(frozen=True, slots=True)
class Attempt:
    query: str
    #: None for the attempt that ran; else the error sent back to the model.
    error: str | None = None
    #: ``syntax``, ``query`` (semantic or database) or ``ok``.
    stage: str = "ok"


@dataclass(frozen=True)
class Answer:
    question: str
    query: str
    rows: list[dict[str, Any]]
    summary: str
    limit: int
    #: More rows matched than ``limit``; ``rows`` holds the first ``limit``.
    truncated: bool = False
    attempts: list[Attempt] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"question": self.question, "query": self.query, "rows": self.rows,
                "row_count": len(self.rows), "truncated": self.truncated, "limit": self.limit,
                "summary": self.summary,
                "attempts": [{"query": a.query, "error": a.error, "stage": a.stage}
                             for a in self.attempts]}


def answer(question: str, *, identity: Principal, services: AskServices, model: Any,
           authorizer: Authorizer | None = None, limit: int = DEFAULT_LIMIT,
           max_attempts: int = MAX_ATTEMPTS, summarize: bool = True,
           context: FleetContext | None = None, output: str = "tool") -> Answer:
    """:func:`answer_async` on an event loop of its own (closed before returning).

    For synchronous callers and worker threads (the REST route runs in one); async code
    calls it through ``anyio.to_thread.run_sync`` or awaits :func:`answer_async`.
    """
    with asyncio.Runner() as runner:
        return runner.run(answer_async(
            question, identity=identity, services=services, model=model,
            authorizer=authorizer, limit=limit, max_attempts=max_attempts,
            summarize=summarize, context=context, output=output))


async def answer_async(question: str, *, identity: Principal, services: AskServices,
                       model: Any, authorizer: Authorizer | None = None,
                       limit: int = DEFAULT_LIMIT, max_attempts: int = MAX_ATTEMPTS,
                       summarize: bool = True, context: FleetContext | None = None,
                       output: str = "tool") -> Answer:
    """Answer ``question`` with a query the model writes and Steward checks and runs.

    ``model`` is a pydantic-ai model (see :func:`steward.assistant.config.build_model`).
    ``authorizer`` is the server's (``app.state.steward.authorizer``); None applies the
    token-kind rules only, which refuse user and agent tokens (fail closed). Needs
    ``query``, plus ``report:read`` etc. for the entities the query names
    (:data:`steward.access.authorize.ENTITY_PERMISSIONS`): a refusal raises
    :class:`Forbidden` and is audited. ``output`` is how the model returns the query
    (:data:`~steward.assistant.config.OUTPUT_MODES`). The store and the audit log are
    called synchronously (short, indexed reads and one insert).
    """
    check = authorizer or kind_authorizer
    question = question.strip()
    if not question:
        raise AskError("the question is empty", [])
    if not 1 <= limit <= MAX_LIMIT:
        raise AskError(f"limit must be between 1 and {MAX_LIMIT}, not {limit}", [])
    _authorise(check, identity, "query", None, services, question, None)
    from pydantic_ai import Agent

    context = context if context is not None else read_context(services.store)
    agent: Agent[None, PqlQuery] = Agent(model, output_type=_output_spec(output),
                                         instructions=instructions(context))
    attempts: list[Attempt] = []
    history: list[Any] | None = None
    prompt = question
    for _ in range(max_attempts):
        try:
            result = await agent.run(prompt, message_history=history)
        except Exception as exc:  # the model's transport or output: one clear line
            _audit(services, identity, question, None, "failed", f"model error: {exc}",
                   attempts=attempts)
            raise ModelFailed(f"the model failed to answer: {type(exc).__name__}: {exc}",
                              attempts) from None
        history = result.all_messages()
        text = result.output.query.strip()
        outcome = _run(text, identity, services, check, question, limit)
        if isinstance(outcome, Attempt):
            attempts.append(outcome)
            prompt = (f"That query failed ({outcome.stage} error): {outcome.error}\n"
                      "Correct it and answer with the whole corrected query.")
            continue
        rows, truncated = outcome
        attempts.append(Attempt(text))
        summary = await _summary(model, question, text, rows) if summarize else ""
        answer_ = Answer(question, text, rows, summary or deterministic_summary(rows, truncated),
                         limit, truncated, attempts)
        _audit(services, identity, question, text, "succeeded", None, rows=len(rows),
               attempts=attempts)
        return answer_
    errors = "; ".join(f"attempt {i}: {a.error}" for i, a in enumerate(attempts, 1))
    _audit(services, identity, question, attempts[-1].query if attempts else None, "failed",
           errors, attempts=attempts)
    raise AskError(f"no query that runs after {len(attempts)} attempt(s): {errors}", attempts)


def _output_spec(output: str) -> Any:
    from pydantic_ai import NativeOutput, PromptedOutput

    if output == "native":
        return NativeOutput(PqlQuery)
    if output == "prompted":
        return PromptedOutput(PqlQuery)
    return PqlQuery


def _run(text: str, identity: Principal, services: AskServices, check: Authorizer,
         question: str, limit: int) -> Attempt | tuple[list[dict[str, Any]], bool]:
    """Parse, authorise and run one proposed query; an :class:`Attempt` on a fixable error."""
    try:
        ast = parse_pql(text)
    except QuerySyntaxError as exc:
        return Attempt(text, str(exc), "syntax")  # names the line and column
    if not (isinstance(ast, list) and len(ast) > 1 and ast[0] == "from"):
        return Attempt(text, "expected a query of the form entity[fields] { filter }", "syntax")
    for entity, permission in entity_permissions(ast):
        _authorise(check, identity, permission, entity, services, question, text)
    try:
        return run_limited(services.store, ast, limit)
    except QueryError as exc:
        return Attempt(text, str(exc), "query")
    except SQLAlchemyError as exc:  # a database's refusal the compiler did not foresee
        return Attempt(text, f"the database rejected the query: "
                       f"{str(getattr(exc, 'orig', exc)).splitlines()[0]}", "query")


def run_limited(store: QueryStore, query: str | list[Any], limit: int
                ) -> tuple[list[dict[str, Any]], bool]:
    """At most ``limit`` rows of a query (whatever limit it writes itself), and whether
    more matched."""
    ast = parse_pql(query) if isinstance(query, str) else query
    ast, capped = _cap(ast, limit)
    rows = store.query(ast, limit=None if capped else limit + 1)
    return rows[:limit], len(rows) > limit


def _cap(ast: list[Any], limit: int) -> tuple[list[Any], bool]:
    """Lower a ``limit`` written in the query to ``limit + 1`` (to detect truncation)."""
    capped = False
    out: list[Any] = []
    for item in ast:
        if isinstance(item, list) and len(item) == 2 and item[0] == "limit" \
                and isinstance(item[1], int):
            out.append(["limit", min(item[1], limit + 1)])
            capped = True
        else:
            out.append(item)
    return out, capped


def _authorise(check: Authorizer, identity: Principal, permission: str, entity: str | None,
               services: AskServices, question: str, query: str | None) -> None:
    try:
        check(identity, permission, None)
    except Forbidden as exc:
        why = f"{exc}" + (f" (the query reads {entity})" if entity else "")
        _audit(services, identity, question, query, "denied", why)
        raise Forbidden(why, permission=permission) from None


def _audit(services: AskServices, identity: Principal, question: str, query: str | None,
           outcome: str, reason: str | None, *, rows: int | None = None,
           attempts: list[Attempt] | None = None) -> None:
    services.audit.record(
        actor=identity, action="ask", target=None, outcome=outcome,
        reason=reason[:AUDITED_CHARS * 2] if reason else None,
        parameters={"question": question[:AUDITED_CHARS],
                    "query": query[:AUDITED_CHARS] if query else None, "rows": rows,
                    "attempts": len(attempts or [])})


async def _summary(model: Any, question: str, query: str, rows: list[dict[str, Any]]
                   ) -> str:
    """The model's one-line summary of the rows; empty (deterministic one used) on failure."""
    from pydantic_ai import Agent

    try:
        result = await Agent(model, output_type=str).run(
            summary_prompt(question, query, rows, len(rows)))
    except Exception as exc:  # a summary is a nicety: the rows are the answer
        log.info("the model gave no summary: %s", exc)
        return ""
    text = result.output.strip()
    return text[:1000]


def deterministic_summary(rows: list[dict[str, Any]], truncated: bool) -> str:
    """What the rows say, without a model: the count, and names or a single value."""
    more = " (more matched; raise the limit to see them)" if truncated else ""
    if not rows:
        return "No rows matched."
    if len(rows) == 1 and len(rows[0]) <= 3:
        values = ", ".join(f"{k} = {_short(v)}" for k, v in sorted(rows[0].items()))
        return f"1 row: {values}."
    head = f"{len(rows)} row(s){more}"
    names = [str(r["certname"]) for r in rows if "certname" in r]
    if names:
        unique = list(dict.fromkeys(names))
        shown = ", ".join(unique[:10]) + (", ..." if len(unique) > 10 else "")
        return f"{head} over {len(unique)} node(s): {shown}."
    return f"{head}."


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."
