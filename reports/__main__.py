"""``python -m reports render DIR [--out DIR]`` and ``python -m reports merge DIR... --out DIR``.

Bad input (missing, empty, truncated or corrupt results) prints one line,
``error: <file>:<line>: <problem>``, to stderr and exits with status 2 without
writing anything.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .results import ResultsError, read_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports", description="Render and merge conformance reports.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p_render = sub.add_parser("render", help="render DIR/index.html from DIR/results.jsonl and DIR/run.json")
    p_render.add_argument("dir", metavar="DIR", type=Path, help="a report directory")
    p_render.add_argument("--out", metavar="DIR", type=Path, default=None,
                          help="write index.html here instead of into DIR")
    p_merge = sub.add_parser("merge", help="join the results of many runs into one page with a version axis")
    p_merge.add_argument("dirs", metavar="DIR", type=Path, nargs="+", help="report directories to join")
    p_merge.add_argument("--out", metavar="DIR", type=Path, required=True,
                         help="where the merged results.jsonl, run.json and index.html go")
    args = parser.parse_args(argv)

    try:
        if args.command == "render":
            from .render import render

            path = render(read_run(args.dir), args.out if args.out is not None else args.dir)
        else:
            from .merge import merge_dirs

            path = merge_dirs(args.dirs, args.out)
    except ResultsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
