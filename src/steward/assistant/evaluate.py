"""The evaluation: questions over a fixed fleet, scored by execution accuracy.

Each case is a question and a gold PQL query (``evals/assistant/cases.yaml``). The fleet is
built afresh in a temporary SQLite store (:mod:`steward.assistant.fleet`, deterministic),
the model answers every question through :func:`~steward.assistant.core.answer` (the same
prompt, parser, retries and limit as ``steward ask``), and a case passes when the rows of
the model's query equal the gold query's rows, compared as sorted canonical JSON. When
the gold query projects fewer fields than the model's, the model's rows are cut to the
gold's fields first (asking for more columns than needed is not a wrong answer).

``scripted:PATH`` is a model that answers from a file (question -> attempts), so CI runs
the whole loop deterministically (``evals/assistant/script.yaml``).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from steward.access.principal import Principal
from steward.assistant.config import AssistantConfigError, build_model, parse_spec
from steward.assistant.core import Answer, AskError, answer_async, run_limited
from steward.assistant.fleet import Clock, seed
from steward.errors import StewardError
from steward.store import Store

#: Where the evaluation set lives in a source checkout.
EVALS_DIR = Path(__file__).resolve().parents[3] / "evals" / "assistant"
EVAL_IDENTITY = Principal.authenticated("admin", "eval", "assistant-eval")


class EvalError(StewardError):
    """The evaluation set or script is malformed; names the file and case."""


@dataclass(frozen=True)
class Case:
    id: str
    question: str
    gold: str


@dataclass
class CaseResult:
    case: Case
    passed: bool
    query: str | None
    attempts: int
    detail: str


@dataclass
class EvalResult:
    model: str
    results: list[CaseResult] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def accuracy(self) -> float:
        return self.passed / len(self.results) if self.results else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "cases": len(self.results), "passed": self.passed,
                "accuracy": round(self.accuracy, 4),
                "results": [{"id": r.case.id, "question": r.case.question, "passed": r.passed,
                             "query": r.query, "attempts": r.attempts, "detail": r.detail}
                            for r in self.results]}


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EvalError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise EvalError(f"{path}: not valid YAML: {exc}") from None


def load_cases(path: Path) -> list[Case]:
    document = _load_yaml(path)
    if not isinstance(document, dict) or not isinstance(document.get("cases"), list):
        raise EvalError(f"{path}: expected a mapping with a 'cases' list")
    cases: list[Case] = []
    seen: set[str] = set()
    for index, item in enumerate(document["cases"], 1):
        if not isinstance(item, dict) or not all(
                isinstance(item.get(k), str) for k in ("id", "question", "gold")):
            raise EvalError(f"{path}: case {index} needs string fields id, question and gold")
        if item["id"] in seen:
            raise EvalError(f"{path}: case {index}: duplicate id {item['id']!r}")
        seen.add(item["id"])
        cases.append(Case(item["id"], item["question"], item["gold"]))
    return cases


# -- the scripted model -------------------------------------------------------------------


def load_script(path: Path) -> dict[str, list[str]]:
    """``question -> [first attempt, second attempt, ...]`` from a YAML script."""
    document = _load_yaml(path)
    if not isinstance(document, dict) or not isinstance(document.get("answers"), list):
        raise EvalError(f"{path}: expected a mapping with an 'answers' list")
    script: dict[str, list[str]] = {}
    for index, item in enumerate(document["answers"], 1):
        attempts = item.get("attempts") if isinstance(item, dict) else None
        if not isinstance(item, dict) or not isinstance(item.get("question"), str) \
                or not isinstance(attempts, list) or not attempts \
                or not all(isinstance(a, str) for a in attempts):
            raise EvalError(f"{path}: answer {index} needs 'question' and a non-empty "
                            "'attempts' list of queries")
        script[item["question"]] = list(attempts)
    return script


def scripted_model(script: dict[str, list[str]]) -> Any:
    """A pydantic-ai :class:`FunctionModel` that answers from ``script``.

    The n-th request of a conversation gets the n-th scripted attempt (the last one
    repeats); a question not in the script gets an answer that cannot parse, and a summary
    request (no output tool) gets no text, so the deterministic summary is used.
    """
    from pydantic_ai.messages import (
        ModelMessage,
        ModelRequest,
        ModelResponse,
        TextPart,
        ToolCallPart,
        UserPromptPart,
    )
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if not info.output_tools:
            return ModelResponse(parts=[TextPart("")])
        prompts = [part.content for message in messages if isinstance(message, ModelRequest)
                   for part in message.parts if isinstance(part, UserPromptPart)]
        question = str(prompts[0]) if prompts else ""
        attempts = script.get(question, ["(no scripted answer for this question)"])
        query = attempts[min(len(prompts), len(attempts)) - 1]
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name,
                                                 {"query": query})])

    return FunctionModel(respond, model_name="scripted")


def model_from_spec(spec: str, *, api_key_env: str | None = None) -> Any:
    """A model spec (see :func:`~steward.assistant.config.parse_spec`) or ``scripted:PATH``."""
    if spec.startswith("scripted:"):
        return scripted_model(load_script(Path(spec.removeprefix("scripted:"))))
    return build_model(parse_spec(spec, api_key_env=api_key_env))


# -- running ------------------------------------------------------------------------------


@contextmanager
def fleet_store() -> Iterator[Store]:
    """The fixed fleet in a fresh temporary SQLite store, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="steward-eval-") as tmp:
        clock = Clock()
        store = Store(f"sqlite:///{Path(tmp) / 'fleet.db'}", clock=clock)
        try:
            store.migrate()
            seed(store, clock)
            yield store
        finally:
            store.close()


