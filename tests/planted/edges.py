"""Adapters that exercise the suite's own edges (not realistic bugs: broken plugins)."""
from __future__ import annotations

import os
import time

from embedding_conformance.adapters.spec import oracle

from .faults import WrapsNegativeIds


def factory_that_raises():
    raise RuntimeError("cannot open the device")


class RaisesUnclassified:
    name = "edge.unclassified"
    framework = "numpy"

    def lookup(self, table, ids):
        if ids.size and (ids.astype("int64") < 0).any():
            raise RuntimeError("kernel failed")  # neither an OutOfRange nor any contract class
        return oracle.lookup(table, ids)


class Crashes:
    name = "edge.crashes"
    framework = "numpy"

    def lookup(self, table, ids):
        os._exit(3)  # the process dies, as a segfaulting kernel would


class CrashesOnNegativeIds:
    """Aborts the process on a negative id, as a kernel's failed assertion does."""
    name = "edge.crashes_on_negative"
    framework = "numpy"

    def lookup(self, table, ids):
        if ids.size and ids.dtype.kind == "i" and (ids < 0).any():
            os.abort()
        return oracle.lookup(table, ids)


class Hangs:
    name = "edge.hangs"
    framework = "numpy"

    def lookup(self, table, ids):
        time.sleep(3600)


class Correct:
    name = "edge.correct"
    framework = "numpy"

    def lookup(self, table, ids):
        return oracle.lookup(table, ids)


class WrapsNegativeWhenThreaded:
    """Wraps negative ids (Python indexing) only when its process runs several
    threads, as a parallel kernel may; reports the thread count from EDGE_THREADS."""
    name = "edge.wraps_when_threaded"
    framework = "numpy"

    def environment(self):
        return {"edge.threads": int(os.environ.get("EDGE_THREADS", "1"))}

    def lookup(self, table, ids):
        if self.environment()["edge.threads"] >= 2:
            return WrapsNegativeIds().lookup(table, ids)
        return oracle.lookup(table, ids)
