"""The HTML report without a browser: reading results, rendering, merging, errors.

The fixture results are built here (``write_fixture_run``) and reused by
``test_report_browser.py``: a few real adapter names and clauses, with every
status, a declared divergence with its reference, a violation with its minimal
example and snippet, an adapter that is not installed.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable with --noconftest too
    sys.path.insert(0, str(ROOT))

from embedding_conformance.reports.cli import merge_dirs  # noqa: E402
from embedding_conformance.reports.merge import build_matrix, merge_runs  # noqa: E402
from embedding_conformance.reports.render import render  # noqa: E402
from embedding_conformance.reports.results import STATUSES, ResultsError, gate_failing, read_run  # noqa: E402

# -- fixture data ----------------------------------------------------------------------------

CLAUSES = [
    ("shape.output", "out.shape == ids.shape + table.shape[1:], for ids of rank 0 to 4 and rows of every rank"),
    ("dtype.output", "out.dtype == table.dtype, for every float dtype the API takes"),
    ("rows.exact", "out[k] == table[ids[k]] bit for bit: NaN payloads, signed zeros, infinities and subnormals unchanged"),
    ("ids.negative", "a negative id is out_of_range, those in [-V, -1] included: never wrapped to V + id"),
    ("ids.out_of_range", "an id >= V is out_of_range: never a wrapped, clamped, zero or NaN row"),
    ("ids.float", "ids of a float or bool dtype are InvalidIds: never truncated, rounded or read as 0/1"),
    ("ids.int64_wide", "an int64 id is never narrowed: 2**33 + 1 is out_of_range for any smaller table, not row 1"),
    ("partition.mod", "mod strategy: id i lives in shard i % P at local row i // P; the result equals the plain lookup"),
    ("partition.div.uneven", "div strategy with N % P != 0: the first N % P shards hold one row more"),
    ("grad.scatter_add", "the gradient with respect to the table is a scatter-add of the upstream gradient"),
]

NUMPY = {"numpy": "2.4.6"}
JAX = {"jax": "0.8.1", "jaxlib": "0.8.1"}
ADAPTERS = [  # name, framework, versions (torch's are filled per run)
    ("numpy", "numpy", NUMPY),
    ("torch.nn.Embedding", "torch", None),
    ("torch.nn.functional.embedding", "torch", None),
    ("jax.numpy.take", "jax", JAX),
    ("keras.layers.Embedding[jax]", "keras", {"keras": "3.12.0", **JAX}),
    ("tf.nn.embedding_lookup", "tensorflow", {}),
]

EX_NEG = "table = np.arange(8, dtype=np.float32).reshape(4, 2)\nids = np.array([-1], dtype=np.int64)"
EX_WIDE = "table = np.zeros((2, 1), dtype=np.float32)\ntable[1] = 7.0\nids = np.array([8589934593], dtype=np.int64)  # 2**33 + 1"
SNIPPET_TORCH_NEG = """import numpy as np
import torch

table = np.arange(8, dtype=np.float32).reshape(4, 2)
ids = np.array([-1], dtype=np.int64)
emb = torch.nn.Embedding.from_pretrained(torch.from_numpy(table))
try:
    out = emb(torch.from_numpy(ids))
    print("no error; got rows", out.detach().numpy().tolist())  # contract: IndexError (out_of_range)
except IndexError as e:
    print("out_of_range as the contract says:", e)
"""
SNIPPET_JAX_WIDE = """import numpy as np
import jax.numpy as jnp  # x64 disabled, as installed

