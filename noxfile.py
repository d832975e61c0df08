"""The version matrix: one nox session per cell of framework versions, and a merge.

    nox -s "cell(tf2.16-keras3.0)"       one cell: reports/matrix/tf2.16-keras3.0/
    nox -s cell                          every cell
    nox -s merge                         reports/matrix/* -> reports/matrix-merged/index.html
    nox -s matrix_json                   the cell names as JSON (the GitHub Actions matrix)

CELLS below is the one list of cells: the nox sessions are parametrized by it and
.github/workflows/conformance.yml builds its matrix from ``nox -s matrix_json``.

Each cell installs exact pins into its own virtualenv (torch first, at its pin, in a pip
call of its own, where the cell has torch), then compares the installed versions with
its pins and fails before running anything if one differs, then runs the suite in the
``ci`` hypothesis profile on the adapters the cell varies (plus the numpy oracle),
writing results.jsonl, run.json and index.html to reports/matrix/<cell>/.

A cell whose checks fail (violates, stale, error) still writes its results and lists
the failing checks; the session then fails only with MATRIX_STRICT=1 (set on hosted
CI), so a local ``nox -s A B merge`` always gets to the merge. A version mismatch,
or a pytest run that could not finish (usage error, internal error, no results),
always fails the session.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import nox
from nox.command import CommandFailed
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parent
MATRIX_DIR = Path("reports/matrix")
MERGED_DIR = Path("reports/matrix-merged")
PYTHON = "3.11"
# The default environment's torch (scripts/setup.sh installs it first, on its own): the
# ONNX cells export with it. The torch cells pin other releases too; where no CPU build is
# at hand pip takes PyPI's CUDA build (it runs on the CPU too, with GBs of NVIDIA runtime
# wheels beside it), so the matrix never asks for a torch past TORCH_MAX, the newest
# release a developer's machine holds (pip's constraint file there caps torch at it).
TORCH = "2.13.0"
TORCH_MAX = "2.14.1"
# The index URL for the torch install alone (hosted CI points it at the CPU wheel index).
TORCH_INDEX_ENV = "TORCH_INDEX_URL"
STRICT_ENV = "MATRIX_STRICT"
FAILING = ("violates", "stale", "error")

nox.options.sessions = ["cell", "merge"]
nox.options.reuse_venv = "yes"


@dataclass(frozen=True)
class Cell:
    """One cell: a coherent set of exact pins and the adapters it runs."""

    name: str
    pins: Mapping[str, str]  # distribution -> exact version (torch, if present, is installed first)
    adapters: str  # the --adapters selection: what the cell varies, plus the numpy oracle


# Every cell pins numpy and ml_dtypes too, at releases both its frameworks accept
# (tensorflow 2.16/2.17 want numpy < 2 and ml_dtypes ~= 0.3 / < 0.5; tensorflow 2.18
# numpy < 2.1; 2.19 numpy < 2.2). tf-keras X pulls tensorflow X (the full package),
# so it is pinned alongside tensorflow-cpu X and checked too.
#
# What a cell runs is what its pins vary, every column that rests on them:
# - TensorFlow cells: tf.* (lookups, ShardedVariable, the sparse bag lookups), tf_keras.*,
#   keras.layers.Embedding[tensorflow]* and keras-rs's DistributedEmbedding[tensorflow]
#   (keras-rs pinned at the default environment's release: its only requirement is Keras 3).
#   Not the tf2onnx columns: they run in the ONNX cells, at TensorFlow 2.21.
# - JAX cells: jax.numpy.take*, flax.nnx.Embed*, keras.layers.Embedding[jax]*, the sharded
#   ones over four host devices ([NamedSharding-*], [ModelParallel-*]) included.
# - torch cells: torch.nn.*, the bag columns, DTensor (torch.distributed.tensor.parallel.*),
#   keras.layers.Embedding[torch]* and the torch.onnx export columns (onnxruntime[torch.onnx],
#   onnx.reference[torch.onnx], openvino[torch.onnx] and its [f32]), the exporter (onnxscript,
#   onnx-ir), onnx, onnxruntime and OpenVINO at the default environment's releases, keras too:
#   what varies is torch. Not TorchRec: its requirements are installed with --no-deps
#   (requirements-nodeps.txt), which a cell's pins cannot express, and torchrec 1.8.0 is built
#   against the default environment's torch, which runs it.
# - ONNX cells: the ONNX and OpenVINO columns (torch.onnx and tf2onnx exports, onnxruntime,
#   onnx.reference, OpenVINO's CPU plugin) at one onnxruntime/onnx pair each, the exporters
#   at the default environment's releases (onnxscript 0.7.2 takes onnx >= 1.17, onnx-ir 1.1.0
#   onnx >= 1.16; onnxruntime 1.28 is the release that moved to onnx 1.22).
# - every cell: numpy (the oracle's self-check) and numpy.take, whose behaviour follows the
#   numpy release the cell pins (1.26.4, 2.0.2, 2.1.3, 2.4.6).
# MLX and array_api_strict are in no cell: one release each, run by the default environment.
TF_ADAPTERS = "numpy,numpy.take,tf,[tensorflow]"  # tf.*, tf_keras.*, keras.layers.Embedding[tensorflow]*, keras_rs.*[tensorflow]
JAX_ADAPTERS = "numpy,numpy.take,jax,flax,[jax]"  # jax.numpy.take*, flax.nnx.Embed*, keras.layers.Embedding[jax]*
# torch.nn.*, torch.distributed.tensor.parallel.*, keras.layers.Embedding[torch]*, and the torch.onnx exports run by
# onnxruntime, onnx.reference and OpenVINO (openvino[torch.onnx] selects its [f32] variant too)
TORCH_ADAPTERS = "numpy,numpy.take,torch,[torch],onnxruntime[torch.onnx],onnx.reference[torch.onnx],openvino[torch.onnx]"
ONNX_ADAPTERS = "numpy,onnxruntime,onnx.reference,openvino"  # onnxruntime[*], onnx.reference[*], openvino[torch.onnx]
KERAS_RS = "0.4.0"
# the default environment's exporter and runtimes (requirements.txt)
ONNXSCRIPT, ONNX_IR, OPENVINO = "0.7.2", "1.1.0", "2026.4.1"


def _tf(tf: str, tf_keras: str, keras: str, numpy: str, ml_dtypes: str) -> dict[str, str]:
    return {"tensorflow-cpu": tf, "tensorflow": tf, "tf-keras": tf_keras, "keras": keras, "keras-rs": KERAS_RS,
            "numpy": numpy, "ml_dtypes": ml_dtypes}


def _onnx(onnxruntime: str, onnx: str) -> dict[str, str]:
    """An onnxruntime/onnx pair; the exporters (torch.onnx with onnxscript, tf2onnx on
    TensorFlow 2.21) and OpenVINO at the default environment's releases. tensorflow is
    pinned beside tensorflow-cpu as there (tf-keras pulls it in): the tf2onnx columns
    report its version."""
    return {"torch": TORCH, "onnxruntime": onnxruntime, "onnx": onnx, "onnxscript": ONNXSCRIPT, "onnx-ir": ONNX_IR,
            "openvino": OPENVINO, "tf2onnx": "1.17.0", "tensorflow-cpu": "2.21.0", "tensorflow": "2.21.0",
            "numpy": "2.4.6", "ml_dtypes": "0.6.0"}


def _torch(torch: str) -> dict[str, str]:
    """A torch release (installed first, on its own); Keras and the torch.onnx export's
    exporter and runtimes at the default environment's releases, which each of these
    torch releases accepts."""
    return {"torch": torch, "keras": "3.15.1", "onnx": "1.23.2", "onnxscript": ONNXSCRIPT, "onnx-ir": ONNX_IR,
            "onnxruntime": "1.31.1", "openvino": OPENVINO, "numpy": "2.4.6", "ml_dtypes": "0.6.0"}


CELLS: tuple[Cell, ...] = (
    Cell("tf2.16-keras3.0", _tf("2.16.2", "2.16.0", "3.0.5", "1.26.4", "0.3.2"), TF_ADAPTERS),
    Cell("tf2.18-keras3.8", _tf("2.18.1", "2.18.0", "3.8.0", "2.0.2", "0.4.1"), TF_ADAPTERS),
    Cell("tf2.19-keras3.10", _tf("2.19.1", "2.19.0", "3.10.0", "2.1.3", "0.5.1"), TF_ADAPTERS),
    Cell("tf2.21-keras3.15", _tf("2.21.0", "2.21.0", "3.15.1", "2.4.6", "0.6.0"), TF_ADAPTERS),
    Cell("jax0.4.38-flax0.10", {"jax": "0.4.38", "jaxlib": "0.4.38", "flax": "0.10.2", "keras": "3.8.0",
                                "numpy": "2.0.2", "ml_dtypes": "0.5.1"}, JAX_ADAPTERS),
    Cell("jax0.10.2-flax0.12", {"jax": "0.10.2", "jaxlib": "0.10.2", "flax": "0.12.8", "keras": "3.15.1",
                                "numpy": "2.4.6", "ml_dtypes": "0.6.0"}, JAX_ADAPTERS),
    Cell("torch2.11-keras3.15", _torch("2.11.0"), TORCH_ADAPTERS),
    Cell("torch2.12-keras3.15", _torch("2.12.1"), TORCH_ADAPTERS),
    Cell("torch2.13-keras3.15", _torch(TORCH), TORCH_ADAPTERS),
    Cell("torch2.14-keras3.15", _torch(TORCH_MAX), TORCH_ADAPTERS),
    Cell("ort1.28-onnx1.22", _onnx("1.28.0", "1.22.0"), ONNX_ADAPTERS),
    Cell("ort1.31-onnx1.23", _onnx("1.31.1", "1.23.2"), ONNX_ADAPTERS),
)
CELLS_BY_NAME = {c.name: c for c in CELLS}

# What the suite itself needs, at the versions requirements.txt pins for the default environment.
SUITE_DISTRIBUTIONS = ("hypothesis", "pytest", "packaging", "jinja2", "jsonschema")
REPORT_DISTRIBUTIONS = ("jinja2", "jsonschema")  # the merge refuses records the results schema does not take


# -- pins and the version check ------------------------------------------------------

class VersionMismatch(Exception):
    """The environment does not hold the versions a cell pins."""


def requirement_pins(path: Path = ROOT / "requirements.txt") -> dict[str, str]:
    """``name==version`` lines of a requirements file (``name[extra]==version`` too), by
    canonical name."""
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^\s*([A-Za-z0-9._-]+)(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)", line)
        if m:
            pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def base_pins(names: tuple[str, ...]) -> list[str]:
    pins = requirement_pins()
    missing = [n for n in names if canonicalize_name(n) not in pins]
    if missing:
        raise RuntimeError(f"requirements.txt pins none of {missing}")
    return [f"{n}=={pins[canonicalize_name(n)]}" for n in names]


def version_matches(pin: str, installed: str) -> bool:
    """PEP 440 ``==pin``: a local label is ignored, so 2.13.0+cpu is torch 2.13.0."""
    try:
        return SpecifierSet(f"=={pin}").contains(Version(installed), prereleases=True)
    except InvalidVersion:
        return False


def check_installed(pins: Mapping[str, str], installed: Mapping[str, str | None], cell: str = "") -> None:
    """Raise VersionMismatch naming every pinned distribution whose installed
    version is not its pin (or that is not installed at all)."""
    found = {canonicalize_name(k): v for k, v in installed.items()}
    problems = []
    for name, want in pins.items():
        have = found.get(canonicalize_name(name))
        if have is None:
            problems.append(f"  {name}: pinned =={want}, not installed")
        elif not version_matches(want, have):
            problems.append(f"  {name}: pinned =={want}, installed {have}")
    if problems:
        where = f"cell {cell}: " if cell else ""
        raise VersionMismatch(
            f"{where}the environment does not hold the pinned versions, so this cell would test the wrong ones:\n"
            + "\n".join(problems)
            + "\n(recreate the environment without -R/--no-install, or fix the pins in noxfile.py)"
        )


_PROBE = """
import importlib.metadata as m, json, sys
out = {}
for name in sys.argv[1:]:
    try:
        out[name] = m.version(name)
    except m.PackageNotFoundError:
        out[name] = None
