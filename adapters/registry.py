"""Built-in adapters as data: name, factory, distributions, and the process they run in.

Nothing here imports a framework. A built-in's ``group`` names the worker process
that hosts it (one per framework, one per Keras backend, since Keras fixes its
backend per process); ``env`` is set in that process before anything is imported.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Builtin:
    name: str
    factory: str  # "module:attr", a zero-argument callable returning the adapter
    imports: tuple[str, ...]  # top-level modules that must be importable
    distributions: tuple[str, ...]  # reported versions, first is `framework`
    group: str | None = None  # worker process key; None runs in the pytest process
    env: tuple[tuple[str, str], ...] = ()
    pip: dict = field(default_factory=dict, hash=False, compare=False)  # distribution -> what to pip install

    @property
    def framework(self) -> str:
        return self.distributions[0]

    @property
    def module(self) -> str:
        return self.factory.partition(":")[0]

    def describe(self):
        """What the adapter offers (``adapters.contract.Description``), read from its
        module's ``describe(name)`` without importing its framework."""
        return adapter_module(self.module).describe(self.name)

    def missing(self) -> str | None:
        """Why this adapter cannot run here (no framework import happens), or None."""
        for mod in self.imports:
            if importlib.util.find_spec(mod) is None:
                # the distribution of that module where it is one of ours, else the framework's
                dist = next((d for d in self.distributions if d.replace("-", "_") == mod), self.distributions[0])
                return f"{mod} is not installed (pip install {self.pip.get(dist, dist)})"
        return None


def _keras(backend: str, suffix: str = "", attr: str = "embedding") -> Builtin:
    dists = {"tensorflow": ("tensorflow",), "torch": ("torch",), "jax": ("jax", "jaxlib")}[backend]
    imports = {"tensorflow": "tensorflow", "torch": "torch", "jax": "jax"}[backend]
    return Builtin(
        f"keras.layers.Embedding[{backend}]{suffix}",
        f"embedding_conformance.adapters.keras.embedding:{attr}",
        ("keras", imports),
        ("keras", *dists),
        group=f"keras-{backend}",
        env=(("KERAS_BACKEND", backend),),
    )



def _b(name: str, factory: str, imports: tuple[str, ...], dists: tuple[str, ...], group: str) -> Builtin:
    return Builtin(name, factory, imports, dists, group)


TF = ("tensorflow",)
TF_DISTS = ("tensorflow", "tensorflow-cpu")
TFK = ("tf_keras", "tensorflow")
TFK_DISTS = ("tf-keras", *TF_DISTS)
JAX_DISTS = ("jax", "jaxlib")
ONNX_TORCH = ("onnx", "onnxscript", "torch")  # torch.onnx.export(dynamo=True) needs onnxscript
TF2ONNX = ("onnx", "tf2onnx", "tensorflow")
MLX_DISTS = ("mlx", "mlx-cpu")
MLX_PIP = {"mlx": "'mlx[cpu]'"}  # on Linux the CPU backend is an extra
XLA_FOUR_DEVICES = "--xla_force_host_platform_device_count=4"  # four CPU devices for the sharded JAX adapters

