"""Loads the conformance plugin for every pytest run from this checkout."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

pytest_plugins = ["suites.plugin"]
