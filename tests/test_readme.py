"""The README is what users read first: it starts with the two commands, and its
column table names every built-in adapter, and nothing else."""
from __future__ import annotations

import re

from embedding_conformance.adapters import registry
from tests.runner import ROOT

README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


def test_the_readme_starts_with_the_two_commands():
    block = re.search(r"```\n(.*?)```", README, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["bash scripts/run-suite.sh", "bash scripts/run-tests.sh"]
    assert README.index("```") < README.index("\n## ")


def test_the_column_table_lists_every_builtin_adapter():
    rows = [line for line in _section("The columns").splitlines() if line.startswith("| ") and "`" in line]
    listed = [name for row in rows for name in re.findall(r"`([^`]+)`", row.split(" | ")[1])]
    assert len(listed) == len(set(listed)), "a column is listed twice"
    builtins = [b.name for b in registry.BUILTINS]
    assert sorted(listed) == sorted(builtins), (
        f"not in the README: {sorted(set(builtins) - set(listed))}; not built in: {sorted(set(listed) - set(builtins))}")


def test_the_status_table_is_the_suites_own():
    from embedding_conformance.suites.statuses import ALL

    rows = re.findall(r"^\| `(\w+)` (\S+) \| (.+?) \| (\w+)[^|]*\|$", _section("Reading the results"), re.M)
    assert [(name, symbol, meaning, pytest) for name, symbol, meaning, pytest in rows] == \
        [(s.name, s.symbol, s.meaning, s.pytest) for s in ALL]