BUILTINS: tuple[Builtin, ...] = (
    Builtin("numpy", "embedding_conformance.adapters.numpy.oracle_column:NumpyAdapter", ("numpy",), ("numpy",)),
    # torch: eager, compiled, and the sparse-gradient layer
    _b("torch.nn.Embedding", "embedding_conformance.adapters.torch.embedding:nn_embedding", ("torch",), ("torch",), "torch"),
    _b("torch.nn.Embedding[sparse]", "embedding_conformance.adapters.torch.embedding:nn_embedding_sparse", ("torch",), ("torch",), "torch"),
    _b("torch.nn.functional.embedding", "embedding_conformance.adapters.torch.embedding:functional_embedding", ("torch",), ("torch",), "torch"),
    _b("torch.nn.functional.embedding[compile]", "embedding_conformance.adapters.torch.embedding:functional_embedding_compile", ("torch",), ("torch",), "torch"),
    # TensorFlow: eager, tf.function, XLA; TF1-style partitioned lookup; sharded variables
    _b("tf.nn.embedding_lookup", "embedding_conformance.adapters.tensorflow.embedding_lookup:embedding_lookup", TF, TF_DISTS, "tensorflow"),
    _b("tf.nn.embedding_lookup[function]", "embedding_conformance.adapters.tensorflow.embedding_lookup:embedding_lookup_function", TF, TF_DISTS, "tensorflow"),
    _b("tf.nn.embedding_lookup[xla]", "embedding_conformance.adapters.tensorflow.embedding_lookup:embedding_lookup_xla", TF, TF_DISTS, "tensorflow"),
    _b("tf.compat.v1.nn.embedding_lookup", "embedding_conformance.adapters.tensorflow.embedding_lookup:compat_v1_embedding_lookup", TF, TF_DISTS, "tensorflow"),
    _b("tf.distribute.ShardedVariable", "embedding_conformance.adapters.tensorflow.embedding_lookup:sharded_variable", TF, TF_DISTS, "tensorflow"),
    _b("tf.distribute.ShardedVariable[function]", "embedding_conformance.adapters.tensorflow.embedding_lookup:sharded_variable_function", TF, TF_DISTS, "tensorflow"),
    # Keras 3, one process per backend; [predict] and [jit] drive a keras.Model
    *(
        _keras(backend, suffix, attr)
        for backend in ("tensorflow", "torch", "jax")
        for suffix, attr in (("", "embedding"), ("[predict]", "model_predict"), ("[jit]", "model_predict_jit"))
    ),
    _b("tf_keras.layers.Embedding", "embedding_conformance.adapters.keras.tf_keras:embedding", TFK, TFK_DISTS, "tensorflow"),
    _b("tf_keras.layers.Embedding[one_hot]", "embedding_conformance.adapters.keras.tf_keras:embedding_one_hot", TFK, TFK_DISTS, "tensorflow"),
    # JAX: eager and jitted take, and Flax's layer
    _b("jax.numpy.take", "embedding_conformance.adapters.jax.take:take", ("jax",), JAX_DISTS, "jax"),
    _b("jax.numpy.take[jit]", "embedding_conformance.adapters.jax.take:take_jit", ("jax",), JAX_DISTS, "jax"),
    _b("flax.nnx.Embed", "embedding_conformance.adapters.jax.flax_embed:nnx_embed", ("flax", "jax"), ("flax", *JAX_DISTS), "jax"),
    # sharded lookups on distributed engines, run for real: DTensor over gloo ranks (a pool of
    # rank processes the group's worker starts once), JAX and Keras over four host devices
    *(_b(f"torch.distributed.tensor.parallel.{style}Parallel[{n}-rank]", f"embedding_conformance.adapters.torch.dtensor:{style.lower()}_{n}",
         ("torch",), ("torch",), "torch-distributed") for style in ("Rowwise", "Colwise") for n in (2, 3)),
    *(Builtin(f"{api}[NamedSharding-{axis}]", f"embedding_conformance.adapters.jax.named_sharding:{attr}_{axis}", imports, dists,
              group="jax-sharded", env=(("XLA_FLAGS", XLA_FOUR_DEVICES),))
      for api, attr, imports, dists in (("jax.numpy.take", "take", ("jax",), JAX_DISTS),
                                        ("flax.nnx.Embed", "nnx", ("flax", "jax"), ("flax", *JAX_DISTS)))
      for axis in ("rows", "cols")),
    *(Builtin(f"keras.layers.Embedding[jax][ModelParallel-{axis}]", f"embedding_conformance.adapters.keras.model_parallel:model_parallel_{axis}",
              ("keras", "jax"), ("keras", *JAX_DISTS), group="keras-jax-sharded",
              env=(("KERAS_BACKEND", "jax"), ("XLA_FLAGS", XLA_FOUR_DEVICES))) for axis in ("rows", "cols")),
    # pooled lookups (bags, suites/test_bag.py): torch eager and compiled, TensorFlow's sparse
    # lookups, keras-rs on its TensorFlow backend, TorchRec (fbgemm's ops in a process of their own)
    _b("torch.nn.functional.embedding_bag", "embedding_conformance.adapters.torch.embedding_bag:functional_embedding_bag", ("torch",),
       ("torch",), "torch"),
    _b("torch.nn.EmbeddingBag", "embedding_conformance.adapters.torch.embedding_bag:nn_embedding_bag", ("torch",), ("torch",), "torch"),
    _b("torch.nn.functional.embedding_bag[compile]", "embedding_conformance.adapters.torch.embedding_bag:functional_embedding_bag_compile",
       ("torch",), ("torch",), "torch"),
    _b("torch.nn.functional.embedding_bag[2d]", "embedding_conformance.adapters.torch.embedding_bag:functional_embedding_bag_2d", ("torch",),
       ("torch",), "torch"),
    _b("tf.nn.embedding_lookup_sparse", "embedding_conformance.adapters.tensorflow.sparse:embedding_lookup_sparse", TF, TF_DISTS, "tensorflow"),
    _b("tf.nn.safe_embedding_lookup_sparse", "embedding_conformance.adapters.tensorflow.sparse:safe_embedding_lookup_sparse", TF, TF_DISTS,
       "tensorflow"),
    _b("tf.nn.safe_embedding_lookup_sparse[default_id]", "embedding_conformance.adapters.tensorflow.sparse:safe_embedding_lookup_sparse_default_id",
       TF, TF_DISTS, "tensorflow"),
    Builtin("keras_rs.layers.DistributedEmbedding[tensorflow]", "embedding_conformance.adapters.keras.keras_rs:distributed_embedding",
            ("keras_rs", "keras", "tensorflow"), ("keras-rs", "keras", "tensorflow"), group="keras-tensorflow",
            env=(("KERAS_BACKEND", "tensorflow"),)),
    _b("torchrec.EmbeddingBagCollection", "embedding_conformance.adapters.torchrec.embedding_bag_collection:embedding_bag_collection",
       ("torchrec", "fbgemm_gpu", "torch"), ("torchrec", "fbgemm-gpu-cpu", "torch"), "torchrec"),
    # deployment runtimes: ONNX (exported by torch.onnx or tf2onnx), OpenVINO, MLX, the array API, NumPy's own
    _b("onnxruntime[torch.onnx]", "embedding_conformance.adapters.onnx.exports:onnxruntime_torch", ONNX_TORCH + ("onnxruntime",),
       ("onnxruntime", "onnx", "onnxscript", "torch"), "onnx"),
    _b("onnx.reference[torch.onnx]", "embedding_conformance.adapters.onnx.exports:reference_torch", ONNX_TORCH,
       ("onnx", "onnxscript", "torch"), "onnx"),
    _b("onnxruntime[tf2onnx]", "embedding_conformance.adapters.onnx.exports:onnxruntime_tf2onnx", TF2ONNX + ("onnxruntime",),
       ("onnxruntime", "tf2onnx", "onnx", "tensorflow"), "tf2onnx"),
    _b("onnx.reference[tf2onnx]", "embedding_conformance.adapters.onnx.exports:reference_tf2onnx", TF2ONNX,
       ("onnx", "tf2onnx", "tensorflow"), "tf2onnx"),
    # the onnx worker: it shares the torch.onnx exports (1.6 s each, ~90 a run); OpenVINO
    # itself runs in a child process of that worker (adapters/toolkit/isolation.py)
    _b("openvino[torch.onnx]", "embedding_conformance.adapters.openvino.cpu_plugin:openvino_torch", ("openvino",) + ONNX_TORCH,
       ("openvino", "onnx", "onnxscript", "torch"), "onnx"),
    # the same with the CPU plugin's documented f32 inference precision hint (its default is bfloat16
    # on a CPU with native bfloat16)
    _b("openvino[torch.onnx][f32]", "embedding_conformance.adapters.openvino.cpu_plugin:openvino_torch_f32",
       ("openvino",) + ONNX_TORCH, ("openvino", "onnx", "onnxscript", "torch"), "onnx"),
    Builtin("mlx.core.take", "embedding_conformance.adapters.mlx.take:take", ("mlx",), MLX_DISTS, "mlx", pip=MLX_PIP),
    Builtin("mlx.nn.Embedding", "embedding_conformance.adapters.mlx.take:embedding", ("mlx",), MLX_DISTS, "mlx", pip=MLX_PIP),
    _b("array_api_strict.take", "embedding_conformance.adapters.array_api.take:take", ("array_api_strict",), ("array-api-strict",),
       "array_api_strict"),
    # NumPy's own indexing; the `numpy` column above is the oracle's self-check
    Builtin("numpy.take", "embedding_conformance.adapters.numpy.take:numpy_take", ("numpy",), ("numpy",)),
)

