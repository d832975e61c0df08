"""Results reading, HTML rendering, merging, bug reports and porting views for
embedding-conformance (``embedding_conformance.reports``).

Import-light on purpose: nothing is imported here, no framework anywhere in the package
but where an adapter is run (compare, replay), and Jinja2 only when a page is rendered.
Entry points: ``results.read_run(dir) -> Run`` (``ResultsError`` on bad input),
``render.render(run_or_runs, out_dir) -> Path``, ``cli.merge_dirs(dirs, out_dir)``,
and the command line ``python -m embedding_conformance.reports`` (``python -m reports``
in a checkout): render, merge, findings, compare.
"""