print(json.dumps(out))
"""


def installed_versions(session: nox.Session, names) -> dict[str, str | None]:
    """Versions as the session's own interpreter sees them (importlib.metadata).

    Run directly, not through session.run, so the check happens with -R/--no-install
    and --install-only too."""
    python = Path(session.bin) / ("python.exe" if os.name == "nt" else "python")
    out = subprocess.run([str(python), "-c", _PROBE, *names], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- results ---------------------------------------------------------------------------

def read_records(report_dir: Path) -> list[dict]:
    path = report_dir / "results.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarize(records: list[dict]) -> tuple[Counter, list[dict]]:
    """Counts by status, and the checks that fail the gate (an acknowledged violation,
    written up in a declaration, does not: reports/results.py's gate_failing)."""
    counts = Counter(r.get("status") for r in records)
    failing = [r for r in records if r.get("status") in FAILING and not (
        r.get("status") == "violates" and r.get("acknowledged"))]
    return counts, failing


# -- sessions ----------------------------------------------------------------------------

@nox.session(python=PYTHON)
@nox.parametrize("cell", [c.name for c in CELLS], ids=[c.name for c in CELLS])
def cell(session: nox.Session, cell: str) -> None:
    """One cell of the matrix: install its pins, check them, run the suite (ci profile)."""
    spec = CELLS_BY_NAME[cell]
    pins = dict(spec.pins)
    if "torch" in pins:
        # the cell's torch on its own and first (from TORCH_INDEX_URL where set), so that
        # nothing installed later chooses its build
        index = os.environ.get(TORCH_INDEX_ENV)
        session.install(f"torch=={pins['torch']}", *(["--index-url", index] if index else []))
    session.install(*(f"{n}=={v}" for n, v in pins.items() if n != "torch"), *base_pins(SUITE_DISTRIBUTIONS))
    session.install("--no-deps", "-e", ".")  # the suite itself: embedding_conformance and its pytest plugin

    wanted = {**pins, **dict(p.split("==") for p in base_pins(SUITE_DISTRIBUTIONS))}
    try:
        check_installed(wanted, installed_versions(session, wanted), cell)
    except VersionMismatch as exc:
        session.error(str(exc))
    session.log("cell %s: installed versions are the pins: %s", cell,
                ", ".join(f"{n}=={v}" for n, v in pins.items()))

    if session.run("python", "-c", "", log=False) is None:
        return  # --install-only: session.run runs nothing, so keep the last results
    out = MATRIX_DIR / cell
    shutil.rmtree(out, ignore_errors=True)  # never merge a stale result from an earlier run
    out.mkdir(parents=True)
    args = ["python", "-m", "pytest", "suites", "--adapters", spec.adapters,
            "--hypothesis-profile", "ci", "--report-dir", str(out), *session.posargs]
    env = {"TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        session.run(*args, env=env)
        rc = 0
    except CommandFailed as exc:
        rc = exc.return_code
        if rc != 1:  # not "some checks failed": pytest could not do its job
            session.error(f"cell {cell}: pytest exited with status {rc}; see its output above")

    records = read_records(out)
    if not records:
        session.error(f"cell {cell}: pytest wrote no results to {out}/results.jsonl")
    counts, failing = summarize(records)
    session.log("cell %s: %s -> %s", cell, ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
                out / "index.html")
    if rc == 1:
        lines = [f"  {r['adapter']}  {r['clause']}  {r['status']}" for r in failing]
        message = (f"cell {cell}: {len(failing)} check(s) failed (results kept in {out}):\n" + "\n".join(lines)
                   if failing else f"cell {cell}: pytest reported failures (see its output above)")
        if os.environ.get(STRICT_ENV, "") not in ("", "0"):
            session.error(message)
        session.warn(message + f"\n(the session passes because {STRICT_ENV} is not set)")


@nox.session(python=PYTHON)
def merge(session: nox.Session) -> None:
    """Join the cells' results into reports/matrix-merged/index.html (DIRs as posargs, default reports/matrix/*)."""
    dirs = [Path(p) for p in session.posargs] or sorted(p for p in MATRIX_DIR.glob("*") if p.is_dir())
    ready = [d for d in dirs if (d / "results.jsonl").is_file() and (d / "run.json").is_file()]
    skipped = [d for d in dirs if d not in ready]
    if skipped:
        session.warn("no results in (left out of the merge): " + ", ".join(map(str, skipped)))
    if not ready:
        session.error(f"nothing to merge: no cell results under {MATRIX_DIR} (run a cell first)")
    session.install(*base_pins(REPORT_DISTRIBUTIONS))
    session.install("--no-deps", "-e", ".")
    session.run("python", "-m", "reports", "merge", *map(str, ready), "--out", str(MERGED_DIR))
    session.log("merged %d cell(s): %s", len(ready), MERGED_DIR / "index.html")


@nox.session(python=False)
def matrix_json(session: nox.Session) -> None:
    """Print the cell names as a JSON list on stdout (the GitHub Actions matrix)."""
    print(json.dumps([c.name for c in CELLS]))
