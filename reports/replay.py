"""Replaying reproduction snippets, as a reader who pastes one does: each in a fresh
process (one per framework group, so a framework is imported once), its outcome judged
against what the adapter returned in the suite, bit for bit and failure kind for failure
kind. Used by ``python -m reports findings`` (a report is written only for a repro that
still reproduces) and by the project's own tests."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

CHILD = Path(__file__).with_name("snippet_child.py")
ROOT = Path(__file__).resolve().parent.parent


def observed_parts(obs: dict) -> list[dict]:
    """A record's ``observed`` as a list of parts (failure kinds or arrays)."""
    if "parts" in obs:
        return obs["parts"]
    return [{"failure": obs["failure"]}] if "failure" in obs else [obs]


def judge(rec: dict, got: dict) -> str | None:
    """Why the snippet's run does not reproduce ``rec`` (None: it does): the same failure
    kinds, arrays of the same dtype, shape and bytes, or the same dead process. An
    acknowledged violation is held to its bytes too, unless its declaration says it reads
    undefined memory (then dtype and shape); an intermittent one (no input forces it) is
    accepted whatever the replay gave: ``reproduced`` says whether it did."""
    where = f"{rec['adapter']} {rec['clause']}"
    obs = rec["observed"]
    ack = rec.get("acknowledged") or {}
    if "died" in obs:  # the adapter killed its process: so must the snippet
        if "died" in got or ack.get("intermittent"):
            return None
        return f"{where}: the process died in the suite, the snippet's did not ({str(got)[:200]})"
    if "died" in got:
        # an adapter that runs its framework in a child process (OpenVINO, MLX) saw that child
        # killed (ProcessKilled, an unclassified exception); the snippet runs it in its own
        # process, which dies the same way
        if "crash" in obs and ".ProcessKilled:" in obs["crash"]:
            return None
        return f"{where}: the snippet's process died ({got['died']})"
    if "raised" in got:
        return f"{where}: the snippet broke: {got['raised']}"
    if "crash" in obs:  # an exception no contract failure names: the snippet raises one too
        have = got["parts"]
        if len(have) == 1 and "unclassified" in have[0]:
            return None
        return f"{where}: the adapter raised ({obs['crash'][:120]}), the snippet gave {str(have)[:200]}"
    want, have = observed_parts(obs), got["parts"]
    if len(want) != len(have):
        return f"{where}: {len(have)} results from the snippet, {len(want)} observed"
    for k, (w, h) in enumerate(zip(want, have)):
        if "failure" in w:
            if h.get("failure") != w["failure"]:
                return f"{where} result {k}: observed failure {w['failure']}, the snippet gave {str(h)[:300]}"
        elif (h.get("dtype"), h.get("shape")) != (w["dtype"], w["shape"]) or (
                w.get("hex") and h.get("hex") != w["hex"] and not ack.get("undefined_memory")):
            return (f"{where} result {k}: observed {w['dtype']}{w['shape']} {str(w.get('hex'))[:80]}, the snippet "
                    f"gave {h.get('dtype')}{h.get('shape')} {str(h.get('hex') or h)[:80]}")
    return None


def reproduced(rec: dict, got: dict) -> bool:
    """Whether the replay gave what the suite saw (for an intermittent death: whether it died)."""
    if "died" in rec["observed"]:
        return "died" in got
    ack = dict(rec.get("acknowledged") or {})
    ack.pop("intermittent", None)
    return judge({**rec, "acknowledged": ack}, got) is None


def _module(adapter: str) -> str | None:
    from embedding_conformance.adapters import registry

    b = registry.BY_NAME.get(adapter)
    return b.factory.partition(":")[0] if b is not None else None


def _group(adapter: str) -> tuple:
    from embedding_conformance.adapters import registry

    b = registry.BY_NAME[adapter]
    return (b.group, b.env)


def _run_group(jobs: list[dict], workdir: Path, key: str, env: dict, timeout: float) -> list[dict]:
    """One process for one framework group's snippets; a snippet that kills it is
    ``{"died": code}`` and the rest run in a new process."""
    results: list[dict] = []
    while len(results) < len(jobs):
        rest = jobs[len(results):]
        path = workdir / f"jobs-{key}-{len(results)}.json"
        path.write_text(json.dumps(rest))
        proc = subprocess.run([sys.executable, str(CHILD), str(ROOT), str(path)], cwd=workdir, env=env,
                              capture_output=True, text=True, timeout=timeout)
        got = [json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        results += got
        if len(results) < len(jobs):  # the next snippet killed the process (or it ended early)
            results.append({"died": proc.returncode, "stderr": proc.stderr[-300:]})
    return results


def replay(records: list[dict], workdir: Path, timeout: float = 1800) -> list[dict]:
    """Run each record's snippet (built-in adapters only) in a fresh process; return the
    outcome of each, in order (``{"parts": ...}``, ``{"raised": ...}`` or ``{"died": ...}``)."""
    from embedding_conformance.suites.catalogue import load_all

    workdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    clauses = load_all()
    groups: dict[tuple, list[tuple[int, dict]]] = {}
    for k, rec in enumerate(records):
        path = workdir / f"snippet{k}.py"
        path.write_text(rec["snippet"])
        job = {"path": str(path), "module": _module(rec["adapter"]),
               "sharded": clauses[rec["clause"]].method == "lookup_sharded"}
        groups.setdefault(_group(rec["adapter"]), []).append((k, job))
    out: list[Any] = [None] * len(records)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futures = {key: pool.submit(_run_group, [j for _, j in items], workdir, str(n), {**env, **dict(key[1])},
                                    timeout)
                   for n, (key, items) in enumerate(groups.items())}
        for key, items in groups.items():
            for (k, _), got in zip(items, futures[key].result()):
                out[k] = got
    return out
