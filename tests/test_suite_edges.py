"""The suite's own edges: bad input gets a one-line error naming the valid
choices; a broken adapter costs only its own checks."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from embedding_conformance.adapters import registry
from embedding_conformance.suites.hosts import Job, WorkerHost
from tests.runner import ROOT, by_check, run_suite

FAST = ["--adapters=numpy", "-k", "ids.negative or shape.output"]


def _errors(proc) -> list[str]:
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("ERROR")]


def test_unknown_adapter_is_a_one_line_error_naming_the_valid_ones(tmp_path):
    proc, records = run_suite("--adapters=nosuch", report_dir=tmp_path)
    assert proc.returncode != 0
    lines = _errors(proc)
    assert len(lines) == 1, proc.stdout + proc.stderr
    assert "unknown adapter 'nosuch'" in lines[0] and "torch.nn.Embedding" in lines[0] and "numpy" in lines[0]
    assert not records


def test_a_bad_run_keeps_the_last_report(tmp_path):
    run_suite(*FAST, report_dir=tmp_path)
    before = (tmp_path / "results.jsonl").read_text()
    run_suite("--adapters=nosuch", report_dir=tmp_path)
    assert (tmp_path / "results.jsonl").read_text() == before


def test_adapter_spec_without_module_is_a_usage_error(tmp_path):
    proc, _ = run_suite("--adapter=no_such_module_abc:Thing", report_dir=tmp_path)
    assert proc.returncode != 0 and len(_errors(proc)) == 1
    assert "no module named 'no_such_module_abc'" in _errors(proc)[0]


def test_factory_that_raises_is_an_error_and_the_run_goes_on(tmp_path):
    proc, records = run_suite(*FAST, "--adapter=tests.planted.edges:factory_that_raises", report_dir=tmp_path)
    checks = by_check(records)
    broken = [r for (a, _), r in checks.items() if a.endswith("factory_that_raises")]
    assert broken and all(r["status"] == "error" and "cannot open the device" in r["reason"] for r in broken)
    assert checks[("numpy", "ids.negative")]["status"] == "conforms"
    assert proc.returncode == 1


def test_unclassified_exception_counts_against_the_adapter(tmp_path):
    _, records = run_suite("-k", "ids.negative", "--adapter=tests.planted.edges:RaisesUnclassified",
                           report_dir=tmp_path)
    rec = by_check(records)[("edge.unclassified", "ids.negative")]
    assert rec["status"] == "violates" and "RuntimeError: kernel failed" in rec["actual"]


@pytest.mark.parametrize("content, problem", [
    ("[[divergence]]\nadapter = 'numpy'\n", "missing model, versions, reference, note"),
    ("[[divergence]\n", "not valid TOML"),
    ("[[divergence]]\nadapter='numpy'\nclause='ids.negativ'\nmodel=['wrap_negative']\nversions={numpy='>=1'}\nreference='x'\nnote='n'\n",
     "unknown clause 'ids.negativ'; valid clauses:"),
    ("[[divergence]]\nadapter='numpy'\nclause='ids.negative'\nmodel=['wrap']\nversions={numpy='>=1'}\nreference='x'\nnote='n'\n",
     "unknown behaviour model step 'wrap'; known steps:"),
    ("[[divergence]]\nadapter='numpy'\nclause='ids.negative'\nmodel=['wrap_negative']\nversions={numpy='two'}\nreference='x'\nnote='n'\n",
     "is not a version specifier"),
    ("[[divergence]]\nadapter='numpy'\nclause='ids.negative'\nmodel=['wrap_negative']\nversions={numpy='>=1'}\nreference='x'\nnote='n'\n"
     "witness={ids={values=[-1]}}\n", "witness argument 'ids' must hold dtype and one of values, bits"),
    ("[[divergence]]\nadapter='numpy'\nclause='ids.negative'\nmodel=['wrap_negative']\nversions={numpy='>=1'}\nreference='x'\nnote='n'\n"
     "witness={ids={dtype='int8',values=[300]}}\n", "witness does not build arrays"),
    ("[[divergence]]\nadapter='numpy'\nclause='ids.negative'\nmodel=['wrap_negative']\nversions={numpy='>=1'}\nreference='x'\nnote='n'\n"
     "when={threads='many'}\n", "when threads = 'many' is not a specifier"),
    ("[[divergence]]\nadapter='numpy'\nclause='ids.negative'\nmodel=['wrap_negative']\nversions={numpy='>=1'}\nreference='x'\nnote='n'\n"
     "when='threaded'\n", "when must map facts of the adapter's environment() to specifiers"),
])
def test_malformed_expectations_file_is_a_one_line_error(tmp_path, content, problem):
    bad = tmp_path / "mine.toml"
    bad.write_text(content)
    proc, records = run_suite(*FAST, f"--expectations={bad}", report_dir=tmp_path / "out")
    lines = _errors(proc)
    assert proc.returncode != 0 and len(lines) == 1, proc.stdout + proc.stderr
    assert str(bad) in lines[0] and problem in lines[0]
    assert not records


def _declare(tmp_path, adapter: str, versions: str, extra: str = ""):
    """A user's declarations file declaring that ``adapter`` wraps negative ids
    (``extra``: more keys of the declaration, a witness or a when; the default witness is
    ids [-1] of a two-row table)."""
    mine = tmp_path / "mine.toml"
    witness = "" if "witness" in extra else \
        'witness = { table = { dtype = "float32", values = [[1.0], [2.0]] }, ids = { dtype = "int64", values = [-1] } }\n'
    mine.write_text(textwrap.dedent(f"""
        [[divergence]]
        adapter = "{adapter}"
        clause = "ids.negative"
        model = ["wrap_negative"]
        versions = {{ numpy = "{versions}" }}
        reference = "https://example.org/wraps"
        note = "ids in [-V, -1] wrap"
    """) + witness + extra)
    return f"--expectations={mine}"


WITNESS = ('witness = { table = { dtype = "float32", bits = [[0x7fc00001], [0x00000001]] }, '
           'ids = { dtype = "int64", values = [-1, 0, -2] } }\n')


def test_a_witness_is_tried_first_and_must_follow_the_model(tmp_path):
    _, records = run_suite("-k", "ids.negative", "--adapter=tests.planted.faults:WrapsNegativeIds",
                           _declare(tmp_path, "planted.WrapsNegativeIds", ">=1.0", WITNESS), report_dir=tmp_path / "out")
    rec = by_check(records)[("planted.WrapsNegativeIds", "ids.negative")]
    assert rec["status"] == "diverges" and rec["found_by"] == "witness"
    assert "-2" in rec["example"] and rec["divergence"]["behaviours"][0]["witness"][0]["ids"]["values"] == [-1, 0, -2]


def test_a_witness_that_no_longer_departs_is_stale(tmp_path):
    _, records = run_suite(*FAST, _declare(tmp_path, "numpy", ">=1.0", WITNESS), report_dir=tmp_path / "out")
    assert by_check(records)[("numpy", "ids.negative")]["status"] == "stale"


def _wrapping_fault_status(tmp_path, versions: str) -> str:
    _, records = run_suite("-k", "ids.negative", "--adapter=tests.planted.faults:WrapsNegativeIds",
                           _declare(tmp_path, "planted.WrapsNegativeIds", versions), report_dir=tmp_path / "out")
    return by_check(records)[("planted.WrapsNegativeIds", "ids.negative")]["status"]


def test_declared_divergence_that_no_longer_holds_is_stale(tmp_path):
    proc, records = run_suite(*FAST, _declare(tmp_path, "numpy", ">=1.0"), report_dir=tmp_path / "out")
    rec = by_check(records)[("numpy", "ids.negative")]
    assert rec["status"] == "stale" and "no longer holds" in rec["detail"]
    assert rec["divergence"]["model"] == ["wrap_negative"]
    assert proc.returncode == 1


def test_declared_divergence_outside_its_versions_does_not_apply(tmp_path):
    assert _wrapping_fault_status(tmp_path, "<1.0") == "violates"


def test_declared_divergence_that_holds_diverges(tmp_path):
    assert _wrapping_fault_status(tmp_path, ">=1.0") == "diverges"


def _threaded_status(tmp_path, threads: str, when: str = '">=2"') -> dict:
    """The ids.negative check of an adapter that wraps negative ids only with two or
    more threads, declared to wrap them ``when`` its thread count allows."""
    declared = _declare(tmp_path, "edge.wraps_when_threaded", ">=1.0", f'when = {{ "edge.threads" = {when} }}\n')
    _, records = run_suite("-k", "ids.negative", "--adapter=tests.planted.edges:WrapsNegativeWhenThreaded",
                           declared, report_dir=tmp_path / "out", env={"EDGE_THREADS": threads})
    return by_check(records)[("edge.wraps_when_threaded", "ids.negative")]


def test_a_divergence_whose_when_holds_diverges(tmp_path):
    rec = _threaded_status(tmp_path, "2")
    assert rec["status"] == "diverges" and rec["environment"] == {"edge.threads": 2}
    assert rec["divergence"]["when"] == {"edge.threads": ">=2"} and "divergence_set_aside" not in rec


def test_a_divergence_whose_when_fails_is_set_aside_not_stale(tmp_path):
    # one thread: the adapter conforms, and the declaration says so instead of going stale
    rec = _threaded_status(tmp_path, "1")
    assert rec["status"] == "conforms" and rec["divergence"] is None
    assert "edge.threads >=2" in rec["divergence_set_aside"] and "edge.threads = 1" in rec["divergence_set_aside"]


def test_a_set_aside_divergence_still_catches_a_departure(tmp_path):
    # the condition is wrong (the adapter wraps at two threads): held to the contract, it violates
    assert _threaded_status(tmp_path, "2", '">=3"')["status"] == "violates"


def test_a_framework_that_is_not_installed_is_unavailable(tmp_path):
    proc, records = run_suite(*FAST, "--adapter=tests.planted.needs_missing_framework:Adapter", report_dir=tmp_path)
    missing = [r for r in records if r["adapter"].startswith("tests.planted.needs_missing_framework")]
    assert missing and all(r["status"] == "unavailable" and "not_an_installed_framework_xyz" in r["reason"]
                           for r in missing)
    assert proc.returncode == 0


def test_builtin_with_missing_framework_names_what_to_install():
    b = registry.Builtin("x.y", "embedding_conformance.adapters.numpy.oracle_column:NumpyAdapter", ("not_an_installed_framework_xyz",),
                         ("not-an-installed-framework-xyz",), "x")
    assert "pip install not-an-installed-framework-xyz" in b.missing()


def test_numpy_only_run_imports_no_framework(tmp_path):
    code = textwrap.dedent(f"""
        import sys, pytest
        code = pytest.main(["suites", "-q", "-p", "no:cacheprovider", "--adapters=numpy", "-k", "shape",
                            "--report-dir={tmp_path}"])
        loaded = [m for m in ("torch", "tensorflow", "keras", "jax", "flax", "tf_keras") if m in sys.modules]
        print("LOADED", loaded)
        sys.exit(code)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "LOADED []" in proc.stdout


