"""The suite catches realistic bugs: every planted fault, plugged in through the
public --adapter option, is reported `violates` on the clause it breaks, in the
ci profile."""
from __future__ import annotations

import pytest

from tests.conftest import SCORES
from tests.planted import faults
from tests.runner import by_check, run_suite


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("planted")
    args = [f"--adapter=tests.planted.faults:{cls.__name__}" for cls in [*faults.ALL, faults.ModeSplit]]
    proc, records = run_suite(*args, report_dir=out)
    assert records, f"the suite wrote no results:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc, by_check(records)


def test_every_planted_fault_is_caught(planted_run):
    proc, checks = planted_run
    caught, missed = [], []
    for cls in faults.ALL:
        name = cls().name
        rec = checks.get((name, cls.breaks))
        (caught if rec and rec["status"] == "violates" else missed).append(
            f"{name} on {cls.breaks}: {rec['status'] if rec else 'no record'}")
    SCORES.append(f"planted faults caught: {len(caught)}/{len(faults.ALL)} "
                  f"({100 * len(caught) // len(faults.ALL)}%)")
    assert len(faults.ALL) >= 25
    assert not missed, "planted faults not caught:\n" + "\n".join(missed)
    assert proc.returncode == 1  # the run fails, as a user's CI would


def test_violations_explain_themselves(planted_run):
    _, checks = planted_run
    for cls in faults.ALL:
        rec = checks[(cls().name, cls.breaks)]
        assert rec["example"] and rec["detail"] and rec["expected"] and rec["actual"], rec


def test_mutating_the_table_is_caught_on_every_clause(planted_run):
    _, checks = planted_run
    mutated = [r for (a, c), r in checks.items() if a == "planted.MutatesTable" and r["status"] == "violates"]
    assert mutated and all("changed its input 'table'" in r["actual"] for r in mutated)


def test_a_compiled_path_that_clamps_where_eager_raises_is_caught(planted_run):
    _, checks = planted_run
    assert checks[("planted.ModeSplit", "ids.out_of_range")]["status"] == "conforms"
    assert checks[("planted.ModeSplit[jit]", "ids.out_of_range")]["status"] == "violates"


def test_a_grad_that_overwrites_or_steps_the_table_is_caught(planted_run):
    _, checks = planted_run
    overwrite = checks[("planted.OverwritesDuplicateGrads", "grad.scatter_add")]
    assert overwrite["status"] == "violates", overwrite
    stepped = checks[("planted.StepsTheTable", "grad.scatter_add")]
    assert stepped["status"] == "violates" and "changed its input 'table'" in stepped["actual"]