class _EvalAudit:
    """The evaluation's audit trail: kept with the run, not in any server's log."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def record(self, *, actor: Any, action: str, target: str | None, outcome: str,
               reason: str | None = None, parameters: Any = None) -> Any:
        entry = {"action": action, "outcome": outcome, "reason": reason,
                 "parameters": parameters}
        self.entries.append(entry)
        return entry


@dataclass
class _EvalServices:
    store: Store
    audit: _EvalAudit


def canonical(rows: list[dict[str, Any]], keys: set[str] | None = None) -> list[str]:
    """Rows as sorted canonical JSON; cut to ``keys`` when given."""
    return sorted(json.dumps({k: v for k, v in row.items() if keys is None or k in keys},
                             sort_keys=True, default=str, ensure_ascii=False)
                  for row in rows)


def same_rows(got: list[dict[str, Any]], gold: list[dict[str, Any]]) -> bool:
    if canonical(got) == canonical(gold):
        return True
    gold_keys = {k for row in gold for k in row}
    got_keys = {k for row in got for k in row}
    if gold and gold_keys < got_keys:
        return canonical(got, gold_keys) == canonical(gold)
    return False


def run_eval(model: Any, cases: list[Case], *, store: Store, model_name: str = "model",
             limit: int = 1000, output: str = "tool") -> EvalResult:
    """Ask every case's question and compare with the gold query's rows (one event loop
    for the whole run, so a hosted model's connections are reused)."""
    return asyncio.run(_run_eval(model, cases, store=store, model_name=model_name,
                                 limit=limit, output=output))


async def _run_eval(model: Any, cases: list[Case], *, store: Store, model_name: str,
                    limit: int, output: str) -> EvalResult:
    services = _EvalServices(store, _EvalAudit())
    from steward.assistant.prompt import read_context

    context = read_context(store)
    result = EvalResult(model_name)
    for case in cases:
        try:
            gold, _ = run_limited(store, case.gold, limit)
        except StewardError as exc:
            raise EvalError(f"case {case.id}: the gold query does not run: {exc}") from None
        try:
            got: Answer = await answer_async(
                case.question, identity=EVAL_IDENTITY, services=services, model=model,
                limit=limit, summarize=False, context=context, output=output)
        except (AskError, AssistantConfigError) as exc:
            attempts = len(getattr(exc, "attempts", []))
            result.results.append(CaseResult(case, False, None, attempts, str(exc)))
            continue
        passed = same_rows(got.rows, gold)
        detail = "rows match" if passed else (
            f"rows differ: got {len(got.rows)}, expected {len(gold)}")
        result.results.append(CaseResult(case, passed, got.query, len(got.attempts), detail))
    return result