# --- a framework that crashes or hangs costs only its own checks ------------------------------

def _job():
    return Job("shape.output", "ci", None, None)


def test_a_crashing_worker_is_a_violation_with_its_input_and_the_next_check_runs():
    host = WorkerHost("edge", {}, timeout=120)
    try:
        rec = host.run_spec("tests.planted.edges:Crashes", _job())
        assert rec["status"] == "violates" and "died (exit code 3)" in rec["actual"], rec
        assert rec["example"].startswith("table = ") and "ids = " in rec["example"]
        rec = host.run_spec("tests.planted.edges:Correct", _job())
        assert rec["status"] == "conforms"
    finally:
        host.close()


def test_a_crash_on_one_input_is_reported_with_that_input():
    # the worker dies on negative ids only: the replay's journal holds the one that did it
    host = WorkerHost("edge", {}, timeout=120)
    try:
        rec = host.run_spec("tests.planted.edges:CrashesOnNegativeIds", Job("ids.negative", "ci", None, None))
        assert rec["status"] == "violates" and "SIGABRT" in rec["actual"], rec
        ns = {"np": np}
        exec(rec["example"], ns)
        assert (ns["ids"] < 0).any() and "expected out_of_range" in rec["detail"]
        assert "SIGABRT" in rec["observed"]["died"] and "crash" not in rec["observed"]  # a death, not a raise
    finally:
        host.close()


