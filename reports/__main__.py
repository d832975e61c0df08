"""``python -m reports`` from a checkout, and ``python -m embedding_conformance.reports``
anywhere: the command line of reports/cli.py, run from the installed package (so that
one copy of each module is loaded, whatever name the command used)."""
import sys

from embedding_conformance.reports.cli import main

sys.exit(main())
