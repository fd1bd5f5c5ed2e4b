"""The evaluation set, scored with the scripted model (deterministic, as CI runs it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from steward.assistant.evaluate import (
    EVALS_DIR,
    EvalError,
    fleet_store,
    load_cases,
    load_script,
    model_from_spec,
    run_eval,
    same_rows,
)
from steward.cli.main import run

CASES = EVALS_DIR / "cases.yaml"
SCRIPT = EVALS_DIR / "script.yaml"


def _wrong() -> set[str]:
    """Questions the script answers wrongly on purpose."""
    document = yaml.safe_load(SCRIPT.read_text(encoding="utf-8"))
    return {a["question"] for a in document["answers"] if a.get("wrong")}


def test_the_set_is_large_and_every_gold_query_answers_something() -> None:
    cases = load_cases(CASES)
    assert len(cases) >= 50
    assert len({c.question for c in cases}) == len(cases)
    from steward.assistant.core import run_limited

    with fleet_store() as store:
        for case in cases:
            rows, truncated = run_limited(store, case.gold, 1000)
            assert rows, case.id
            assert not truncated


def test_scripted_model_scores_every_case_it_gets_right() -> None:
    cases = load_cases(CASES)
    script = load_script(SCRIPT)
    assert set(script) == {c.question for c in cases}
    with fleet_store() as store:
        result = run_eval(model_from_spec(f"scripted:{SCRIPT}"), cases, store=store)
    failed = {r.case.question for r in result.results if not r.passed}
    assert failed == _wrong()
    right = [r for r in result.results if r.case.question not in _wrong()]
    assert all(r.passed for r in right)  # 100% where the script is right
    retried = [r for r in right if r.attempts > 1]
    assert len(retried) >= 8  # wrong first attempts corrected with Steward's errors
    assert result.passed == len(cases) - len(_wrong())
    exhausted = next(r for r in result.results if r.case.id == "load-2")
    assert exhausted.attempts == 3
    assert "no query that runs after 3 attempt(s)" in exhausted.detail


def test_comparison_is_by_rows_as_a_set() -> None:
    gold = [{"certname": "a"}, {"certname": "b"}]
    assert same_rows([{"certname": "b"}, {"certname": "a"}], gold)
    assert same_rows([{"certname": "b", "title": "x"}, {"certname": "a", "title": "y"}], gold)
    assert not same_rows([{"certname": "a"}], gold)
    assert not same_rows([{"name": "a"}, {"name": "b"}], gold)
    assert not same_rows([{"count": 2}], [{"count": 3}])


def test_cli_eval(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["eval", "assistant", "--model", f"scripted:{SCRIPT}"]) == 0
    out = capsys.readouterr().out
    cases = load_cases(CASES)
    passed = len(cases) - len(_wrong())
    assert f"accuracy: {passed}/{len(cases)} = " in out
    assert "PASS failed-last-run: Which nodes failed their last run?" in out
    assert "FAIL puppet8" in out
    assert run(["eval", "assistant", "--model", f"scripted:{SCRIPT}", "--json",
                "--min-accuracy", "0.99"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["passed"] == passed
    assert len(document["results"]) == len(cases)


def test_malformed_sets_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "cases.yaml"
    bad.write_text("cases:\n  - id: a\n    question: q\n")
    with pytest.raises(EvalError, match=r"cases.yaml: case 1 needs string fields"):
        load_cases(bad)
    bad.write_text("answers:\n  - question: q\n    attempts: []\n")
    with pytest.raises(EvalError, match="answer 1 needs"):
        load_script(bad)