def test_a_replay_tells_a_death_from_an_exception_no_failure_names():
    from embedding_conformance.reports.replay import judge

    died = {"adapter": "a", "clause": "c", "observed": {"died": "the worker died (SIGABRT)"}}
    raised = {"adapter": "a", "clause": "c", "observed": {"crash": "the adapter raised ValueError: x"}}
    unclassified = {"parts": [{"unclassified": "ValueError: x"}]}
    assert judge(died, {"died": "SIGABRT"}) is None and "did not" in judge(died, unclassified)
    assert judge(raised, unclassified) is None and "process died" in judge(raised, {"died": "SIGABRT"})
    assert "the snippet gave" in judge(raised, {"parts": [{"failure": "out_of_range"}]})
    # an adapter's isolated child killed (OpenVINO, MLX): the snippet, one process, dies instead
    killed = {"adapter": "a", "clause": "c", "observed": {
        "crash": "the adapter raised embedding_conformance.adapters.toolkit.isolation.ProcessKilled: x killed its process"}}
    assert judge(killed, {"died": "SIGFPE"}) is None and "process died" in judge(raised, {"died": "SIGFPE"})


def test_a_hanging_worker_is_stopped_and_the_next_check_runs():
    host = WorkerHost("edge", {}, timeout=5)
    try:
        rec = host.run_spec("tests.planted.edges:Hangs", _job())
        assert rec["status"] == "error" and "did not answer within 5 s" in rec["reason"]
        rec = host.run_spec("tests.planted.edges:Correct", _job())
        assert rec["status"] == "conforms"
    finally:
        host.close()


