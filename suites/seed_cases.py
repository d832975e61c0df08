"""The worked examples of shared/seed-examples.md as data: inputs and the
expected result written out literally (or the failure kind), so the examples
themselves, not the oracle, say what is right."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SeedCase:
    name: str
    table: np.ndarray
    ids: np.ndarray
    expected: np.ndarray | str  # rows, or a failure kind


@dataclass(frozen=True)
class ShardedSeedCase:
    name: str
    shards: tuple[np.ndarray, ...]
    ids: np.ndarray
    strategy: str
    expected: np.ndarray | str


def _f32(x) -> np.ndarray:
    return np.array(x, dtype=np.float32)


_W5x10 = np.arange(50, dtype=np.float32).reshape(5, 10) / 4  # any weights: E1 is about selection
_TORCH_W = _f32([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [11, 12, 13, 14, 15]])
_TF_PARAMS = _f32([10, 20, 30, 40])
_MATRIX = np.arange(1024 * 64, dtype=np.float32).reshape(1024, 64)
_WORDS = "the like between did just national day country under such second".split()
_WORD_TABLE = np.arange(11 * 8, dtype=np.float32).reshape(11, 8) + 0.5
_RANK3 = _f32([[[i + 10 * b, i + 10 * b]] * 1 for b in range(3) for i in range(1, 5)]).reshape(3, 4, 2)

E1 = [
    SeedCase("E1 input [0,1,1,4,4] selects those rows", _W5x10, np.array([[0, 1, 1, 4, 4]]),
             np.stack([_W5x10[[0, 1, 1, 4, 4]]])),
    SeedCase("E1 input_dim=5: id 5 is not valid", _W5x10, np.array([[0, 5]]), "out_of_range"),
]
E2 = [
    SeedCase("E2 0-d input tensor(1) gives weight[1]", _TORCH_W, np.array(1), _f32([6, 7, 8, 9, 10])),
    SeedCase("E2 input [[0],[1],[2]] gives shape (3, 1, 5)", _TORCH_W, np.array([[0], [1], [2]]),
             _f32([[[1, 2, 3, 4, 5]], [[6, 7, 8, 9, 10]], [[11, 12, 13, 14, 15]]])),
    SeedCase("E2 input [0]", _TORCH_W, np.array([0]), _f32([[1, 2, 3, 4, 5]])),
    SeedCase("E2 input [1]", _TORCH_W, np.array([1]), _f32([[6, 7, 8, 9, 10]])),
    SeedCase("E2 id >= num_embeddings is out of range", _TORCH_W, np.array([3]), "out_of_range"),
]
E3 = [
    SeedCase("E3 params [10,20,30,40], ids [0,1,2,3]", _TF_PARAMS, np.array([0, 1, 2, 3]), _f32([10, 20, 30, 40])),
    SeedCase("E3 params [10,20,30,40], ids [1,1,3]", _TF_PARAMS, np.array([1, 1, 3]), _f32([20, 20, 40])),
    SeedCase("E3 matrix (1024, 64), ids [0,5,17,33]", _MATRIX, np.array([0, 5, 17, 33]),
             np.stack([_MATRIX[0], _MATRIX[5], _MATRIX[17], _MATRIX[33]])),
    SeedCase("E3 'like the country' -> ids [1, 0, 7]", _WORD_TABLE,
             np.array([_WORDS.index(w) for w in "like the country".split()]),
             np.stack([_WORD_TABLE[1], _WORD_TABLE[0], _WORD_TABLE[7]])),
    SeedCase("E3 rank-3 params, ids [0, 2, 1] return blocks 0, 2, 1", _RANK3, np.array([0, 2, 1]),
             _f32([[[1, 1], [2, 2], [3, 3], [4, 4]], [[21, 21], [22, 22], [23, 23], [24, 24]],
                   [[11, 11], [12, 12], [13, 13], [14, 14]]])),
]
_E5_TABLE = np.arange(64 * 100, dtype=np.float32).reshape(64, 100)
_E5_SENT = np.arange(5 * 100, dtype=np.float32).reshape(5, 100) - 7
_E5_ENC = np.ones((7842, 128), dtype=np.float32)
E5 = [
    SeedCase("E5 [[3, 57, 35]] through Embedding(64, 100) gives (1, 3, 100)", _E5_TABLE, np.array([[3, 57, 35]]),
             np.stack([np.stack([_E5_TABLE[3], _E5_TABLE[57], _E5_TABLE[35]])])),
    SeedCase("E5 'What time is it ?' -> [[2, 3, 0, 1, 4]] gives (1, 5, 100)", _E5_SENT, np.array([[2, 3, 0, 1, 4]]),
             np.stack([np.stack([_E5_SENT[2], _E5_SENT[3], _E5_SENT[0], _E5_SENT[1], _E5_SENT[4]])])),
    SeedCase("E5 encoder Embedding(7842, 128) on length 95 gives (1, 95, 128)", _E5_ENC,
             np.arange(95).reshape(1, 95) * 80, np.ones((1, 95, 128), dtype=np.float32)),
]

_TWO = (_f32([1, 2]), _f32([10, 20]))
_THREE_64 = tuple(np.stack([np.full(64, k, np.float32), np.full(64, k + 3, np.float32)]) for k in range(3))
_THREE = (_f32([1, 2, 3]), _f32([4, 5, 6]), _f32([7, 8, 9]))
E4 = [
    ShardedSeedCase("E4 'mod': [[1, 2], [10, 20]], ids [2, 0, 2, 1, 2, 3]", _TWO, np.array([2, 0, 2, 1, 2, 3]), "mod",
                    _f32([2, 1, 2, 10, 2, 20])),
    ShardedSeedCase("E4 'mod': three (2, 64) shards, shard k holds ids k and k + 3", _THREE_64,
                    np.array([0, 1, 2, 3, 4, 5]), "mod", np.stack([np.full(64, i, np.float32) for i in range(6)])),
    ShardedSeedCase("E4 'mod': shards [1,2,3], [4,5,6], [7,8,9] read as [1,4,7,2,5,8,3,6,9]; ids [0,3,4,1,7]",
                    _THREE, np.array([0, 3, 4, 1, 7]), "mod", _f32([1, 2, 5, 4, 6])),
    ShardedSeedCase("E4 'div' (the TF2 API's routing): [[1, 2], [10, 20]], ids [2, 0, 2, 1, 2, 3]", _TWO,
                    np.array([2, 0, 2, 1, 2, 3]), "div", _f32([10, 1, 10, 2, 10, 20])),
]
