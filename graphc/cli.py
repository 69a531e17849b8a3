"""The `graphc` command."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="graphc", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("demo", help="the main job on a built-in example")
    args = parser.parse_args(argv)
    if args.cmd == "demo":
        from .demo import main as demo
        return demo()
    return 0


if __name__ == "__main__":
    sys.exit(main())
