"""Adapters that exercise the suite's own edges (not realistic bugs: broken plugins)."""
from __future__ import annotations

import os
import time

from adapters import oracle


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