BY_NAME = {b.name: b for b in BUILTINS}


def select(spec: str | None) -> list[Builtin]:
    """Built-ins named by ``--adapters``: exact names, or prefixes selecting a family
    (``keras``, ``tf``, ``torch.nn``, ``[xla]`` style suffixes too); a token starting
    with ``-`` removes what it names (``torch,-[compile]``). ValueError names the
    valid choices on an unknown one."""
    if not spec:
        return list(BUILTINS)
    tokens = [t.strip() for t in spec.split(",") if t.strip()]
    chosen: list[Builtin] = [] if any(not t.startswith("-") for t in tokens) else list(BUILTINS)
    for token in tokens:
        drop = token.startswith("-")
        name = token[1:] if drop else token
        hits = [b for b in BUILTINS if _matches(b.name, name)]
        if not hits:
            valid = ", ".join(b.name for b in BUILTINS)
            raise ValueError(f"unknown adapter {name!r}; valid adapters (or a prefix of one, '-' to exclude): {valid}")
        if drop:
            chosen = [b for b in chosen if b not in hits]
        else:
            chosen += [b for b in hits if b not in chosen]
    return chosen


def _matches(name: str, token: str) -> bool:
    if name == token:
        return True
    if token.startswith("["):  # a mode or backend family: "[xla]", "[jax]"
        return token in name
    if token in BY_NAME:
        # an adapter's own name selects it and its variants (torch.nn.Embedding[sparse]), not
        # another API that extends the name (numpy selects the oracle, not numpy.take)
        return name.startswith(token + "[")
    # a prefix ends at a boundary, so "tf" selects "tf.nn..." and "tf_keras...", not "tfx"
    return name.startswith(token) and (token.endswith((".", "_", "[")) or name[len(token)] in "._[")


