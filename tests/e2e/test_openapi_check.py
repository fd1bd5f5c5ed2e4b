"""The answer checker itself: it catches what it exists to catch."""

from __future__ import annotations

import httpx

from tests.e2e.openapi_check import OpenApiCheck

DOCUMENT = {
    "paths": {
        "/api/v1/changes/{change_id}": {"get": {"responses": {
            "200": {"content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Change"}}}},
            "404": {"content": {"application/json": {"schema": {
                "type": "object", "required": ["error"],
                "properties": {"error": {"type": "string"}}}}}}}}},
        "/api/v1/changes/trace": {"get": {"responses": {"200": {}}}},
    },
    "components": {"schemas": {"Change": {
        "type": "object", "required": ["id", "state"],
        "properties": {"id": {"type": "string"}, "state": {"enum": ["draft", "merged"]}}}}},
}


def answer(path: str, status: int, body: object) -> httpx.Response:
    return httpx.Response(status, json=body,
                          request=httpx.Request("GET", f"https://h{path}"))


def test_a_matching_answer_passes() -> None:
    check = OpenApiCheck(DOCUMENT)
    assert check.problems(answer("/api/v1/changes/chg-1", 200,
                                 {"id": "chg-1", "state": "draft"})) == []
    assert check.problems(answer("/api/v1/changes/chg-9", 404, {"error": "no chg-9"})) == []


def test_a_body_off_its_schema_is_caught_with_where() -> None:
    problems = OpenApiCheck(DOCUMENT).problems(
        answer("/api/v1/changes/chg-1", 200, {"id": "chg-1", "state": "approved"}))
    assert len(problems) == 1
    assert problems[0].startswith("GET /api/v1/changes/{change_id} -> 200: state: ")


def test_an_undocumented_status_is_caught() -> None:
    problems = OpenApiCheck(DOCUMENT).problems(answer("/api/v1/changes/chg-1", 409, {}))
    assert problems == ["GET /api/v1/changes/{change_id} -> 409: status not in the document "
                        "(documented: 200, 404)"]


def test_the_most_literal_template_wins() -> None:
    found = OpenApiCheck(DOCUMENT).operation("GET", "/api/v1/changes/trace")
    assert found is not None
    assert found[0] == "/api/v1/changes/trace"