def test_concurrent_workers_record_what_one_at_a_time_records(tmp_path):
    # two framework groups computing at once must not change a record, nor the order of records
    selection = ("--adapters=torch.nn.functional.embedding,-[compile],tf.compat.v1.nn.embedding_lookup",
                 "-k", "ids.negative or shape.output")
    runs = {}
    for n in (1, 2):
        proc, records = run_suite(*selection, f"--workers={n}", report_dir=tmp_path / str(n))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        runs[n] = [{k: v for k, v in r.items() if k not in ("seconds", "timing")} for r in records]
    assert len(runs[1]) == 4 and runs[2] == runs[1]


# --- pytest-xdist: one framework group per xdist worker ------------------------------------

def test_xdist_scopes_are_framework_groups():
    from embedding_conformance.suites.distribution import FrameworkScheduling, group_of

    def nid(clause, adapter):
        return f"suites/test_x.py::test_clause[{clause}|{adapter}]"

    assert group_of(nid("ids.negative", "keras.layers.Embedding[torch][jit]")) == "keras-torch"
    assert group_of(nid("rows.exact", "tf_keras.layers.Embedding[one_hot]")) == "tensorflow"
    assert group_of(nid("rows.exact", "numpy")) == group_of(nid("rows.exact", "my.adapter")) == "local"
    assert group_of("tests/test_suite_edges.py::test_something") is None
    split = FrameworkScheduling._split_scope
    scopes = {split(None, nid(c, a)) for c in ("shape.output", "grad.scatter_add")
              for a in ("tf.nn.embedding_lookup", "tf.nn.embedding_lookup[xla]", "tf.distribute.ShardedVariable")}
    assert scopes == {"group:tensorflow"}


def test_the_thorough_profile_runs_a_thousand_examples(tmp_path):
    # hypothesis's own --hypothesis-profile refuses a profile it was not told of
    proc, records = run_suite("--adapters=numpy", "-k", "rows.exact", report_dir=tmp_path, profile="thorough")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert [r["examples"] for r in records] == [1000]


# --- declarations: checked against what the adapters offer; acknowledged violations ---------------

