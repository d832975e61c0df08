"""adapters/torch/inductor.py: the vector ISA taken from the CPU's flags is the one
inductor's own probing picks, and a failing trusted compile falls back to that
probing. Each case runs in a child process (inductor's choices are per process)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.runner import ROOT

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tmp_path(tmp_path_factory):
    # one temp directory for the three children: inductor's precompiled header (4.6 s)
    # and test programs are built once, as on any machine after its first compile
    return tmp_path_factory.mktemp("inductor")


def _child(code: str, tmp_path) -> dict:
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_trusted_isa_is_the_one_inductor_probes_for(tmp_path):
    out = _child("""
        import json
        from torch._inductor import config, cpu_vec_isa
        from embedding_conformance.adapters.torch import inductor
        reason, note = inductor.ready()
        trusted = str(cpu_vec_isa.pick_vec_isa())
        config.cpp.vec_isa_ok = None
        cpu_vec_isa.valid_vec_isa_list.cache_clear()
        probed = str(cpu_vec_isa.pick_vec_isa())  # inductor's own test programs
        print(json.dumps({"reason": reason, "note": note, "trusted": trusted, "probed": probed}))
    """, tmp_path)
    assert out["reason"] is None, out
    assert out["trusted"] == out["probed"], out
    assert f"vector ISA: {out['probed']}, the first the CPU's flags list" in out["note"]


def test_a_failed_trusted_compile_falls_back_to_inductors_probing(tmp_path):
    out = _child("""
        import json
        from torch._inductor import config
        from embedding_conformance.adapters.torch import inductor
        real = inductor._probe
        seen = []
        def probe(torch):
            seen.append(config.cpp.vec_isa_ok)
            if config.cpp.vec_isa_ok:
                raise RuntimeError("planted: the flags lie")
            real(torch)
        inductor._probe = probe
        reason, note = inductor.ready()
        print(json.dumps({"reason": reason, "note": note, "seen": seen, "after": config.cpp.vec_isa_ok}))
    """, tmp_path)
    assert out["seen"] == [True, None] and out["after"] is None, out
    assert out["reason"] is None, out
    assert "by inductor's own probing" in out["note"] and "planted: the flags lie" in out["note"], out


def test_a_users_own_choice_is_kept(tmp_path):
    out = _child("""
        import json, os
        os.environ["TORCHINDUCTOR_VEC_ISA_OK"] = "0"
        from torch._inductor import config
        from embedding_conformance.adapters.torch import inductor
        reason, note = inductor.ready()
        print(json.dumps({"reason": reason, "note": note, "after": config.cpp.vec_isa_ok}))
    """, tmp_path)
    assert out["after"] is False and out["reason"] is None, out
    assert out["note"] == "inductor's vector ISA: INVALID_VEC_ISA, as set (config.cpp.vec_isa_ok=False)", out


def test_the_one_element_scatter_divergence_needs_two_threads(tmp_path):
    # a torch/declarations.toml entry lives in code inductor writes for two or more threads: on one (a
    # 1-CPU machine, OMP_NUM_THREADS=1) the check is held to the contract, not stale
    from tests.runner import by_check, run_suite

    _, records = run_suite("-k", "grad.scatter_add", "--adapters=torch.nn.functional.embedding[compile]",
                           report_dir=tmp_path / "one-thread", env={"OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)})
    rec = by_check(records)[("torch.nn.functional.embedding[compile]", "grad.scatter_add")]
    assert rec["environment"]["inductor.threads"] == 1
    assert rec["status"] == "conforms" and rec["divergence"] is None
    assert rec["divergence_set_aside"].startswith("torch/declarations.toml#")
