"""One source for every call: what an adapter executes is the text its snippet prints.

A framework folder declares one ``Source``: its prelude (imports and the helpers its
calls use, array conversions above all, as source text) and a name. The adapter makes
every call through ``Source.run(lines, **names)``: the prelude runs once per process into
a base namespace (so the adapter converts arrays with the very ``to_torch`` a snippet
defines), each distinct text is compiled once, and the names (the arrays, a layer built
earlier) are bound for the call. ``Source.snippet(args, lines, tail)`` writes the
prelude, the output helper ``show``, the arguments as NumPy source, the same lines and
the tail that binds ``result`` (what the adapter returned, for a replay to compare).

Every text run and every text printed is remembered (``EXECUTED``, ``PRINTED``), so a
test can hold the two together: a snippet whose call lines were never executed is a
restated call, and one that did not come through here is not generated from source.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

# the output helper every snippet shares: the value, and its bits where a float's bits matter
SHOW = '''\
def show(label, value):
    a = to_numpy(value)
    print(label, "=", repr(a))
    if a.dtype.kind == "f" or a.dtype.name == "bfloat16":
        print(label, "bits =", repr(a.view(f"u{a.itemsize}")))
    return a
'''

EXECUTED: set[str] = set()  # texts Source.run executed in this process
PRINTED: set[str] = set()  # call texts Source.snippet printed in this process


def text(lines: str | Iterable[str]) -> str:
    """Source lines as one text (a string is taken as it is)."""
    return lines if isinstance(lines, str) else "\n".join(lines)


class Source:
    """A framework's prelude and the calls made with it."""

    def __init__(self, name: str, prelude: str):
        self.name = name  # shows in tracebacks: <torch source>
        self.prelude = prelude  # must define to_numpy(value) -> np.ndarray (``show`` uses it)
        self._base: dict[str, Any] | None = None
        self._code: dict[str, Any] = {}

    def base(self) -> dict[str, Any]:
        """The prelude's namespace, built once (this imports the framework)."""
        if self._base is None:
            ns: dict[str, Any] = {"__name__": f"<{self.name} source>"}
            exec(compile(self.prelude + "\n" + SHOW, f"<{self.name} prelude>", "exec"), ns)
            self._base = ns
        return self._base

    def helper(self, name: str) -> Any:
        """A function the prelude defines (``to_torch``), for the adapter's own use."""
        return self.base()[name]

    def run(self, lines: str | Sequence[str], ns: dict[str, Any] | None = None, **names: Any) -> dict[str, Any]:
        """Execute ``lines`` with the prelude's names and ``names`` bound; the namespace after.
        Given ``ns``, the text runs in that dict, so the caller holds what it bound even when
        it raised (a layer built before the call that failed, kept for the next)."""
        src = text(lines)
        code = self._code.get(src)
        if code is None:
            code = self._code[src] = compile(src, f"<{self.name} call>", "exec")
        ns = {} if ns is None else ns
        ns.update(self.base())
        ns.update(names)
        EXECUTED.add(src)
        exec(code, ns)
        return ns

    def handed_over(self, lines: str | Sequence[str]) -> str:
        """The text of a call that another process executes (the ranks of a distributed
        engine, an isolated child): recorded as executed when it is handed over."""
        src = text(lines)
        EXECUTED.add(src)
        return src

    def snippet(self, args: dict[str, str], lines: str | Sequence[str], tail: Sequence[str] = ("result = show('out', out)",),
                before: Sequence[str] = ()) -> str:
        """A stand-alone script: the prelude, ``show``, ``before`` (environment set-up a
        snippet needs ahead of its imports), the arguments (name = NumPy source), the
        call lines exactly as ``run`` executes them, and ``tail``."""
        src = text(lines)
        PRINTED.add(src)
        parts = [*before, self.prelude.rstrip("\n"), "", SHOW.rstrip("\n"), *(f"{k} = {v}" for k, v in args.items()),
                 src, *tail]
        return "\n".join(parts) + "\n"


def restated() -> list[str]:
    """Call texts a snippet printed that no adapter executed in this process."""
    return sorted(PRINTED - EXECUTED)
