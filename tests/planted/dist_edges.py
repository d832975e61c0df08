"""DTensor adapters whose ranks fail on purpose (tests/test_distributed.py): the rank pool's
own test hooks make rank 1 die (SIGKILL) or hang on the first negative id."""
from __future__ import annotations

import numpy as np

from embedding_conformance.adapters.torch.dtensor import DTensorEmbedding


class _Failing(DTensorEmbedding):
    hook = ""

    def __init__(self):
        super().__init__("Colwise", 2)
        self.name = f"edge.dtensor_rank_{self.hook}s"

    def lookup(self, table, ids):
        if ids.size and ids.dtype.kind == "i" and (ids < 0).any():
            self._ask((self.hook, 1))
        return super().lookup(table, ids)


class RankDies(_Failing):
    hook = "die"


class RankHangs(_Failing):
    hook = "hang"


def correct():
    return DTensorEmbedding("Colwise", 2)