def versions(distributions: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for dist in distributions:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


_CHECKED: dict[str, object] = {}


def adapter_module(name: str):
    """A built-in adapter module, imported (its framework is not) and held to the module
    protocol (adapters/contract.py, MODULE_PROTOCOL) with every factory BUILTINS names in
    it, once per process: a module that departs from it fails loudly here."""
    if name not in _CHECKED:
        from .contract import check_module

        module = importlib.import_module(name)
        check_module(module, tuple(b.factory.partition(":")[2] for b in BUILTINS if b.module == name))
        _CHECKED[name] = module
    return _CHECKED[name]


def load_object(spec: str):
    """Import ``module:attr``; call it if it is a class or a zero-argument factory."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"adapter spec {spec!r} is not of the form MODULE:ATTR")
    obj = adapter_module(module_name) if module_name in {b.module for b in BUILTINS} else importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "lookup")):
        obj = obj()
    return obj


# A framework's own behaviour model steps live in its folder and register themselves with
# the specification's (adapters/spec/steps.py): every process that reads a model imports
# this registry, and so them.
STEP_MODULES = tuple(f"embedding_conformance.adapters.{p.parent.name}.steps"
                     for p in sorted(Path(__file__).parent.glob("*/steps.py")) if p.parent.name != "spec")
for _module in STEP_MODULES:
    importlib.import_module(_module)
