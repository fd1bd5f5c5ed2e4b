"""The ``steward`` entry point.

Node-side commands (``apply``, ``facts``, ``agent``) go straight to the standard-library
engine and agent so they start in milliseconds and need no third-party package; everything
else loads the full command-line interface.
"""

from __future__ import annotations

import sys

NODE_COMMANDS = frozenset({"apply", "facts", "agent"})


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "agent":
        from steward.agent.cli import main as agent_main

        return agent_main(args[1:])
    if args and args[0] in NODE_COMMANDS:
        from steward.engine.cli import main as node_main

        return node_main(args)
    from steward.cli.main import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
