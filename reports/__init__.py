"""Results reading, HTML rendering and merging for embedding-conformance.

Import-light on purpose: no framework is imported here, and Jinja2 only when a
page is rendered. Entry points:

- ``reports.results.read_run(dir) -> Run`` (``ResultsError`` on bad input);
- ``reports.render.render(run_or_runs, out_dir) -> Path`` to ``out_dir/index.html``;
- ``reports.merge.merge_dirs(dirs, out_dir) -> Path``;
- ``python -m reports render DIR`` and ``python -m reports merge DIR... --out DIR``.
"""
from __future__ import annotations

from .results import ResultsError, Run, read_run

__all__ = ["ResultsError", "Run", "read_run"]
