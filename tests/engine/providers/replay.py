"""Replaying captured real command transcripts (see fixtures/systemctl/README.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steward.catalog.model import Resource
from steward.catalog.types import TYPES
from steward.engine.context import Context
from steward.engine.provider import Provider
from steward.engine.providers import provider_class
from steward.engine.runner import CommandResult

FIXTURES = Path(__file__).parent / "fixtures"


def load_commands(name: str) -> list[dict[str, Any]]:
    document = json.loads((FIXTURES / "systemctl" / f"{name}.json").read_text())
    return list(document["commands"])


@dataclass
class Transcript:
    """A responder that answers commands in exactly the captured order.

    A command out of order, or one never captured, fails the test: the provider must issue
    the same commands, in the same order, that produced the captured output.
    """

    commands: list[dict[str, Any]]
    #: Only commands starting with this program are answered from the transcript.
    program: str = "systemctl"
    position: int = field(default=0)

    def __call__(self, argv: tuple[str, ...]) -> CommandResult | None:
        if argv[0] != self.program:
            return None
        if self.position >= len(self.commands):
            raise AssertionError(f"unexpected extra command: {' '.join(argv)}")
        expected = self.commands[self.position]
        if list(argv) != expected["argv"]:
            raise AssertionError(
                f"command {self.position}: expected {' '.join(expected['argv'])}, "
                f"got {' '.join(argv)}"
            )
        self.position += 1
        return CommandResult(argv, expected["returncode"], expected["stdout"],
                             expected["stderr"])

    @property
    def done(self) -> bool:
        return self.position == len(self.commands)


def make_provider(ctx: Context, type_name: str, title: str, **parameters: Any) -> Provider:
    """A provider with parameters as the engine fills them (type defaults, namevar)."""
    rtype = TYPES[type_name]
    params: dict[str, Any] = {p.name: p.default for p in rtype.params if p.default is not None}
    params[rtype.namevar] = title
    params.update(parameters)
    cls = provider_class(type_name)
    return cls(Resource(type_name, title, parameters), params, ctx)
