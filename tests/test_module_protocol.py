"""The adapter module protocol (adapters/contract.py, MODULE_PROTOCOL): every built-in
module follows it, and the registry refuses one that does not, naming what is wrong."""
from __future__ import annotations

import types

import pytest

from embedding_conformance.adapters import registry
from embedding_conformance.adapters.contract import MODULE_PROTOCOL, Call, Description, check_module


def test_every_builtin_module_follows_the_protocol():
    modules = {b.module for b in registry.BUILTINS}
    for name in sorted(modules):
        module = registry.adapter_module(name)  # imports no framework
        for fn, params in MODULE_PROTOCOL.items():
            assert callable(getattr(module, fn)), (name, fn)
    assert len(modules) >= 15


def _module(**attrs) -> types.ModuleType:
    m = types.ModuleType("someone.adapters.thing")
    for k, v in attrs.items():
        setattr(m, k, v)
    return m


def test_a_module_with_another_classify_signature_is_refused():
    def describe(name):
        return Description((), None)

    def classify(exc, ids_dtype=None):  # the old, per-module signature
        return None

    with pytest.raises(TypeError) as info:
        check_module(_module(describe=describe, classify=classify), ("make",))
    msg = str(info.value)
    assert "classify takes (exc, ids_dtype), the protocol (exc, call)" in msg
    assert "no factory make" in msg and "MODULE_PROTOCOL" in msg


def test_a_module_without_describe_is_refused():
    with pytest.raises(TypeError, match=r"no describe\('name',\)"):
        check_module(_module(classify=lambda exc, call: None))


def test_call_gives_the_ids_dtype_only_for_arrays():
    import numpy as np

    assert Call(np.zeros(2, np.int16)).ids_dtype == np.int16
    assert Call(None).ids_dtype is None and Call([1, 2]).ids_dtype is None
    assert Call(sharded=True).sharded
