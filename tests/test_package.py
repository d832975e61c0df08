"""The suite as any project installs it: a wheel, in a fresh virtual environment outside
the checkout, under one namespace (embedding_conformance: no top-level adapters, suites or
reports in site-packages), its pytest plugin loaded by its entry point, run with
``pytest --pyargs embedding_conformance.suites`` against a third-party adapter module and
its own expectations file."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

ADAPTER = textwrap.dedent('''
    import numpy as np
    from embedding_conformance.adapters.contract import InvalidIds, OutOfRange


    class MyAdapter:
        """Python-style indexing: wraps negative ids (declared in mine.toml)."""
        name = "my.embedding"
        framework = "numpy"

        def lookup(self, table, ids):
            if ids.dtype.kind not in "iu":
                raise InvalidIds(f"{ids.dtype} ids")
            wide = ids.astype(np.int64)
            if wide.size and ((wide >= table.shape[0]) | (wide < -table.shape[0])).any():
                raise OutOfRange("id outside [-V, V)")
            # np.asarray: a 0-d id of a 1-D table indexes a NumPy scalar, not an array
            return np.asarray(table[wide]) if wide.size else np.empty(ids.shape + table.shape[1:], table.dtype)
''')
EXPECTATIONS = textwrap.dedent('''
    [[divergence]]
    adapter = "my.embedding"
    clause = "ids.negative"
    model = ["wrap_negative"]
    versions = { numpy = ">=1.26" }
    reference = "https://example.org/my-embedding/negative-ids"
    note = "wraps ids in [-V, -1] Python-style"
    witness = { table = { dtype = "float32", values = [[1.0], [2.0]] }, ids = { dtype = "int64", values = [-1] } }
''')


def _run(cmd: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the fresh environment's python, its site-packages): the wheel and what it requires."""
    base = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(base / "dist"), str(ROOT)], base)
    wheel = next((base / "dist").glob("embedding_conformance-*.whl"))
    _run([sys.executable, "-m", "venv", str(base / "venv")], base)
    python = base / "venv" / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", str(wheel)], base)
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], base)
                .stdout.strip())
    return python, site


def test_the_wheel_installs_one_namespace(installed):
    _, site = installed
    assert (site / "embedding_conformance" / "adapters" / "torch" / "declarations.toml").is_file()
    assert (site / "embedding_conformance" / "reports" / "templates" / "page.html.j2").is_file()
    assert (site / "embedding_conformance" / "reports" / "results.schema.json").is_file()
    top = {p.name for p in site.iterdir()}
    assert not top & {"adapters", "suites", "reports", "tests"}, sorted(top & {"adapters", "suites", "reports", "tests"})


def test_an_installed_suite_runs_a_third_party_adapter_outside_the_checkout(installed, tmp_path):
    python, _ = installed
    (tmp_path / "mymod.py").write_text(ADAPTER)
    (tmp_path / "mine.toml").write_text(EXPECTATIONS)
    out = tmp_path / "out"
    out.mkdir()  # an existing directory as --report-dir: the plugin's option, not a rootdir
    proc = subprocess.run([str(python), "-m", "pytest", "--pyargs", "embedding_conformance.suites", "--hypothesis-seed=7",
                           "--adapter", "mymod:MyAdapter", "--expectations", "mine.toml", "--report-dir", str(out),
                           "-p", "no:cacheprovider", "-k", "ids.negative or shape.output or rows.exact"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = {r["clause"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert records["ids.negative"]["status"] == "diverges"
    assert records["shape.output"]["status"] == records["rows.exact"]["status"] == "conforms"
    assert (out / "index.html").read_text().count("my.embedding") >= 1
