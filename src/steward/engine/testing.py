"""Test helpers shipped with the engine: a runner that replays captured command output.

Used for providers whose real system cannot run in CI (systemd needs to be PID 1): the
fixtures are real ``systemctl`` output, and the runner records every command it was asked to
run, so a test can assert both what was predicted and what would have been executed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from steward.engine.runner import CommandResult

Responder = Callable[[tuple[str, ...]], CommandResult | None]


@dataclass
class ReplayRunner:
    """Answers commands from a table of ``argv -> (returncode, stdout, stderr)``.

    A key may be a full argv tuple or a callable responder for stateful fakes. An unknown
    command is an error, so a test never silently passes on a command nobody expected.
    """

    responses: dict[tuple[str, ...], tuple[int, str, str]] = field(default_factory=dict)
    responders: list[Responder] = field(default_factory=list)
    programs: set[str] = field(default_factory=set)
    calls: list[tuple[str, ...]] = field(default_factory=list)

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        key = tuple(argv)
        self.calls.append(key)
        for responder in self.responders:
            result = responder(key)
            if result is not None:
                return result
        if key not in self.responses:
            raise AssertionError(f"unexpected command: {' '.join(key)}")
        code, out, err = self.responses[key]
        return CommandResult(key, code, out, err)

    def which(self, program: str) -> str | None:
        return f"/usr/bin/{program}" if program in self.programs else None
