"""A Steward site per backend with the evaluation's fixed fleet, and a served application.

The site is real: a versioned data directory (so the change pipeline and its roles are
active), the server's services on a fresh database, the fleet ingested through the store,
and the whole application (``steward.api.app.build_app``) served over TLS in a thread.
The model is a pydantic-ai ``FunctionModel`` the test scripts; everything else is real.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from steward.access.principal import Principal
from steward.api.app import build_app
from steward.api.routes_assistant import MODEL_EXTRA
from steward.assistant.fleet import Clock, Fleet, seed
from steward.server.config import ServerConfig, load_config
from steward.server.init import init_data_dir
from steward.server.services import Services, build_services
from tests.e2e.harness import database_url, free_port, write_repo
from tests.server.serving import serving

OPERATOR = Principal.authenticated("operator", "op-test", "tester")


@dataclass
class Script:
    """A scripted model: successive answers per conversation, and what it was sent."""

    answers: list[str]
    summary: str = ""
    requests: list[list[str]] = field(default_factory=list)

    def model(self) -> FunctionModel:
        def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
            texts = [str(part.content) for m in messages if isinstance(m, ModelRequest)
                     for part in m.parts if isinstance(part, (UserPromptPart, RetryPromptPart))]
            if not info.output_tools:
                return ModelResponse(parts=[TextPart(self.summary)])
            self.requests.append(texts)
            asked = sum(1 for m in messages if isinstance(m, ModelRequest)
                        for p in m.parts if isinstance(p, UserPromptPart))
            query = self.answers[min(asked, len(self.answers)) - 1]
            return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name,
                                                     {"query": query})])

        return FunctionModel(respond, model_name="test-script")


@dataclass
class Site:
    backend: str
    config: ServerConfig
    services: Services
    fleet: Fleet
    admin_token: str
    client: httpx.Client
    extras: dict[str, Any]

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin_token}"}

    def use_model(self, model: Any) -> None:
        self.extras[MODEL_EXTRA] = model

    def counts(self) -> dict[str, int]:
        """Rows per table, but the audit log's (asking is audited, nothing else writes)."""
        from sqlalchemy import func, inspect, select, table

        engine = self.services.store.engine
        names = [n for n in inspect(engine).get_table_names() if "audit" not in n]
        with engine.connect() as conn:
            return {n: int(conn.execute(select(func.count()).select_from(table(n)))
                           .scalar_one()) for n in sorted(names)}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Site]:
    backend = str(request.param)
    tmp = tmp_path_factory.mktemp(f"assistant-{backend}")
    label = request.module.__name__.rsplit(".", 1)[-1]
    with database_url(backend, tmp, label) as url:
        result = init_data_dir(tmp / "data", database_url=url, repo=write_repo(tmp / "repo"),
                               port=free_port())
        config = load_config(tmp / "data")
        services = build_services(config)
        try:
            fleet = seed(services.store, Clock())
            app = build_app(config, services=services)
            extras: dict[str, Any] = app.state.steward.extras
            with serving(app, config) as client:
                yield Site(backend, config, services, fleet, result.admin_token, client,
                           extras)
        finally:
            services.close()


@pytest.fixture
def script() -> Callable[..., Script]:
    def make(*answers: str, summary: str = "") -> Script:
        return Script(list(answers), summary)

    return make
