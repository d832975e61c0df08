"""The distributed adapters' infrastructure: the DTensor rank pool leaves no process
behind (after a run, after Ctrl-C, after close), a rank that dies or hangs costs only its
own check (a crash record with the input that did it), and the next check starts the
ranks afresh."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

from embedding_conformance.suites.hosts import Job, WorkerHost
from tests.runner import ROOT, read_records

pytest.importorskip("torch")

COLWISE = "torch.distributed.tensor.parallel.ColwiseParallel[2-rank]"


def _tagged(tag: str) -> list[tuple[int, str]]:
    """Processes whose environment carries ``tag`` (every descendant of a run inherits it)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if tag.encode() not in f.read():
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                if f.read().split(") ", 1)[1].startswith("Z"):  # a zombie holds no resources
                    continue
        except OSError:
            continue
        found.append((int(entry), cmd[:200]))
    return found


def _settled(tag: str, seconds: float = 10.0) -> list[tuple[int, str]]:
    deadline = time.monotonic() + seconds
    while (left := _tagged(tag)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def _suite(tag: str, report_dir, *args: str) -> subprocess.Popen:
    env = {**os.environ, "CONFORMANCE_PROCESS_TAG": tag, "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, "-m", "pytest", "suites", "-p", "no:cacheprovider", "-q", "--hypothesis-profile=ci",
           f"--report-dir={report_dir}", f"--adapters={COLWISE}", *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def test_a_run_leaves_no_process_behind(tmp_path):
    tag = f"conformance-test-{uuid.uuid4().hex}"
    proc = _suite(tag, tmp_path, "-k", "shape.output or partition.device_count")
    out, _ = proc.communicate(timeout=600)
    records = {r["clause"]: r for r in read_records(tmp_path)}
    assert records["shape.output"]["status"] == "conforms", out.decode()[-3000:]
    assert not _settled(tag), _tagged(tag)


@pytest.mark.parametrize("whom", ["process group", "pytest alone"])
def test_ctrl_c_leaves_no_process_behind(tmp_path, whom):
    # a terminal's Ctrl-C sends SIGINT to the whole foreground process group; `kill -INT` to pytest alone
    tag = f"conformance-test-{uuid.uuid4().hex}"
    proc = _suite(tag, tmp_path)
    deadline = time.monotonic() + 300
    while not any("embedding_conformance.adapters.torch.dtensor_rank" in cmd for _, cmd in _tagged(tag)) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        time.sleep(0.2)
    assert any("embedding_conformance.adapters.torch.dtensor_rank" in cmd for _, cmd in _tagged(tag)), "the ranks never started"
    time.sleep(3)  # the ranks are forked and answering
    if whom == "process group":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("pytest did not stop within 120 s of SIGINT")
    assert not _settled(tag), _tagged(tag)


def test_the_pool_starts_once_and_closes_without_a_trace():
    from embedding_conformance.adapters.torch import dtensor as d

    pool = d.RankPool()
    try:
        adapter = d.DTensorEmbedding("Colwise", 2)
        table = np.arange(6, dtype=np.float32).reshape(3, 2)
        for _ in range(3):
            assert pool.request(("run", 2, adapter._sources["lookup"], {"weight": table, "ids": np.array([2])}))[0][0] == "ok"
        assert pool.starts == 1 and len(pool.processes()) == 1 + d.WORLD
        processes = pool.processes()
    finally:
        pool.close()
    for pid in processes:
        with pytest.raises(ProcessLookupError):
            for _ in range(50):  # the zygote reaps its ranks as they exit
                os.kill(pid, 0)
                time.sleep(0.1)


@pytest.mark.parametrize("spec, exit_code, what", [
    ("tests.planted.dist_edges:RankDies", 86, "a rank of its gloo process group died"),
    ("tests.planted.dist_edges:RankHangs", 87, "a rank of its gloo process group hung"),
])
def test_a_failing_rank_costs_only_its_check(spec, exit_code, what):
    # the worker exits when a rank fails; the suite replays the check with its journal and
    # reports the input that did it; the next check forks new ranks and runs
    host = WorkerHost("torch-distributed", {"CONFORMANCE_RANK_TIMEOUT": "5"}, timeout=300)
    try:
        rec = host.run_spec(spec, Job("ids.negative", "ci", None, None))
        assert rec["status"] == "violates", rec
        assert f"died (exit code {exit_code}, {what})" in rec["actual"], rec
        ns = {"np": np}
        exec(rec["example"], ns)
        assert (ns["ids"] < 0).any()
        rec = host.run_spec("tests.planted.dist_edges:correct", Job("shape.output", "ci", None, None))
        assert rec["status"] == "conforms", rec
    finally:
        host.close()


# --- the oracle's device-dependent steps (adapters/spec/oracle.py) --------------------------------

def test_the_device_count_steps_follow_the_count():
    from embedding_conformance.adapters.spec import oracle
    from embedding_conformance.adapters.contract import InvalidTable

    table = np.array([[-0.0, 1.0], [np.float32(1e-45), 2.0], [3.0, 4.0]], dtype=np.float32)
    ids = np.array([0, 1])
    rows = ["over_4_devices", "uneven_rows_refused", "allreduce_zero_sum_xla"]
    with pytest.raises(InvalidTable):  # 3 rows over 4 devices
        oracle.lookup(table, ids, rows)
    assert oracle.lookup(table, ids, oracle.on_devices(rows, 3)).view(np.uint32).tolist() == [
        [0, 0x3F800000], [0, 0x40000000]]  # -0.0 and a subnormal summed to +0.0
    assert oracle.lookup(table, ids, oracle.on_devices(rows, 1)).tobytes() == table[:2].tobytes()
    nan = np.array([[0x7F800001, 0xFFC00003]], dtype=np.uint32).view(np.float32)
    assert oracle.lookup(nan, np.array([0]), ["over_2_devices", "allreduce_zero_sum_xla"]).view(np.uint32).tolist() \
        == [[0x7FC00001, 0xFFC00003]]  # float32: quieted, sign and payload kept
