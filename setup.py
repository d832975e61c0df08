"""The packages of the one namespace, embedding_conformance: adapters/, suites/, reports/ and
every folder under them (data folders such as reports/templates too: setuptools warns about an
importable folder it is not told of), found rather than listed, so that a framework's new
folder under adapters/ ships without an edit here (pyproject.toml holds everything else)."""
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent


def _is_package(folder: Path) -> bool:
    rel = folder.relative_to(ROOT).parts
    # reports/ holds the runs' output folders (reports/latest, reports/matrix/<cell>, git-ignored)
    # beside its one data folder, templates
    if rel[0] == "reports" and len(rel) > 1 and rel[1] != "templates":
        return False
    return all(part.isidentifier() for part in rel) and "__pycache__" not in rel


def packages() -> list[str]:
    found = []
    for top in ("adapters", "suites", "reports"):
        folders = [ROOT / top] + sorted(p for p in (ROOT / top).rglob("*") if p.is_dir())
        found += [".".join(("embedding_conformance", *f.relative_to(ROOT).parts)) for f in folders if _is_package(f)]
    return found


setup(packages=packages())
