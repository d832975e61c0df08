"""Replays reproduction snippets in a fresh process, as a reader who pastes one does.

    python snippet_child.py PROJECT_ROOT JOBS.json   (reports/replay.py starts it)

JOBS.json is a list of {"path", "module", "sharded"}: a snippet file, the adapter
module whose ``classify(exc, call)`` names the contract failure an exception stands for
(adapters/contract.py, MODULE_PROTOCOL), and whether the call was a sharded lookup. Each snippet runs in a namespace of its own
(snippets of one framework group share the process, and so its import); what it
binds to ``result`` (arrays, or a tuple of arrays and exceptions) or what it raises is
printed as one JSON line per job: ``{"parts": [{"dtype", "shape", "hex"} |
{"failure"} | {"unclassified"}]}`` or ``{"raised": ...}``. The project is put on
sys.path only to classify an exception, after the snippet ran.
"""
from __future__ import annotations

import importlib
import json
import sys
import traceback


def _part(value, classify, ids, sharded):
    import numpy as np

    if isinstance(value, BaseException):
        from embedding_conformance.adapters.contract import Call  # the project is on sys.path by now

        failure = classify(value, Call(ids, sharded))
        return {"failure": failure.kind} if failure is not None else {"unclassified": f"{type(value).__name__}: {value}"[:300]}
    arr = np.asarray(value)
    return {"dtype": arr.dtype.name, "shape": list(arr.shape), "hex": arr.tobytes().hex() if arr.nbytes <= 65536 else None}


def main(root: str, jobs_path: str) -> None:
    jobs = json.load(open(jobs_path))
    classifiers = {}

    def classifier(module):
        if module not in classifiers:
            if root not in sys.path:
                sys.path.append(root)  # only now: the snippet ran without the project
            classifiers[module] = importlib.import_module(module).classify
        return classifiers[module]

    for job in jobs:
        ns = {"__name__": "__main__"}
        try:
            exec(compile(open(job["path"]).read(), job["path"], "exec"), ns)
        except BaseException as exc:  # noqa: BLE001 - the snippet's own failure is the result
            try:
                out = {"parts": [_part(exc, classifier(job["module"]), ns.get("ids"), job["sharded"])]}
            except BaseException:
                out = {"raised": traceback.format_exc(limit=-2)[-500:]}
        else:
            if "result" not in ns:
                out = {"raised": "the snippet bound no `result`"}
            else:
                value = ns["result"]
                parts = value if isinstance(value, tuple) else (value,)
                out = {"parts": [_part(v, classifier(job["module"]), ns.get("ids"), job["sharded"]) for v in parts]}
        sys.stdout.write("RESULT " + json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