@pytest.mark.parametrize("content, problem", [
    ("[[divergence]]\nadapter='nmupy'\nclause='ids.negative'\nmodel=['wrap_negative']\nversions={numpy='>=1'}\nreference='x'\n"
     "note='n'\nwitness={clause='ids.negative', table={dtype='float32',values=[[1.0]]}, ids={dtype='int64',values=[-1]}}\n", "adapter 'nmupy' matches no known adapter"),
    ("[[divergence]]\nadapter='torch.nn.functional.embedding'\nclause='partition.mod'\nmodel=['route_by_total']\n"
     "versions={torch='>=2'}\nreference='x'\nnote='n'\nwitness={shards=[{dtype='float32',values=[1.0]}], "
     "ids={dtype='int64',values=[0]}, strategy='mod'}\n", "could only attach to not_applicable checks"),
    ("[[violation]]\nadapter='numpy'\nclause='ids.negative'\nmodel=['wrap_negative']\nversions={numpy='>=1'}\n"
     "reference='x'\nnote='n'\n", "a [[violation]] has no model"),
    ("[[violation]]\nadapter='numpy'\nclause='ids.negative'\nversions={numpy='>=1'}\nreference='x'\n",
     "missing note, failure"),
    ("[[divergences]]\nadapter='numpy'\n", "unknown table 'divergences'"),
])
def test_a_declaration_that_can_never_be_held_is_a_one_line_error(tmp_path, content, problem):
    bad = tmp_path / "mine.toml"
    bad.write_text(content)
    proc, records = run_suite(*FAST, f"--expectations={bad}", report_dir=tmp_path / "out")
    lines = _errors(proc)
    assert proc.returncode != 0 and len(lines) == 1, proc.stdout + proc.stderr
    assert str(bad) in lines[0] and problem in lines[0], lines[0]
    assert not records


def _acknowledge(tmp_path, adapter: str) -> str:
    mine = tmp_path / "ack.toml"
    mine.write_text(textwrap.dedent(f"""
        [[violation]]
        adapter = "{adapter}"
        clause = ["ids.negative", "shape.output"]
        failure = {{ output = "any" }}
        inputs = {{ ids = "negative" }}
        versions = {{ numpy = ">=1.26" }}
        reference = "https://example.org/issue/1"
        witness = {{ clause = "ids.negative", table = {{ dtype = "float32", values = [[1.0], [2.0]] }}, ids = {{ dtype = "int64", values = [-1] }} }}
        note = "wraps negative ids Python-style: ids [-1] of a 2-row table give row 1"
    """))
    return f"--expectations={mine}"


def test_an_acknowledged_violation_stays_red_and_is_an_expected_failure(tmp_path):
    proc, records = run_suite("-k", "ids.negative", "--adapter=tests.planted.faults:WrapsNegativeIds",
                              _acknowledge(tmp_path, "planted.WrapsNegativeIds"), report_dir=tmp_path / "out")
    rec = by_check(records)[("planted.WrapsNegativeIds", "ids.negative")]
    assert rec["status"] == "violates" and rec["example"] and rec["divergence"] is None
    assert rec["acknowledged"]["reference"] == "https://example.org/issue/1" and "Python-style" in rec["acknowledged"]["note"]
    # pytest: an expected failure (its progress mark is "x"), and the run passes
    assert proc.returncode == 0 and proc.stdout.lstrip().startswith("x"), proc.stdout[:300]
    page = (tmp_path / "out" / "index.html").read_text()
    assert "s-violates ack" in page and "acknowledged" in page


def test_an_acknowledged_violation_that_no_longer_reproduces_is_stale(tmp_path):
    proc, records = run_suite(*FAST, _acknowledge(tmp_path, "numpy"), report_dir=tmp_path / "out")
    rec = by_check(records)[("numpy", "ids.negative")]
    assert rec["status"] == "stale" and "no longer departs" in rec["detail"] and rec["divergence"]["source"]
    assert proc.returncode == 1


def _intermittent(tmp_path, adapter: str) -> str:
    mine = tmp_path / f"{adapter}.toml"
    mine.write_text(textwrap.dedent(f"""
        [[violation]]
        adapter = "{adapter}"
        clause = "ids.negative"
        versions = {{ numpy = ">=1.26" }}
        reference = "https://example.org/issue/2"
        failure = {{ output = "any" }}
        note = "departs only after some earlier calls; no witness forces it"
        intermittent = true
    """))
    return f"--expectations={mine}"


