"""``steward facts [--pretty] [NAME.PATH]``: print this node's facts, or one of them, as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from steward.facts import collect_facts, lookup


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="steward facts",
        description="Print this node's facts as JSON with sorted keys.",
    )
    parser.add_argument(
        "path",
        nargs="?",
        help="print only this fact, by dotted path (os.family, networking.ip, "
        "processors.models.0); a string prints bare, like facter",
    )
    parser.add_argument("--pretty", action="store_true", help="indent the JSON")
    parser.add_argument(
        "--root",
        default="/",
        help="read system files below this directory instead of / (captured trees, images)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 with the JSON on stdout; 1 when the asked-for fact does not exist."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    indent = 2 if args.pretty else None
    if args.path is None:
        value = collect_facts(args.root)
    else:
        # Run only the collector behind the first component: `steward facts os.family`
        # should not pay for statvfs on every mount.
        facts = collect_facts(args.root, only=[args.path.split(".", 1)[0]])
        try:
            value = lookup(facts, args.path)
        except KeyError:
            sys.stderr.write(f"steward facts: no fact {args.path!r}\n")
            return 1
        if isinstance(value, str):
            sys.stdout.write(value + "\n")
            return 0
    sys.stdout.write(json.dumps(value, sort_keys=True, indent=indent, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
