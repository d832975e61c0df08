"""``python -m reports render DIR [--out DIR]``, ``python -m reports merge DIR... --out DIR``,
``python -m reports findings [DIR...] --out DIR [--summary FILE] [--no-replay]`` (one
upstream-ready bug report per behaviour, each repro replayed first, progress on stderr) and ``python -m reports compare ADAPTER_A ADAPTER_B
[DIR]`` (the porting view: every clause where the two behave differently, with an input).

Bad input (missing, empty, truncated or corrupt results) prints one line,
``error: <file>:<line>: <problem>``, to stderr and exits with status 2 without
writing anything.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from .badges import write_badges
from .merge import _atomic_write, merge_runs, write_run
from .render import render
from .results import ResultsError, read_run


def merge_dirs(dirs: Sequence[Path | str], out_dir: Path | str) -> Path:
    """Read every directory first (a ResultsError stops it before anything is written),
    then write the merged results and its page into ``out_dir``; returns the page."""
    if not dirs:
        raise ValueError("nothing to merge")
    runs = [read_run(d) for d in dirs]
    merged = merge_runs(runs, [os.path.normpath(str(d)) for d in dirs])
    # render to memory first: a page that fails to render must not leave half an output
    page = render(merged, out_dir, write=False)
    write_run(merged, out_dir)
    write_badges(merged.records, out_dir)  # shields.io endpoint JSON per framework, for a published page
    out = Path(out_dir) / "index.html"
    _atomic_write(out, page)
    return out


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
                         help="where the merged results.jsonl, run.json, index.html and badges/<framework>.json "
                              "(shields.io endpoint JSON) go")
    p_find = sub.add_parser("findings", help="one upstream-ready Markdown bug report per behaviour (declaration)")
    p_find.add_argument("dirs", metavar="DIR", type=Path, nargs="*", default=[Path("reports/latest")],
                        help="report directories (default: reports/latest)")
    p_find.add_argument("--out", metavar="DIR", type=Path, required=True, help="where the reports go")
    p_find.add_argument("--summary", metavar="FILE", type=Path, default=None,
                        help="also write the departures no tracker records, with their repros (FINDINGS.md)")
    p_find.add_argument("--no-replay", action="store_true", help="write without replaying the repros first")
    p_find.add_argument("--quiet", action="store_true", help="print no progress (to stderr) while working")
    p_cmp = sub.add_parser("compare", help="where two adapters behave differently, each clause with an input")
    p_cmp.add_argument("a", metavar="ADAPTER_A")
    p_cmp.add_argument("b", metavar="ADAPTER_B")
    p_cmp.add_argument("dir", metavar="DIR", type=Path, nargs="?", default=Path("reports/latest"),
                       help="a report directory whose examples are tried first (default: reports/latest)")
    args = parser.parse_args(argv)

    try:
        if args.command == "render":
            path = render(read_run(args.dir), args.out if args.out is not None else args.dir)
        elif args.command == "merge":
            path = merge_dirs(args.dirs, args.out)
        elif args.command == "findings":
            from .findings import stderr_progress, write_findings

            found = write_findings(args.dirs, args.out, args.summary, replay_them=not args.no_replay,
                                   progress=None if args.quiet else stderr_progress)
            written = sum(1 for f in found if f.path is not None)
            worth = sum(1 for f in found if f.path is not None and f.worth_filing)
            print(f"{written} reports of {len(found)} behaviours in {args.out} ({worth} candidates to file)"
                  + (f"; {args.summary}" if args.summary else ""))
            return 0
        else:
            from .compare import compare, text

            run = read_run(args.dir) if (args.dir / "results.jsonl").exists() else None
            result = compare(args.a, args.b, run, args.dir if run else None)
            print(text(result))
            if run is not None:
                render(run, args.dir)
            return 0
    except (ResultsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