table = np.zeros((2, 1), dtype=np.float32)
table[1] = 7.0
ids = np.array([2**33 + 1], dtype=np.int64)
print(jnp.take(jnp.asarray(table), jnp.asarray(ids), axis=0, mode="fill", fill_value=np.nan))
# contract: out_of_range (or a fill for a declared fill model); JAX narrows the id to int32 and returns row 1: [[7.]]
"""


def _rec(adapter, framework, versions, clause, status, **extra):
    family = clause.split(".")[0]
    statement = dict(CLAUSES)[clause]
    rec = {"adapter": adapter, "framework": framework, "clause": clause, "family": family, "statement": statement,
           "status": status, "versions": versions, "device": "cpu", "examples": 100, "seconds": 0.31,
           "divergence": None}
    if status in ("not_applicable", "unavailable"):
        rec["examples"] = 0
        rec["seconds"] = 0.0
    rec.update(extra)
    return rec


def fixture_records(torch_version: str = "2.13.0", torch_negative: str = "violates") -> list[dict]:
    torch = {"torch": torch_version, **NUMPY}
    recs = []
    for clause, _ in CLAUSES:
        fam = clause.split(".")[0]
        # numpy: indexing wraps negative ids, declared; no sharding or gradient capability
        if clause == "ids.negative":
            recs.append(_rec("numpy", "numpy", NUMPY, clause, "diverges", example=EX_NEG,
                             detail="expected OutOfRange, got rows [[6.0, 7.0]]: id -1 wrapped to row 3",
                             expected="OutOfRange", actual="array([[6., 7.]], dtype=float32)",
                             divergence={"model": ["wrap_negative"], "versions": {"numpy": ">=1.0"},
                                         "reference": "https://numpy.org/doc/stable/user/basics.indexing.html#basic-indexing",
                                         "note": "NumPy indexing counts negative indices from the end"},
                             snippet="import numpy as np\ntable = np.arange(8, dtype=np.float32).reshape(4, 2)\n"
                                     "print(table[np.array([-1])])  # [[6. 7.]], not an IndexError\n"))
        elif fam in ("partition", "grad"):
            recs.append(_rec("numpy", "numpy", NUMPY, clause, "not_applicable",
                             reason=f"the numpy adapter has no {'lookup_sharded' if fam == 'partition' else 'grad'} method"))
        else:
            recs.append(_rec("numpy", "numpy", NUMPY, clause, "conforms"))
        # torch: both APIs
        for name in ("torch.nn.Embedding", "torch.nn.functional.embedding"):
            if fam == "partition":
                recs.append(_rec(name, "torch", torch, clause, "not_applicable",
                                 reason="the adapter has no lookup_sharded method"))
            elif clause == "ids.negative" and name == "torch.nn.Embedding" and torch_negative != "conforms":
                recs.append(_rec(name, "torch", torch, clause, torch_negative, example=EX_NEG,
                                 detail="expected OutOfRange, got rows [[6.0, 7.0]] (id -1 wrapped to row 3); "
                                        "no declared divergence for this adapter",
                                 expected="OutOfRange (IndexError from torch)", actual="tensor([[6., 7.]])",
                                 snippet=SNIPPET_TORCH_NEG))
            else:
                recs.append(_rec(name, "torch", torch, clause, "conforms"))
        # jax.numpy.take: fills out-of-range ids with NaN and wraps negatives (declared), narrows int64 (not declared)
        if clause == "ids.out_of_range":
            recs.append(_rec("jax.numpy.take", "jax", JAX, clause, "diverges", example="table = np.ones((3, 2), dtype=np.float32)\nids = np.array([3], dtype=np.int32)",
                             detail="expected OutOfRange, got a row of NaN", expected="OutOfRange",
                             actual="Array([[nan, nan]], dtype=float32)",
                             divergence={"model": ["fill_nan"], "versions": {"jax": ">=0.4.0"},
                                         "reference": "https://docs.jax.dev/en/latest/_autosummary/jax.numpy.take.html",
                                         "note": "mode='fill' is the default for take"},
                             snippet="import numpy as np\nimport jax.numpy as jnp\n"
                                     "print(jnp.take(jnp.ones((3, 2)), jnp.array([3]), axis=0))  # [[nan nan]]\n"))
        elif clause == "ids.negative":
            recs.append(_rec("jax.numpy.take", "jax", JAX, clause, "diverges", example=EX_NEG,
                             detail="id -1 wrapped to row 3, as declared", expected="OutOfRange",
                             actual="Array([[6., 7.]], dtype=float32)",
                             divergence={"model": ["wrap_negative", "fill_nan"], "versions": {"jax": ">=0.4.0"},
                                         "reference": "https://docs.jax.dev/en/latest/_autosummary/jax.numpy.take.html"},
                             snippet="import jax.numpy as jnp\nprint(jnp.take(jnp.arange(8.).reshape(4, 2), jnp.array([-1]), axis=0))\n"))
        elif clause == "ids.int64_wide":
            recs.append(_rec("jax.numpy.take", "jax", JAX, clause, "violates", example=EX_WIDE,
                             detail="expected OutOfRange, got row 1: the int64 id 2**33 + 1 was narrowed to int32 "
                                    "(looks like narrow_to_int32, which is not declared for jax.numpy.take)",
                             expected="OutOfRange", actual="Array([[7.]], dtype=float32)",
                             divergence=None, snippet=SNIPPET_JAX_WIDE))
        elif fam in ("partition", "grad"):
            recs.append(_rec("jax.numpy.take", "jax", JAX, clause, "not_applicable",
                             reason="jax.numpy.take has no sharded lookup or gradient adapter method"))
        else:
            recs.append(_rec("jax.numpy.take", "jax", JAX, clause, "conforms"))
        # keras on jax: a stale declaration and a suite error
        kv = {"keras": "3.12.0", **JAX}
        if clause == "ids.out_of_range":
            recs.append(_rec("keras.layers.Embedding[jax]", "keras", kv, clause, "stale",
                             detail="declared fill_zero for keras<3.13, but no counterexample to the contract was "
                                    "found: the framework now raises; update or remove the declaration",
                             divergence={"model": ["fill_zero"], "versions": {"keras": "<3.13"},
                                         "reference": "https://github.com/keras-team/keras/issues/19263"}))
        elif clause == "rows.exact":
            recs.append(_rec("keras.layers.Embedding[jax]", "keras", kv, clause, "error",
                             reason="the suite broke: TypeError: unhashable type: 'numpy.ndarray' in suites/engine.py:212"))
        elif fam == "partition":
            recs.append(_rec("keras.layers.Embedding[jax]", "keras", kv, clause, "not_applicable",
                             reason="the adapter has no lookup_sharded method"))
        else:
            recs.append(_rec("keras.layers.Embedding[jax]", "keras", kv, clause, "conforms"))
        recs.append(_rec("tf.nn.embedding_lookup", "tensorflow", {}, clause, "unavailable",
                         reason="tensorflow is not installed (pip install tensorflow)"))
    return recs


def fixture_meta(records: list[dict], *, complete: bool = True, date: str = "2026-11-21T23:10:00Z") -> dict:
    versions: dict[str, str] = {}
    adapters: dict[str, dict] = {}
    for r in records:
        versions.update(r["versions"])
        adapters.setdefault(r["adapter"], {"name": r["adapter"], "framework": r["framework"],
                                           "versions": r["versions"]})
    clauses = []
    for r in records:
        if r["clause"] not in [c["id"] for c in clauses]:
            clauses.append({"id": r["clause"], "family": r["family"], "statement": r["statement"], "tolerance": None})
    return {"python": "3.11.7", "platform": "Linux-6.1.0-x86_64-with-glibc2.36", "device": "cpu",
            "revision": "3f2a9c1d7e0b", "profile": "ci", "seed": "20261121", "date": date,
            "hypothesis": "6.170.15", "versions": dict(sorted(versions.items())), "clauses": clauses,
            "adapters": list(adapters.values()), "complete": complete}


def write_fixture_run(d: Path, records: list[dict] | None = None, *, complete: bool = True, **kw) -> Path:
    """A report directory with run.json and results.jsonl, as the pytest plugin writes them."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    records = fixture_records(**kw) if records is None else records
    (d / "results.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records), encoding="utf-8")
    (d / "run.json").write_text(json.dumps(fixture_meta(records, complete=complete), indent=1, sort_keys=True),
                                encoding="utf-8")
    return d


def big_records(n_clauses: int = 120, n_adapters: int = 50) -> list[dict]:
    """Thousands of checks: synthetic clauses and adapters, every status represented."""
    recs = []
    cycle = ["conforms"] * 12 + ["diverges", "not_applicable", "violates", "stale", "unavailable", "error"]
    for a in range(n_adapters):
        fw = f"fw{a // 5}"
        name = f"{fw}.layers.Embedding{a % 5}"
        for c in range(n_clauses):
            s = cycle[(a * 7 + c * 3) % len(cycle)]
            extra = {}
            if s not in ("conforms",):
                extra = {"example": f"ids = np.array([{c}], dtype=np.int64)", "detail": "planted", "expected": "x",
                         "actual": "y", "snippet": f"import {fw}\nprint({c})\n", "reason": "planted"}
            recs.append({"adapter": name, "framework": fw, "clause": f"fam{c // 10}.clause{c}",
                         "family": f"fam{c // 10}", "statement": f"statement of clause {c} " + "x" * 60,
                         "status": s, "versions": {fw: "1.0.0", "numpy": "2.4.6"}, "device": "cpu",
                         "examples": 100, "seconds": 0.01, **extra})
    return recs


# -- rendering ---------------------------------------------------------------------------------

def test_render_fixture_page(tmp_path):
    d = write_fixture_run(tmp_path / "run")
    path = render(read_run(d), d)
    assert path == d / "index.html"
    html = path.read_text(encoding="utf-8")
    # header: every framework's version, python, platform, device, revision, profile, seed, date
    for text in ("torch</b> 2.13.0", "numpy</b> 2.4.6", "jax</b> 0.8.1", "keras</b> 3.12.0", "3.11.7",
                 "Linux-6.1.0-x86_64-with-glibc2.36", "3f2a9c1d7e0b", "profile ci", "seed 20261121",
                 "2026-11-21 23:10:00 UTC", ">cpu<"):
        assert text in html, text
    # every clause row with its statement, every adapter column
    for clause, statement in CLAUSES:
        assert f'data-id="{clause}"' in html
    assert "ids of a float or bool dtype are InvalidIds" in html
    for name, _, _ in ADAPTERS:  # each column's full name, written out (one or two lines), not only in a tooltip
        assert f'data-name="{name}"' in html
        assert "".join(re.findall(r'<span class="ln">([^<]*)</span>', html.split(f'data-name="{name}"')[1])[:2]).startswith(
            name.split("[")[0][:12])
    # legend with counts, symbols per status
    recs = fixture_records()
    for s in STATUSES:
        n = sum(r["status"] == s for r in recs)
        assert f'data-status="{s}">{n}</span>' in html, s
    for sym in "✓≈✗↻–∅!":
        assert sym in html
    assert html.count('class="s-violates') == 2  # the two violations, nothing else
    # self-contained: nothing that loads from elsewhere, the data embedded once
    assert not re.search(r"<(link|img|iframe|object|embed|audio|video)\b|\ssrc=|@import|\burl\(", html)
    assert html.count('id="report-data"') == 1
    assert html.count(SNIPPET_JAX_WIDE.splitlines()[1][:30]) == 1
    assert "Content-Security-Policy" in html


def test_render_accepts_a_directory_and_a_list(tmp_path):
    d = write_fixture_run(tmp_path / "run")
    assert render(d, tmp_path / "out1") == tmp_path / "out1" / "index.html"
    assert render([read_run(d)], tmp_path / "out2").exists()
    assert render(str(d), d).exists()


def test_embedded_text_cannot_break_out_of_the_page(tmp_path):
    recs = fixture_records()
    recs[3]["snippet"] = "print('</script><script>alert(1)</script>')"
    recs[3]["status"] = "violates"
    d = write_fixture_run(tmp_path / "run", recs)
    html = render(d, d).read_text()
    assert "<script>alert(1)" not in html
    assert html.count("</script>") == 2  # the data block and the page script


def test_incomplete_run_claims_only_what_it_read(tmp_path):
    recs = fixture_records()[:23]  # interrupted part-way
    d = write_fixture_run(tmp_path / "run", recs, complete=False)
    html = render(d, d).read_text()
    assert "Incomplete:" in html
    assert f"only the {len(recs)} checks that were recorded" in html
    assert "all 23 checks pass" not in html
    m = build_matrix(read_run(d))
    n_missing = len(m.clauses) * len(m.columns) - len(m.cells)
    assert n_missing > 0
    assert html.count('<td class="x">') == n_missing
    assert f"not recorded <span class=\"count\">{n_missing}</span>" in html


def test_thousands_of_checks_render_fast(tmp_path):
    recs = big_records(120, 50)  # 6000 checks
    d = write_fixture_run(tmp_path / "big", recs)
    t0 = time.perf_counter()
    path = render(read_run(d), d)
    elapsed = time.perf_counter() - t0
    html = path.read_text()
    assert html.count("<td class=\"s-") == 6000
    assert elapsed < 5.0, f"rendering 6000 checks took {elapsed:.2f}s"
    assert len(html) < 3_000_000


# -- bad input ----------------------------------------------------------------------------------

def _corrupt(d: Path, how: str) -> tuple[str, str | None, str]:
    """Damage a fixture run; returns (file name, line number or None, a word the message must hold)."""
    res, run = d / "results.jsonl", d / "run.json"
    lines = res.read_text().splitlines(keepends=True)
    if how == "missing_results":
        res.unlink(); return "results.jsonl", None, "file not found"
    if how == "missing_run":
        run.unlink(); return "run.json", None, "file not found"
    if how == "empty_results":
        res.write_text(""); return "results.jsonl", None, "empty"
    if how == "empty_run":
        run.write_text("  \n"); return "run.json", None, "empty"
    if how == "truncated_results":
        res.write_text("".join(lines[:6]) + lines[6][: len(lines[6]) // 2]); return "results.jsonl", "7", "truncated"
    if how == "corrupt_line":
        lines[4] = lines[4].replace('"status":', '"status"', 1); res.write_text("".join(lines))
        return "results.jsonl", "5", "invalid JSON"
    if how == "not_an_object":
        lines[2] = "[1, 2, 3]\n"; res.write_text("".join(lines)); return "results.jsonl", "3", "expected a JSON object"
    if how == "missing_key":
        rec = json.loads(lines[8]); del rec["status"]; lines[8] = json.dumps(rec) + "\n"; res.write_text("".join(lines))
        return "results.jsonl", "9", "missing key 'status'"
    if how == "bad_status":
        rec = json.loads(lines[1]); rec["status"] = "passed"; lines[1] = json.dumps(rec) + "\n"
        res.write_text("".join(lines)); return "results.jsonl", "2", "expected one of conforms"
    if how == "duplicate":
        res.write_text("".join(lines) + lines[0]); return "results.jsonl", str(len(lines) + 1), "duplicate record"
    if how == "binary":
        res.write_bytes(b"".join(x.encode() for x in lines[:3]) + b"\xff\xfe\x00garbage\n")
        return "results.jsonl", "4", "not UTF-8"
    if how == "truncated_run":
        text = run.read_text(); run.write_text(text[: len(text) // 2]); return "run.json", None, "truncated JSON"
    if how == "corrupt_run":
        run.write_text('{"python": "3.11.7",\n "platform": oops}\n'); return "run.json", "2", "invalid JSON"
    if how == "run_missing_key":
        meta = json.loads(run.read_text()); del meta["clauses"]; run.write_text(json.dumps(meta))
        return "run.json", "1", "missing key 'clauses'"
    raise AssertionError(how)


BAD = ["missing_results", "missing_run", "empty_results", "empty_run", "truncated_results", "corrupt_line",
       "not_an_object", "missing_key", "bad_status", "duplicate", "binary", "truncated_run", "corrupt_run",
       "run_missing_key"]


@pytest.mark.parametrize("how", BAD)
def test_bad_input_is_a_one_line_error_naming_file_and_line(tmp_path, how):
    d = write_fixture_run(tmp_path / "run")
    name, line, word = _corrupt(d, how)
    with pytest.raises(ResultsError) as info:
        read_run(d)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(d / name) in msg, msg
    assert word in msg, msg
    if line is not None:
        assert f"{name}:{line}: " in msg, msg
    assert isinstance(info.value, ValueError)


def test_missing_directory(tmp_path):
    with pytest.raises(ResultsError, match="no such directory"):
        read_run(tmp_path / "nope")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reports", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_cli_render_and_its_errors(tmp_path):
    d = write_fixture_run(tmp_path / "run")
    p = _cli("render", str(d))
    assert p.returncode == 0, p.stderr
    assert (d / "index.html").exists()
    (d / "index.html").unlink()
    _corrupt(d, "truncated_results")
    p = _cli("render", str(d))
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("error: ")
    assert f"{d / 'results.jsonl'}:7: truncated" in p.stderr
    assert not (d / "index.html").exists()
    p = _cli("render")  # usage errors are argparse's
    assert p.returncode == 2 and "usage:" in p.stderr


# -- merging -----------------------------------------------------------------------------------

def _two_versions(tmp_path) -> tuple[Path, Path]:
    a = write_fixture_run(tmp_path / "torch-2.12", torch_version="2.12.0", torch_negative="conforms")
    b = write_fixture_run(tmp_path / "torch-2.13", torch_version="2.13.0", torch_negative="violates")
    return a, b


def test_merge_marks_the_planted_change(tmp_path):
    a, b = _two_versions(tmp_path)
    merged = merge_runs([read_run(a), read_run(b)])
    m = build_matrix(merged)
    assert [(c.clause, c.adapter) for c in m.changes] == [("ids.negative", "torch.nn.Embedding")]
    (ch,) = m.changes
    assert [(m.columns[ci].label, s) for ci, s, _ in ch.cells] == [("2.12.0", "conforms"), ("2.13.0", "violates")]
    names = [c.adapter for c in m.columns]
    assert names.count("torch.nn.Embedding") == 2 and names.count("torch.nn.functional.embedding") == 2
    assert names.count("numpy") == 1 and names.count("jax.numpy.take") == 1  # same versions: one column
    assert m.multi_version


def test_merge_command_writes_page_and_rereadable_results(tmp_path):
    a, b = _two_versions(tmp_path)
    out = tmp_path / "merged"
    p = _cli("merge", str(a), str(b), "--out", str(out))
    assert p.returncode == 0, p.stderr
    html = (out / "index.html").read_text()
    assert html.count("Δ changed") == 1
    assert 'class="cl changed" data-r="' in html and 'data-id="ids.negative"' in html
    assert "Merged from 2 runs" in html
    again = read_run(out)  # the merged results read back as a run
    assert {r.get("source") for r in again.records} == {os.path.normpath(str(a)), os.path.normpath(str(b))}
    assert [(c.clause, c.adapter) for c in build_matrix(again).changes] == [("ids.negative", "torch.nn.Embedding")]
    assert json.loads((out / "run.json").read_text())["versions"]["torch"] == "2.12.0, 2.13.0"
    # merging a merged directory with another run keeps working
    c = write_fixture_run(tmp_path / "torch-2.14", torch_version="2.14.0", torch_negative="conforms")
    path = merge_dirs([out, c], tmp_path / "merged2")
    m = build_matrix(read_run(path.parent))
    assert [c.label for c in m.columns if c.adapter == "torch.nn.Embedding"] == ["2.12.0", "2.13.0", "2.14.0"]


def test_merge_writes_a_shields_badge_per_framework(tmp_path):
    a, b = _two_versions(tmp_path)
    out = tmp_path / "merged"
    assert _cli("merge", str(a), str(b), "--out", str(out)).returncode == 0
    merged = read_run(out)
    frameworks = {r["framework"] for r in merged.records}
    files = {p.name: json.loads(p.read_text()) for p in (out / "badges").glob("*.json")}
    assert set(files) == {f"{fw}.json" for fw in frameworks}
    for fw in frameworks:
        data = files[f"{fw}.json"]
        assert data["schemaVersion"] == 1 and data["label"] == fw
        recs = [r for r in merged.records if r["framework"] == fw]
        failing = sum(1 for r in recs if gate_failing(r))
        assert (f"{failing} failing" in data["message"]) == bool(failing)
        assert data["color"] == ("red" if failing else data["color"])
    # the planted violation is torch's (2.13 violates ids.negative, acknowledged or not, it is not a pass)
    assert "pass" in files["torch.json"]["message"] and files["torch.json"]["color"] in ("red", "orange")


@pytest.mark.parametrize("how", ["empty_results", "truncated_results", "corrupt_run", "missing_run"])
def test_merge_with_bad_input_writes_nothing(tmp_path, how):
    a, b = _two_versions(tmp_path)
    name, _, word = _corrupt(b, how)
    out = tmp_path / "merged"
    p = _cli("merge", str(a), str(b), "--out", str(out))
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("error: ")
    assert str(b / name) in p.stderr and word in p.stderr
    assert not out.exists()
    p = _cli("merge", str(a), str(tmp_path / "absent"), "--out", str(out))
    assert p.returncode == 2 and "no such directory" in p.stderr and not out.exists()


def test_merge_same_versions_with_different_outcomes_are_separate_columns(tmp_path):
    a = write_fixture_run(tmp_path / "machine-a", torch_negative="conforms")
    b = write_fixture_run(tmp_path / "machine-b", torch_negative="violates")  # same torch 2.13.0
    m = build_matrix(merge_runs([read_run(a), read_run(b)]))
    cols = [c for c in m.columns if c.adapter == "torch.nn.Embedding"]
    assert len(cols) == 2 and all("run " in c.label for c in cols)
    assert [(c.clause, c.adapter) for c in m.changes] == [("ids.negative", "torch.nn.Embedding")]
    assert len([c for c in m.columns if c.adapter == "torch.nn.functional.embedding"]) == 1


def test_merge_drops_columns_of_an_adapter_not_installed_in_one_run(tmp_path):
    a = write_fixture_run(tmp_path / "a")
    recs = [r for r in fixture_records() if r["adapter"] != "tf.nn.embedding_lookup"]
    recs += [dict(r, adapter="tf.nn.embedding_lookup", framework="tensorflow", versions={"tensorflow": "2.20.0"},
                  status="conforms", reason=None) for r in fixture_records() if r["adapter"] == "numpy"]
    b = write_fixture_run(tmp_path / "b", recs)
    m = build_matrix(merge_runs([read_run(a), read_run(b)]))
    assert [c.label for c in m.columns if c.adapter == "tf.nn.embedding_lookup"] == ["2.20.0"]
    assert m.omitted and "tf.nn.embedding_lookup" in m.omitted[0]
    assert not m.changes


# -- what the page embeds, the score, the panel's bits -------------------------------------------

def _page_data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S)
    return json.loads(m.group(1))


def _text(data: dict, item) -> str:
    return "\n".join(data["lines"][k] for k in item if isinstance(k, int))


def test_page_embeds_long_texts_cut_and_never_a_witness(tmp_path):
    recs = fixture_records()
    big = "table = np.array([" + ", ".join("1.5" for _ in range(100_000)) + "], dtype=np.float32)"
    neg = next(r for r in recs if r["adapter"] == "torch.nn.Embedding" and r["clause"] == "ids.negative")
    neg["example"] = big + "\nids = np.array([-1], dtype=np.int64)"
    neg["snippet"] = "import numpy as np\n" + big + "\nresult = table\n"
    neg["witness"] = {"table": {"dtype": "float32", "bits": list(range(50_000))}}
    d = write_fixture_run(tmp_path / "run", recs)
    html = render(d, d).read_text()
    assert len(html) < 200_000, len(html)  # the 2 x 500 KB of text are cut, the witness is not embedded
    data = _page_data(html)
    rec = next(r for r in data["recs"] if r["s"] == "violates" and "example" in r and data["rows"][r["r"]]["id"] == "ids.negative")
    assert rec["example"][-1]["cut"] > 400_000  # the page says how much it left out
    assert _text(data, rec["example"]).endswith("ids = np.array([-1], dtype=np.int64)")  # a long line cut, not the rest
    assert '"witness":' not in json.dumps(data)
    # a line shared by many snippets (an import) is embedded once
    assert data["lines"].count("import numpy as np") == 1


def test_score_counts_declared_divergences_as_passing_as_the_legend_does(tmp_path):
    from embedding_conformance.reports.render import page_context

    recs = fixture_records()
    d = write_fixture_run(tmp_path / "run", recs)
    ctx = page_context(read_run(d))
    cols = [c.adapter for c in ctx["columns"]]
    jax = ctx["scores"][cols.index("jax.numpy.take")]
    # jax.numpy.take: 10 clauses, 3 not applicable (partition x2, grad), 2 diverge, 1 violates
    assert (jax["conforms"], jax["diverges"], jax["fails"], jax["applicable"]) == (4, 2, 1, 7)
    assert jax["pass_pct"] == round(100 * 6 / 7)
    assert "2 diverge as declared" in jax["title"] and "1 violates" in jax["title"]
    # the legend files diverges under pass, like the score
    groups = {g["name"]: g["statuses"] for g in ctx["groups"]}
    assert "diverges" in groups["pass"] and "violates" in groups["fail"]
    assert ctx["scores"][cols.index("tf.nn.embedding_lookup")]["applicable"] == 0


def test_new_failures_are_marked_and_counted(tmp_path):
    recs = fixture_records()
    d = write_fixture_run(tmp_path / "run", recs)
    html = render(d, d).read_text()
    n_new = sum(1 for r in recs if r["status"] in ("violates", "stale", "error") and not r.get("acknowledged"))
    assert n_new == 4
    assert len(re.findall(r'<td class="s-\w+[^"]* n[ "]', html)) == n_new
    assert f'id="new-count">{n_new}<' in html
    data = _page_data(html)
    assert sum(1 for r in data["recs"] if r.get("new")) == n_new


def test_panel_shows_bits_where_values_print_alike(tmp_path):
    recs = fixture_records()
    rec = next(r for r in recs if r["adapter"] == "jax.numpy.take" and r["clause"] == "rows.exact")
    # a NaN payload quieted: expected and actual print alike ("nan"), only the bits tell them apart
    rec.update(status="diverges", example="table = np.frombuffer(bytes.fromhex('017c003c'), dtype=np.float16)"
                                          ".reshape((2, 1))\nids = np.array([0, 1], dtype=np.int32)",
               expected="float16[2, 1] [[nan], [1.]]", actual="float16[2, 1] [[nan], [1.]]",
               detail="1 of 2 elements differ; first at [0, 0]: expected nan (bits 0x7c01), got nan (bits 0x7e01)",
               observed={"dtype": "float16", "shape": [2, 1], "hex": "017e003c",
                         "parts": [{"dtype": "float16", "shape": [2, 1], "hex": "017e003c"}]},
               divergence={"model": ["quiet_nan"], "reference": "https://docs.jax.dev/en/latest/", "source": "x#1"})
    d = write_fixture_run(tmp_path / "run", recs)
    data = _page_data(render(d, d).read_text())
    got = next(r for r in data["recs"] if "bits" in r)
    assert got["bits"]["rows"][0][:3] == ["[0, 0]", "0x7c01", "0x7e01"] and got["bits"]["rows"][0][4] is True
    assert got["bits"]["differ"] == 1 and got["bits"]["total"] == 2
    assert data["decls"][got["divergence"]]["model"] == ["quiet_nan"]


def test_full_size_run_page_stays_small(tmp_path):
    """A run like the full one (53 columns, every departure with a long snippet and a
    64 KiB observed): the page stays far below 5 MB."""
    recs = big_records(49, 53)
    filler = "\n".join(f"def helper_{k}(a):\n    return a  # a conversion helper line {k}" for k in range(40))
    for r in recs:
        if r["status"] != "conforms":
            r["snippet"] = f"import numpy as np\n{filler}\nresult = helper_0({r['clause']!r})\n"
            r["example"] = "table = np.array([" + ", ".join(str(k / 7) for k in range(3000)) + "])\n" + r["example"]
            r["observed"] = {"dtype": "float32", "shape": [16384], "hex": "00" * 65536}
    d = write_fixture_run(tmp_path / "run", recs)
    size = render(d, d).stat().st_size
    assert size < 5_000_000, size
