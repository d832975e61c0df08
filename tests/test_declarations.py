"""The built-in declarations hold only for what was run, and say where they come from.

Every version range of adapters/*/declarations.toml admits at least one version that the
project runs (a cell of the version matrix, noxfile.CELLS, or the default environment,
requirements.txt) and none outside the oldest and newest of them: a range is widened
when a matrix cell proves more, never on trust. And nothing in the repository points
at a file outside it."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from embedding_conformance.suites import declarations as decl
from embedding_conformance.suites.catalogue import load_all

ROOT = Path(__file__).resolve().parents[1]


def _noxfile():
    # one module for every test that reads it (tests/test_ci_matrix.py too): nox registers
    # its sessions when the file runs, and warns when they are registered twice
    if "project_noxfile" in sys.modules:
        return sys.modules["project_noxfile"]
    spec = importlib.util.spec_from_file_location("project_noxfile", ROOT / "noxfile.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run_versions() -> dict[str, set[Version]]:
    """Every version of every distribution the project runs: the matrix and the default."""
    if importlib.util.find_spec("nox") is None:
        pytest.skip("nox is not installed (requirements.txt pins it)")
    nf = _noxfile()
    out: dict[str, set[Version]] = {}
    pins = [nf.requirement_pins(), nf.requirement_pins(ROOT / "requirements-nodeps.txt")] + \
        [dict(c.pins) for c in nf.CELLS] + [{"torch": nf.TORCH}]
    for p in pins:
        for name, version in p.items():
            out.setdefault(canonicalize_name(name), set()).add(Version(version))
    return out


def _neighbours(v: Version) -> list[Version]:
    """Versions just past ``v`` on either side: a range admitting one reaches past what ran."""
    major, minor, micro = (list(v.release) + [0, 0])[:3]
    up = [Version(f"{major}.{minor}.{micro + 1}"), Version(f"{major}.{minor + 1}.0"), Version(f"{major + 1}.0.0")]
    down = [Version(f"{major}.{minor}.{micro - 1}")] if micro else []
    down += [Version(f"{major}.{minor - 1}.99")] if minor else [Version(f"{major - 1}.99.99")] if major else []
    return up + down


def _contains(spec: str, v: Version) -> bool:
    """``spec`` admits ``v``; alternatives joined by ``||`` (the releases a matrix ran) each count."""
    return any(SpecifierSet(alt.strip()).contains(v, prereleases=True) for alt in spec.split("||"))


def test_every_version_range_is_only_as_wide_as_the_versions_run():
    ran = run_versions()
    declared = decl.load([], load_all())
    wrong = []
    for d in declared:
        for dist, spec in d.versions:
            have = sorted(ran.get(canonicalize_name(dist), ()))
            if not have:
                wrong.append(f"{d.source}: {dist} is not a distribution the project runs")
                continue
            if not any(_contains(spec, v) for v in have):
                wrong.append(f"{d.source}: {dist} {spec} admits none of the versions run ({', '.join(map(str, have))})")
            lo, hi = have[0], have[-1]
            past = [v for v in _neighbours(hi) if v > hi] + [v for v in _neighbours(lo) if v < lo]
            reach = [str(v) for v in past if _contains(spec, v)]
            if reach:
                wrong.append(f"{d.source}: {dist} {spec} admits {', '.join(reach)}, outside the versions run "
                             f"({lo} to {hi})")
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_every_declaration_has_a_reference_and_a_write_up():
    for d in decl.load([], load_all()):
        assert d.reference.startswith("https://"), d.source
        assert d.note.strip(), d.source


OUTSIDE = re.compile(r"/work/|\.\./shared|(?<![\w.])notes/\w+\.md|/tmp/")


def test_nothing_points_at_a_file_outside_the_repository():
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True).stdout.split()
    found = []
    for name in files:
        path = ROOT / name
        if path.suffix in (".png", ".whl") or not path.is_file():
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line) and "OUTSIDE = re.compile" not in line:
                found.append(f"{name}:{n}: {line.strip()[:120]}")
    assert not found, "\n".join(found)


def test_versions_may_list_the_releases_a_matrix_ran():
    from embedding_conformance.suites.declarations import DeclarationError, _check_specifiers, _satisfies

    spec = "==2.11.0 || ==2.13.0"
    assert _satisfies(spec, "2.11.0") and _satisfies(spec, "2.13.0+cpu")
    assert not _satisfies(spec, "2.12.1") and not _satisfies(spec, "2.14.1")
    _check_specifiers("f.toml: divergence #1", "", {"torch": spec}, "version specifier")
    with pytest.raises(DeclarationError, match=r"torch = '==2.11.0 \|\| banana'.*joined by \|\|"):
        _check_specifiers("f.toml: divergence #1", "", {"torch": "==2.11.0 || banana"}, "version specifier")
