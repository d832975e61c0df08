"""One source for every call (adapters/toolkit/source.py): every built-in adapter's
snippet is generated from the lines the adapter executes. For each worker group whose
framework is installed, a child process builds the group's adapters, makes each method
they offer on a small input (a pinned input, suites/pins.py), then asks for its
snippet: the snippet must come through ``Source.snippet`` and print only call texts the
adapter executed (none restated by hand)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from embedding_conformance.adapters import registry

ROOT = Path(__file__).resolve().parents[1]

# a pinned input per method: float32 tables, the ids every adapter takes
_CHILD = textwrap.dedent('''
    import json, sys
    import numpy as np
    from embedding_conformance.adapters import registry
    from embedding_conformance.adapters.contract import capabilities_of, methods_of
    from embedding_conformance.adapters.spec.steps import Pin
    from embedding_conformance.adapters.toolkit import source
    from embedding_conformance.suites import pins
    from embedding_conformance.suites.source import args_source

    PIN = {
        "lookup": Pin("rows.exact", ids=(0, 1)), "lookup_loaded": Pin("table.load", ids=(0, 1)),
        "lookup_mask_zero": Pin("rows.exact", ids=(0, 1)), "lookup_with_state": Pin("rows.exact", ids=(0, 1)),
        "grad": Pin("grad.scatter_add", ids=(0, 1, 0), table="finite"),
        "grad_scaled": Pin("grad.scatter_add", ids=(0, 1, 0), table="finite"),
        "grad_padded": Pin("grad.scatter_add", ids=(0, 1, 0), table="finite"),
        "lookup_sharded": Pin("partition.mod", shards=(2, 1), ids=(0, 2), strategy="mod"),
        "lookup_on_devices": Pin("partition.device_count", ids=(0, 1)),
        "lookup_bags": Pin("bag.sum", values=(0, 1), offsets=(0, 1, 2), combiners=("sum",)),
        "lookup_bags_padded": Pin("bag.sum", values=(0, 1), offsets=(0, 1, 2), combiners=("sum",)),
        "grad_bags": Pin("bag.sum", values=(0, 1), offsets=(0, 1, 2), combiners=("sum",), table="finite"),
    }
    out = {}
    for name in sys.argv[1:]:
        b = registry.BY_NAME[name]
        adapter = registry.load_object(b.factory)
        caps = capabilities_of(adapter)
        report = out[name] = {"snippets": 0, "bypassed": [], "restated": []}
        for method in methods_of(adapter):
            pin = PIN[method]
            if pin.shards is not None and method == "lookup_sharded":
                pin = Pin(pin.clause, shards=pin.shards, ids=pin.ids, strategy=caps.strategies[0])
            dtype = "float32" if "float32" in caps.table_dtypes else caps.table_dtypes[0]
            cases = [c for c in pins.build(pin, caps, method) if
                     (c.get("table", (c.get("shards") or [np.zeros(0, dtype)])[0])).dtype.name == dtype]
            if not cases:
                continue
            args = cases[0]
            try:
                getattr(adapter, method)(**args)
            except Exception:
                pass  # a failure is an outcome too: its snippet must still print what ran
            source.PRINTED.clear()
            try:
                text = adapter.snippet(method, args_source(args))
            except ValueError:
                continue  # no snippet for this method
            report["snippets"] += 1
            if not source.PRINTED:
                report["bypassed"].append(method)
            report["restated"] += [f"{method}: {t[:200]}" for t in source.restated()]
    print("RESULT " + json.dumps(out))
''')


def _groups() -> dict[str, list]:
    groups: dict[str, list] = {}
    for b in registry.BUILTINS:
        if b.missing() is None:
            groups.setdefault(b.group or "main", []).append(b)
    return groups


@pytest.mark.parametrize("group", sorted(_groups()))
def test_every_snippet_prints_what_its_adapter_executed(group, tmp_path):
    builtins = _groups()[group]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **dict(builtins[0].env)}
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    proc = subprocess.run([sys.executable, str(script), *(b.name for b in builtins)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line is not None, proc.stderr[-3000:]
    results = json.loads(line[len("RESULT "):])
    problems = []
    for name, rep in results.items():
        if rep["snippets"] == 0:
            problems.append(f"{name}: no snippet was written")
        if rep["bypassed"]:
            problems.append(f"{name}: snippets of {rep['bypassed']} do not come from adapters/toolkit/source.py")
        problems += [f"{name}: restated (printed, never executed): {r}" for r in rep["restated"]]
    assert not problems, "\n".join(problems)