def test_an_intermittent_violation_not_met_is_reported_as_found_not_stale(tmp_path):
    proc, records = run_suite(*FAST, _intermittent(tmp_path, "numpy"), report_dir=tmp_path / "out")
    rec = by_check(records)[("numpy", "ids.negative")]
    assert rec["status"] == "conforms" and "intermittent" in rec["acknowledged_not_met"]
    assert not rec.get("acknowledged") and rec["divergence"] is None and proc.returncode == 0
    # met, it is an acknowledged violation like any other
    proc, records = run_suite("-k", "ids.negative", "--adapter=tests.planted.faults:WrapsNegativeIds",
                              _intermittent(tmp_path, "planted.WrapsNegativeIds"), report_dir=tmp_path / "out2")
    rec = by_check(records)[("planted.WrapsNegativeIds", "ids.negative")]
    assert rec["status"] == "violates" and rec["acknowledged"]["intermittent"] is True and proc.returncode == 0


def test_a_witness_runs_in_its_own_clause_and_stale_is_decided_by_it_alone(tmp_path):
    # a declaration over two clauses with a witness for one: only the witness's clause can go stale;
    # on the other the adapter (the oracle itself) is held to the model and conforms
    mine = tmp_path / "w.toml"
    mine.write_text(textwrap.dedent("""
        [[divergence]]
        adapter = "numpy"
        clause = ["rows.exact", "grad.scatter_add"]
        model = ["fill_nan"]
        versions = { numpy = ">=1.26" }
        reference = "https://example.org/w"
        note = "n"
        witness = { clause = "ids.out_of_range", table = { dtype = "float32", values = [[1.0]] }, ids = { dtype = "int32", values = [1] } }
    """))
    proc, _ = run_suite("--adapters=numpy", "-k", "rows.exact", f"--expectations={mine}", report_dir=tmp_path / "bad")
    assert "the witness runs in ids.out_of_range, which the declaration does not speak of" in proc.stderr
    mine.write_text(mine.read_text().replace('clause = "ids.out_of_range"', 'clause = "rows.exact"'))
    _, records = run_suite("--adapters=numpy", "-k", "rows.exact or grad.scatter_add", f"--expectations={mine}",
                           report_dir=tmp_path / "out")
    checks = by_check(records)
    assert checks[("numpy", "rows.exact")]["status"] == "stale"
    assert checks[("numpy", "grad.scatter_add")]["status"] == "conforms"


NO_WITNESS = ("[[divergence]]\nadapter='numpy'\nclause='ids.negative'\nmodel=['wrap_negative']\nversions={numpy='>=1'}\n"
              "reference='x'\nnote='n'\n")
WRAPS = ("[[divergence]]\nadapter='numpy'\nmodel=['wrap_negative']\nversions={numpy='>=1'}\nreference='x'\nnote='n'\n"
         "witness={clause='ids.negative', table={dtype='float32',values=[[1.0],[2.0]]}, ids={dtype='int64',values=[-1]}}\n")
CLIPS = WRAPS.replace("wrap_negative", "clip").replace("values=[-1]", "values=[2]")
FILLS = WRAPS.replace("wrap_negative", "fill_nan").replace("values=[-1]", "values=[2]")


@pytest.mark.parametrize("content, problem", [
    (NO_WITNESS, "divergence #1: no witness: give an input that departs"),
    (WRAPS + WRAPS, "both declare step wrap_negative for numpy"),
    (CLIPS + FILLS, "steps clip and fill_nan conflict for numpy"),
    (WRAPS.replace("model=['wrap_negative']", "model=['wrap_negative', 'wrap_negative_in_id_dtype']"),
     "steps wrap_negative and wrap_negative_in_id_dtype say different things of the same inputs"),
])
def test_a_declaration_without_a_witness_or_two_that_conflict_stop_the_run(tmp_path, content, problem):
    bad = tmp_path / "mine.toml"
    bad.write_text(content)
    proc, records = run_suite(*FAST, f"--expectations={bad}", report_dir=tmp_path / "out")
    lines = _errors(proc)
    assert proc.returncode != 0 and len(lines) == 1, proc.stdout + proc.stderr
    assert str(bad) in lines[0] and problem in lines[0], lines[0]
    assert not records


def test_the_declarations_option_and_its_older_name_are_one():
    from embedding_conformance.suites import declarations

    assert declarations.ExpectationsError is declarations.DeclarationError
