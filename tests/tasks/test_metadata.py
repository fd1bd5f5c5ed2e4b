"""Task metadata and parameter validation: errors name the file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from steward.tasks.definitions import TaskError, TaskSpec, parse_task

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "repo" / "tasks"

GOOD = """\
description: Restart it
supports_noop: true
parameters:
  name:
    type: string
    required: true
    pattern: "^[a-z]+$"
  count:
    type: integer
    default: 3
    minimum: 1
    maximum: 5
  mode:
    type: string
    enum: [fast, slow]
  force:
    type: boolean
  password:
    type: string
    sensitive: true
"""


def _spec() -> TaskSpec:
    return parse_task("restart", GOOD)


def test_the_shipped_tasks_are_valid() -> None:
    names = sorted(p.stem for p in EXAMPLES.glob("*.yaml"))
    assert names == ["disk_usage", "file_info", "journal", "port_check", "restart_service",
                     "service_status"]
    specs = {n: parse_task(n, (EXAMPLES / f"{n}.yaml").read_text()) for n in names}
    assert {n for n, s in specs.items() if s.read_only} == set(names) - {"restart_service"}
    assert specs["restart_service"].supports_noop
    assert specs["restart_service"].permission == "task:run"
    assert specs["disk_usage"].permission == "task:run_readonly"
    for name in names:
        assert (EXAMPLES / f"{name}.py").is_file()


@pytest.mark.parametrize(("text", "needle"), [
    ("description: x\nparamters: {}\n", "tasks/t.yaml:2: paramters: unknown field"),
    ("supports_noop: true\n", "tasks/t.yaml: description: a non-empty string is required"),
    ("description: x\nsupports_noop: yes please\n", "tasks/t.yaml:2: supports_noop: must be"),
    ("description: x\nparameters:\n  n:\n    type: float\n",
     "tasks/t.yaml:4: parameters.n.type: must be one of string, integer, boolean"),
    ("description: x\nparameters:\n  n:\n    type: integer\n    pattern: '^a'\n",
     "tasks/t.yaml:5: parameters.n.pattern: only string parameters"),
    ("description: x\nparameters:\n  n:\n    pattern: '(('\n",
     "parameters.n.pattern: not a valid regular expression"),
    ("description: x\nparameters:\n  n:\n    type: integer\n    default: many\n",
     "tasks/t.yaml:5: parameters.n.default: task 't': parameter 'n' must be an integer"),
    ("description: x\nparameters:\n  n:\n    colour: red\n",
     "tasks/t.yaml:4: parameters.n.colour: unknown field"),
    ("description: [unclosed\n", "tasks/t.yaml:2: not valid YAML"),
    ("- a list\n", "tasks/t.yaml: the metadata must be a mapping"),
    ("description: x\ntimeout: 0\n", "tasks/t.yaml:2: timeout: must be an integer"),
])
def test_metadata_errors_name_file_line_and_field(text: str, needle: str) -> None:
    with pytest.raises(TaskError) as caught:
        parse_task("t", text)
    assert needle in str(caught.value)


def test_parameters_are_checked_and_typed() -> None:
    spec = _spec()
    assert spec.validate({"name": "nginx", "count": "2", "force": "true"}) == \
        {"name": "nginx", "count": 2, "force": True}
    assert spec.validate({"name": "nginx"}) == {"name": "nginx", "count": 3}
    cases = [
        ({}, "parameter 'name' is required"),
        ({"name": "Nginx!"}, "parameter 'name' must match /^[a-z]+$/, not 'Nginx!'"),
        ({"name": "a", "count": 9}, "parameter 'count' must be at most 5"),
        ({"name": "a", "count": "two"}, "parameter 'count' must be an integer"),
        ({"name": "a", "mode": "medium"}, "parameter 'mode' must be one of fast, slow"),
        ({"name": "a", "force": "maybe"}, "parameter 'force' must be true or false"),
        ({"name": "a", "colour": "red"}, "task 'restart' has no parameter 'colour'"),
        ({"name": "a", "password": 12345}, "must be a string, not (sensitive value)"),
    ]
    for params, needle in cases:
        with pytest.raises(TaskError) as caught:
            spec.validate(params)
        assert needle in str(caught.value), (params, str(caught.value))
    assert "12345" not in str(caught.value)


@given(st.integers(min_value=-100, max_value=100))
def test_integer_bounds_property(value: int) -> None:
    spec = _spec()
    if 1 <= value <= 5:
        assert spec.validate({"name": "a", "count": str(value)})["count"] == value
    else:
        with pytest.raises(TaskError):
            spec.validate({"name": "a", "count": value})
