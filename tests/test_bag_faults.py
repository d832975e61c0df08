"""The bag clauses catch realistic bugs: every planted bag fault, plugged in through
the public --adapter option, is reported `violates` on the clause it breaks, in the ci
profile and under two random seeds; the correct implementation they bend is never
flagged."""
from __future__ import annotations

import pytest

from tests.conftest import SCORES
from tests.planted import bag_faults
from tests.runner import by_check, run_suite

SEEDS = (1234, 987654321)


def _args(classes):
    return [f"--adapter=tests.planted.bag_faults:{cls.__name__}" for cls in classes]


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bag-faults")
    proc, records = run_suite("suites/test_bag.py", *_args([bag_faults.CorrectBags, *bag_faults.ALL]),
                              report_dir=out)
    assert records, f"the suite wrote no results:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc, by_check(records)


def _missed(checks):
    return [f"{cls.__name__} on {cls.breaks}: {checks[(cls().name, cls.breaks)]['status']}"
            if (cls().name, cls.breaks) in checks else f"{cls.__name__} on {cls.breaks}: no record"
            for cls in bag_faults.ALL if checks.get((cls().name, cls.breaks), {}).get("status") != "violates"]


def test_every_bag_fault_is_caught(ci_run):
    proc, checks = ci_run
    missed = _missed(checks)
    SCORES.append(f"planted bag faults caught (ci): {len(bag_faults.ALL) - len(missed)}/{len(bag_faults.ALL)}")
    assert len(bag_faults.ALL) >= 19
    assert not missed, "planted bag faults not caught:\n" + "\n".join(missed)
    assert proc.returncode == 1


def test_the_correct_implementation_conforms(ci_run):
    _, checks = ci_run
    flagged = [f"{c}: {r['status']} {r.get('detail', '')[:200]}" for (a, c), r in checks.items()
               if a == bag_faults.CorrectBags().name and r["status"] not in ("conforms", "not_applicable")]
    assert not flagged, "\n".join(flagged)


def test_bag_violations_explain_themselves(ci_run):
    _, checks = ci_run
    for cls in bag_faults.ALL:
        rec = checks[(cls().name, cls.breaks)]
        assert rec["example"] and rec["detail"] and rec["expected"] and rec["actual"], rec


@pytest.mark.parametrize("seed", SEEDS)
def test_every_bag_fault_is_caught_under_a_random_seed(tmp_path, seed):
    # each fault's own clause only (-k), so that two more runs cost little
    select = " or ".join(f"({cls.__name__} and {cls.breaks.split('.')[1]})" for cls in bag_faults.ALL)
    proc, records = run_suite("suites/test_bag.py", *_args(bag_faults.ALL), "-k", select, f"--hypothesis-seed={seed}",
                              report_dir=tmp_path, profile="default")
    checks = by_check(records)
    assert records, f"the suite wrote no results:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    missed = _missed(checks)
    assert not missed, f"seed {seed}: planted bag faults not caught:\n" + "\n".join(missed)
