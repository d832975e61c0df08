"""The version matrix: noxfile.py's cells, its version check, and the GitHub workflow.

The cells are listed once (``noxfile.CELLS``); the workflow builds its matrix from
``nox -s matrix_json``, and these tests hold the two together. Nothing here installs
a framework or runs a cell.
"""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOXFILE = ROOT / "noxfile.py"
WORKFLOW = ROOT / ".github" / "workflows" / "conformance.yml"

if importlib.util.find_spec("nox") is None:
    pytest.skip("nox is not installed (pip install nox, as requirements.txt pins it)", allow_module_level=True)


def _load_noxfile():
    if "project_noxfile" in sys.modules:  # tests/test_declarations.py read it first
        return sys.modules["project_noxfile"]
    spec = importlib.util.spec_from_file_location("project_noxfile", NOXFILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


nf = _load_noxfile()


def _load_yaml(path: Path) -> dict:
    text = path.read_text()
    try:
        from ruamel.yaml import YAML  # comes with check-jsonschema; YAML 1.2, so `on` stays a string

        return YAML(typ="safe").load(text)
    except ImportError:
        pass
    try:
        import yaml
    except ImportError:
        pytest.skip("neither ruamel.yaml nor PyYAML is installed")
    data = yaml.safe_load(text)
    if True in data and "on" not in data:  # YAML 1.1 reads the key `on` as a boolean
        data["on"] = data.pop(True)
    return data


@pytest.fixture(scope="module")
def workflow() -> dict:
    return _load_yaml(WORKFLOW)


def _nox(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nox", "-f", str(NOXFILE), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


# -- the version check ---------------------------------------------------------------------

def test_exact_pins_pass():
    pins = {"tensorflow-cpu": "2.16.2", "keras": "3.0.5", "ml_dtypes": "0.3.2", "torch": "2.13.0"}
    installed = {"tensorflow-cpu": "2.16.2", "keras": "3.0.5", "ml-dtypes": "0.3.2", "torch": "2.13.0+cpu"}
    nf.check_installed(pins, installed, "some-cell")  # no exception: local labels (+cpu) and name spellings agree


def test_a_mismatching_pin_fails_loudly():
    pins = {"tensorflow-cpu": "2.16.2", "keras": "3.0.5", "numpy": "1.26.4"}
    installed = {"tensorflow-cpu": "2.16.2", "keras": "3.15.1", "numpy": "1.26.4"}
    with pytest.raises(nf.VersionMismatch) as info:
        nf.check_installed(pins, installed, "tf2.16-keras3.0")
    message = str(info.value)
    assert "tf2.16-keras3.0" in message
    assert "keras: pinned ==3.0.5, installed 3.15.1" in message
    assert "tensorflow-cpu" not in message and "numpy" not in message  # only what differs is named


def test_a_missing_pin_fails_and_every_problem_is_named():
    pins = {"jax": "0.4.38", "jaxlib": "0.4.38", "flax": "0.10.2"}
    installed = {"jax": "0.10.2", "jaxlib": None}
    with pytest.raises(nf.VersionMismatch) as info:
        nf.check_installed(pins, installed)
    message = str(info.value)
    assert "jax: pinned ==0.4.38, installed 0.10.2" in message
    assert "jaxlib: pinned ==0.4.38, not installed" in message
    assert "flax: pinned ==0.10.2, not installed" in message


@pytest.mark.parametrize("pin, installed", [
    ("2.16.2", "2.16.20"), ("2.16.2", "2.16.1"), ("2.13.0", "2.13.1+cpu"), ("2.13.0", "2.14.1"),
    ("3.0.5", "3.0.5rc1"), ("3.0.5", "not-a-version"),
])
def test_near_misses_are_mismatches(pin, installed):
    assert not nf.version_matches(pin, installed)
    with pytest.raises(nf.VersionMismatch):
        nf.check_installed({"x": pin}, {"x": installed})


def test_the_probe_reads_a_real_environment():
    """The session's probe (run by the cell's own interpreter) against this interpreter."""
    import importlib.metadata

    names = ["pytest", "surely-not-an-installed-distribution"]
    out = subprocess.run([sys.executable, "-c", nf._PROBE, *names], capture_output=True, text=True, check=True)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found == {"pytest": importlib.metadata.version("pytest"), "surely-not-an-installed-distribution": None}
    nf.check_installed({"pytest": found["pytest"]}, found)
    with pytest.raises(nf.VersionMismatch, match="pytest: pinned ==0.0.1, installed"):
        nf.check_installed({"pytest": "0.0.1"}, found)


# -- the cells ---------------------------------------------------------------------------------

def test_cells_are_named_once_and_coherently():
    names = [c.name for c in nf.CELLS]
    assert len(names) == len(set(names))
    # a name is <dist><version> tokens; each must be the prefix of that distribution's pin
    token_dist = {"tf": "tensorflow-cpu", "keras": "keras", "jax": "jax", "flax": "flax", "torch": "torch",
                  "ort": "onnxruntime", "onnx": "onnx"}
    for cell in nf.CELLS:
        assert re.fullmatch(r"[a-z]+[0-9][0-9.]*(-[a-z]+[0-9][0-9.]*)*", cell.name), cell.name
        for token in cell.name.split("-"):
            dist, version = re.fullmatch(r"([a-z]+)([0-9.]+)", token).groups()
            pinned = cell.pins[token_dist[dist]]
            assert pinned == version or pinned.startswith(version + "."), (cell.name, dist, pinned)


def test_every_cell_pins_exact_versions_and_numpy():
    from packaging.version import Version

    for cell in nf.CELLS:
        assert {"numpy", "ml_dtypes"} <= set(cell.pins), cell.name
        for dist, version in cell.pins.items():
            assert str(Version(version)) == version, (cell.name, dist, version)
        if "tensorflow-cpu" in cell.pins:  # tf-keras X pulls tensorflow X: both pinned, same release
            tf = cell.pins["tensorflow-cpu"]
            assert cell.pins["tensorflow"] == tf
            if "tf-keras" in cell.pins:  # (the ONNX cells need TensorFlow for tf2onnx, not tf-keras)
                assert Version(cell.pins["tf-keras"]).release[:2] == Version(tf).release[:2]
                assert Version(cell.pins["keras"]).major == 3


def test_the_matrix_covers_what_the_issue_asks():
    from packaging.version import Version

    def versions(dist):
        return {Version(c.pins[dist]) for c in nf.CELLS if dist in c.pins}

    tf = versions("tensorflow-cpu")
    assert len(tf) >= 3 and min(tf) < Version("2.17") and max(tf) >= Version("2.21")
    keras = versions("keras")
    assert min(keras) < Version("3.1") and max(keras) == Version(nf.requirement_pins()["keras"])
    assert versions("tf-keras")
    assert len(versions("jax")) >= 2
    # torch across releases: the default environment's and at least three others
    torch = versions("torch")
    assert Version(nf.TORCH) in torch and len(torch) >= 4
    # the deployment runtimes: a cell at the default environment's onnxruntime/onnx pair, and an older one
    assert max(versions("onnxruntime")) == Version(nf.requirement_pins()["onnxruntime"])
    assert max(versions("onnx")) == Version(nf.requirement_pins()["onnx"])
    assert len(versions("onnxruntime")) >= 2 and len(versions("onnx")) >= 2


def test_matrix_json_lists_torch_and_onnxruntime_releases():
    """The cells hosted CI runs (nox -s matrix_json) span torch and onnxruntime releases."""
    from packaging.version import Version

    out = _nox("-s", "matrix_json")
    assert out.returncode == 0, out.stderr
    cells = [nf.CELLS_BY_NAME[name] for name in json.loads(out.stdout)]
    torch = {Version(c.pins["torch"]) for c in cells if "torch" in c.pins}
    onnxruntime = {Version(c.pins["onnxruntime"]) for c in cells if "onnxruntime" in c.pins}
    assert len(torch) >= 3, sorted(map(str, torch))
    assert len(onnxruntime) >= 2, sorted(map(str, onnxruntime))


def test_torch_is_never_asked_for_past_the_cap():
    """Past TORCH_MAX a torch requirement pulls a multi-GB build no developer's machine holds."""
    from packaging.version import Version

    assert nf.TORCH == "2.13.0"  # the default environment's (scripts/setup.sh)
    assert Version(nf.TORCH) <= Version(nf.TORCH_MAX)
    for cell in nf.CELLS:
        if "torch" in cell.pins:
            assert Version(cell.pins["torch"]) <= Version(nf.TORCH_MAX), cell.name
    assert "download.pytorch.org" not in NOXFILE.read_text()  # the CPU index is the workflow's business


def test_torch_cells_run_the_torch_onnx_columns():
    """A torch cell varies torch alone: its eager, compiled, distributed and Keras columns and
    the torch.onnx exports, with the exporter and runtimes at the default environment's releases."""
    from packaging.utils import canonicalize_name

    from embedding_conformance.adapters import registry

    base = nf.requirement_pins()  # by canonical name
    torch_cells = [c for c in nf.CELLS if c.name.startswith("torch")]
    assert len(torch_cells) >= 4
    for cell in torch_cells:
        chosen = {b.name for b in registry.select(cell.adapters)}
        assert {"onnxruntime[torch.onnx]", "onnx.reference[torch.onnx]", "openvino[torch.onnx]",
                "openvino[torch.onnx][f32]", "keras.layers.Embedding[torch]",
                "torch.distributed.tensor.parallel.RowwiseParallel[2-rank]",
                "torch.nn.EmbeddingBag", "torch.nn.functional.embedding[compile]"} <= chosen, cell.name
        assert not any(n.startswith(("tf", "jax", "flax", "torchrec")) or "[tensorflow]" in n or "[jax]" in n
                       for n in chosen), cell.name
        for dist in ("keras", "onnx", "onnxscript", "onnx-ir", "onnxruntime", "openvino", "numpy", "ml_dtypes"):
            assert cell.pins[dist] == base[canonicalize_name(dist)], (cell.name, dist)


class _Session:
    """What the cell session calls on nox's session, recorded; session.run answers None,
    as it does with --install-only."""

    def __init__(self):
        self.installs: list[tuple[str, ...]] = []
        self.posargs: list[str] = []
        self.bin = sys.prefix

    def install(self, *args):
        self.installs.append(args)

    def error(self, message):
        raise AssertionError(message)

    def run(self, *args, **kwargs):
        return None

    def log(self, *args):
        pass

    warn = log


@pytest.mark.parametrize("index", [None, "https://example.invalid/whl/cpu"])
def test_a_torch_cell_installs_its_torch_first_on_its_own(monkeypatch, index):
    if index:
        monkeypatch.setenv(nf.TORCH_INDEX_ENV, index)
    else:
        monkeypatch.delenv(nf.TORCH_INDEX_ENV, raising=False)
    for cell in nf.CELLS:
        pins = dict(cell.pins)
        suite = dict(p.split("==") for p in nf.base_pins(nf.SUITE_DISTRIBUTIONS))
        monkeypatch.setattr(nf, "installed_versions", lambda session, names: {**pins, **suite})
        session = _Session()
        nf.cell.func(session, cell=cell.name)
        first, *rest = session.installs
        if "torch" in pins:
            # the cell's own torch, alone, from TORCH_INDEX_URL where set; nothing after names torch
            assert first == (f"torch=={pins['torch']}", *(("--index-url", index) if index else ())), cell.name
            assert not any(a.startswith("torch") or a == "--index-url" for args in rest for a in args), cell.name
        else:
            assert not any(a.startswith("torch") or a == "--index-url" for args in session.installs for a in args)
        pinned = {a for args in session.installs for a in args}
        assert {f"{n}=={v}" for n, v in pins.items()} <= pinned, cell.name


def test_a_cell_whose_environment_differs_from_its_pins_stops(monkeypatch):
    cell = nf.CELLS_BY_NAME["torch2.13-keras3.15"]
    monkeypatch.setattr(nf, "installed_versions", lambda session, names: {**cell.pins, "torch": "2.14.1"})
    with pytest.raises(AssertionError, match="torch: pinned ==2.13.0, installed 2.14.1"):
        nf.cell.func(_Session(), cell=cell.name)


def test_cell_adapter_selections_are_valid():
    from embedding_conformance.adapters import registry

    for cell in nf.CELLS:
        chosen = [b.name for b in registry.select(cell.adapters)]
        assert "numpy" in chosen, cell.name  # the oracle runs in every cell
        assert len(chosen) > 1, cell.name


def test_suite_pins_come_from_requirements():
    pins = nf.requirement_pins()
    assert nf.base_pins(nf.SUITE_DISTRIBUTIONS) == [f"{d}=={pins[d]}" for d in nf.SUITE_DISTRIBUTIONS]


# -- nox and the workflow: one source of truth ---------------------------------------------------

def test_nox_sessions_are_the_cells():
    listed = _nox("--list", "--json")
    assert listed.returncode == 0, listed.stderr
    sessions = {s["session"] for s in json.loads(listed.stdout)}
    assert {f"cell({c.name})" for c in nf.CELLS} == {s for s in sessions if s.startswith("cell(")}
    assert "merge" in sessions  # nox --list --json lists the default sessions: the cells and the merge


def test_matrix_json_prints_the_cells():
    out = _nox("-s", "matrix_json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [c.name for c in nf.CELLS]


def test_workflow_matrix_is_the_nox_cells(workflow):
    jobs = workflow["jobs"]
    plan, cell, merge = jobs["plan"], jobs["cell"], jobs["merge"]
    # the plan job prints the cells with nox and hands them on as its output ...
    plan_runs = "\n".join(step.get("run", "") for step in plan["steps"])
    assert "nox -s matrix_json" in plan_runs and '"cells=' in plan_runs
    step_id = next(s["id"] for s in plan["steps"] if "matrix_json" in s.get("run", ""))
    assert plan["outputs"]["cells"] == f"${{{{ steps.{step_id}.outputs.cells }}}}"
    # ... which is the cell job's matrix, one nox session per cell
    assert cell["needs"] == "plan"
    strategy = cell["strategy"]
    assert strategy["fail-fast"] is False
    assert strategy["matrix"] == {"cell": "${{ fromJSON(needs.plan.outputs.cells) }}"}
    runs = [line.strip() for s in cell["steps"] for line in s.get("run", "").splitlines()]
    assert 'nox -s "cell(${{ matrix.cell }})"' in runs
    # every cell uploads its results, even when it failed; the merge runs whatever happened
    uploads = [s for s in cell["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert uploads and uploads[0]["if"] == "always()" and uploads[0]["with"]["path"].startswith("reports/matrix")
    assert merge["if"] == "always()" and "cell" in merge["needs"]
    merge_runs = [s.get("run", "") for s in merge["steps"]]
    assert "nox -s merge" in merge_runs
    final = [s for s in merge["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert final and final[-1]["with"]["path"].startswith(str(nf.MERGED_DIR))


def test_workflow_caches_pip_and_pins_actions(workflow):
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    for step in steps:
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+\.\d+\.\d+", step["uses"]), step["uses"]
    caches = [s for s in workflow["jobs"]["cell"]["steps"] if s.get("uses", "").startswith("actions/cache@")]
    assert caches and caches[0]["with"]["path"] == "~/.cache/pip"
    assert "matrix.cell" in caches[0]["with"]["key"]
    assert workflow["env"][nf.TORCH_INDEX_ENV] == "https://download.pytorch.org/whl/cpu"
    assert workflow["env"][nf.STRICT_ENV] == "1"


def _check_jsonschema() -> list[str]:
    exe = Path(sys.executable).with_name("check-jsonschema")
    if exe.exists():
        return [str(exe)]
    if shutil.which("check-jsonschema"):
        return [shutil.which("check-jsonschema")]
    if importlib.util.find_spec("check_jsonschema") is not None:
        return [sys.executable, "-m", "check_jsonschema"]
    pytest.skip("check-jsonschema is not installed (pip install check-jsonschema, as requirements.txt pins it)")


def test_workflow_is_valid_against_the_github_workflow_schema():
    cmd = _check_jsonschema() + ["--builtin-schema", "vendor.github-workflows", str(WORKFLOW)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_schema_check_rejects_a_broken_workflow(tmp_path):
    """The same check fails a workflow with a job that has no runs-on: it does check."""
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on: ubuntu-latest", "runs_on: ubuntu-latest"))
    cmd = _check_jsonschema() + ["--builtin-schema", "vendor.github-workflows", str(broken)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0, out.stdout + out.stderr


def test_workflow_passes_actionlint_where_installed():
    exe = shutil.which("actionlint")
    if exe is None:
        pytest.skip("actionlint is not installed (the schema check above still ran)")
    out = subprocess.run([exe, str(WORKFLOW)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


# -- results handling --------------------------------------------------------------------------

def test_summarize_names_the_failing_checks(tmp_path):
    records = [
        {"adapter": "numpy", "clause": "rows.exact", "status": "conforms"},
        {"adapter": "tf.nn.embedding_lookup", "clause": "ids.negative", "status": "violates"},
        {"adapter": "tf_keras.layers.Embedding", "clause": "ids.float", "status": "stale"},
        {"adapter": "keras.layers.Embedding[tensorflow]", "clause": "shape.output", "status": "diverges"},
        {"adapter": "torch.nn.Embedding", "clause": "ids.negative", "status": "violates",
         "acknowledged": {"reference": "https://example.org/issue/1", "source": "torch/declarations.toml#violation1"}},
    ]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    counts, failing = nf.summarize(nf.read_records(tmp_path))
    assert counts == {"conforms": 1, "violates": 2, "stale": 1, "diverges": 1}
    assert [(r["adapter"], r["status"]) for r in failing] == [("tf.nn.embedding_lookup", "violates"),
                                                              ("tf_keras.layers.Embedding", "stale")]
    assert nf.read_records(tmp_path / "missing") == []


def test_each_cell_keeps_its_compile_caches_between_runs(workflow):
    steps = workflow["jobs"]["cell"]["steps"]
    cache = next(s for s in steps if s.get("name") == "Cache compiled functions")
    assert "matrix.cell" in cache["with"]["key"] and "noxfile.py" in cache["with"]["key"]
    run = next(s for s in steps if s.get("name") == "Run the cell")
    for var in ("TORCHINDUCTOR_CACHE_DIR", "JAX_COMPILATION_CACHE_DIR", "TF_XLA_FLAGS", "TMPDIR"):
        assert "compile-cache" in run["env"][var], var
    assert steps.index(cache) < steps.index(run)


def test_workflow_runs_the_projects_tests_and_a_sweep(workflow):
    jobs = workflow["jobs"]
    runs = lambda job: "\n".join(s.get("run", "") for s in job["steps"])  # noqa: E731
    assert "bash scripts/run-tests.sh" in runs(jobs["tests"])  # the README's test command, as .ci/run runs it
    sweep = jobs["sweep"]
    assert "schedule" in workflow["on"] and "schedule" in sweep["if"]
    assert "-m suites.sweep --seeds" in runs(sweep) and '--summary "$GITHUB_STEP_SUMMARY"' in runs(sweep)


def test_workflow_publishes_the_merged_page_with_its_badges(workflow):
    publish = workflow["jobs"]["publish"]
    assert publish["needs"] == "merge" and "refs/heads/main" in publish["if"]
    uses = [s.get("uses", "") for s in publish["steps"]]
    assert any(u.startswith("actions/deploy-pages@") for u in uses)
    assert any(u.startswith("actions/upload-pages-artifact@") for u in uses)
    merged = next(s for s in workflow["jobs"]["merge"]["steps"] if s.get("name") == "Upload the merged report")
    download = next(s for s in publish["steps"] if s.get("uses", "").startswith("actions/download-artifact@"))
    assert download["with"]["name"] == merged["with"]["name"]  # the page and its badges/ directory


def test_the_readme_tables_every_cell_once_with_its_selection():
    # the README's table of cells is for users: each cell of CELLS appears once, with the
    # --adapters selection it runs (or "the same" as the row above), and nothing else is listed
    text = (ROOT / "README.md").read_text()
    rows = [ln for ln in text.splitlines() if re.match(r"^\| `[^`]+` \|", ln)]
    named = [re.match(r"^\| `([^`]+)`", ln).group(1) for ln in rows]
    cells = [c.name for c in nf.CELLS]
    assert sorted(n for n in named if n in nf.CELLS_BY_NAME) == sorted(cells), named
    previous = None
    for ln in rows:
        parts = [p.strip() for p in ln.strip("|").split("|")]
        name = parts[0].strip("`")
        if name not in nf.CELLS_BY_NAME:
            continue
        selection = parts[2]
        selection = previous if selection == "the same" else selection.strip("`")
        assert selection == nf.CELLS_BY_NAME[name].adapters, (name, selection)
        previous = selection
