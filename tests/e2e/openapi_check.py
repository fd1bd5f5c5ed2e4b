"""Every JSON answer a test receives from a real server, checked against that server's own
OpenAPI document.

Schemathesis (tests/security/test_schemathesis.py) sends generated requests, which rarely get
past a 404 to a deployment, a task job or an assistant answer; the end-to-end suites do reach
them. Checking their answers too means the response models describe what the routes really
send (issue 11.4), not what someone believed they send: an undocumented status, or a body
that does not match its documented schema, fails the test that received it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import httpx
from jsonschema import Draft202012Validator

_PARAMETER = re.compile(r"\{[^}/]+\}")


class OpenApiCheck:
    """Checks answers against one OpenAPI document (as the server serves it)."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.components = document.get("components", {})
        self._validators: dict[tuple[str, str, str], Draft202012Validator] = {}
        routes = []
        for template, operations in document["paths"].items():
            pattern = "^" + "[^/]+".join(map(re.escape, _PARAMETER.split(template))) + "$"
            literal = len(_PARAMETER.sub("", template))
            routes.append((literal, template, re.compile(pattern), operations))
        # The most literal template wins: /changes/trace before /changes/{change_id}.
        self.routes = sorted(routes, key=lambda r: (-r[0], r[1]))

    def operation(self, method: str, path: str) -> tuple[str, Mapping[str, Any]] | None:
        for _, template, pattern, operations in self.routes:
            if pattern.match(path) and method.lower() in operations:
                return template, operations[method.lower()]
        return None

    def problems(self, response: httpx.Response) -> list[str]:
        """What in ``response`` the document does not describe (empty: all of it is)."""
        request = response.request
        found = self.operation(request.method, request.url.path)
        if found is None:
            return []  # not a documented route (openapi.json itself, the MCP endpoint)
        template, operation = found
        where = f"{request.method} {template} -> {response.status_code}"
        answers = operation.get("responses", {})
        answer = answers.get(str(response.status_code)) or answers.get("default")
        if answer is None:
            return [f"{where}: status not in the document (documented: "
                    f"{', '.join(sorted(answers))})"]
        if not response.headers.get("content-type", "").startswith("application/json"):
            return []
        content = answer.get("content", {})
        if "application/json" not in content:
            return [f"{where}: answered JSON, documented as {sorted(content) or 'no body'}"]
        schema = content["application/json"].get("schema")
        if not schema:
            return []
        key = (request.method, template, str(response.status_code))
        validator = self._validators.get(key)
        if validator is None:
            validator = self._validators[key] = Draft202012Validator(
                {"allOf": [schema], "components": self.components})
        return [f"{where}: {'/'.join(map(str, error.absolute_path)) or 'body'}: "
                f"{error.message[:300]}"
                for error in sorted(validator.iter_errors(response.json()), key=str)][:5]


def checking_hook(fetch: Any) -> Any:
    """An httpx response hook checking each answer; ``fetch()`` gives the OpenAPI document
    (called once, on the first answer)."""
    check: list[OpenApiCheck] = []

    def hook(response: httpx.Response) -> None:
        if response.request.url.path == "/openapi.json":
            return
        response.read()
        if not check:
            check.append(OpenApiCheck(fetch()))
        problems = check[0].problems(response)
        assert not problems, "the answer does not match the OpenAPI document:\n" + \
            "\n".join(problems)

    return hook
