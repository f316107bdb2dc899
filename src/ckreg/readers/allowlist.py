"""The global allowlist: exact `(module, qualname)` pairs, in tiers (issue #2).

A global is safe only if its exact pair is listed. There is no prefix or
"suspicious but fine" rule: `torch.nn.modules.linear.Linear` is as unsafe as
`os.system` (a pickled module needs arbitrary class construction), and a
dotted qualname such as `('torch', '_utils._rebuild_tensor_v2')` is not the
pair `('torch._utils', '_rebuild_tensor_v2')` (protocol 4 resolves dotted names
through `getattr` chains, the trick behind several scanner bypasses).

Tiers
-----
- ``torch`` (always on): what `torch.load(weights_only=True)` accepts in
  torch 2.13 (`torch/_weights_only_unpickler.py:_get_allowed_globals`):
  OrderedDict/Counter, the `_rebuild_*` functions, storage and tensor type
  names, dtypes, quantization schemes, `torch.Size`, `torch.device`,
  `torch.nn.parameter.Parameter`, `_codecs.encode`, `builtins.bytearray`,
  `builtins.set`, `builtins.complex`.
- ``python``: `builtins.frozenset`, `builtins.bytes`, `builtins.slice`, `builtins.range`,
  `datetime` value types: pure value constructors.
- ``pathlib``: `pathlib.*Path` (Lightning stores `save_dir`/`data_dir`
  hyperparameters as paths).
- ``numpy``: numpy arrays, scalars and dtypes (`_reconstruct`, `scalar`,
  `dtype`, `ndarray` and the numpy 2 `numpy.dtypes.*DType` classes), which
  Lightning hyperparameters and sklearn scalers carry.
- ``omegaconf``: OmegaConf containers and nodes (Hydra configs saved as
  `hyper_parameters`), plus the `typing.Any` / builtin types their metadata
  names.
- ``lightning``: `AttributeDict` and `argparse.Namespace` hparams.

Default: all tiers are on (`DEFAULT_TIERS`). The opt-in tiers name value
types whose reconstruction runs no user code, and the benign Lightning
checkpoints we must not flag carry them; callers who want exactly the
`weights_only=True` contract pass `tiers=("torch",)`. The tier of every safe
global is reported in the finding-free `ReadResult.metadata["global_tiers"]`.
"""

from __future__ import annotations

from ckreg.readers.pickle_vm import canonical

_STORAGE_TYPES = (
    "BFloat16", "Bool", "Byte", "Char", "ComplexDouble", "ComplexFloat", "Double", "Float",
    "Half", "Int", "Long", "Short",
)
_QSTORAGE = ("QInt32", "QInt8", "QUInt2x4", "QUInt4x2", "QUInt8")
_TENSOR_TYPES = ("BFloat16", "Bool", "Byte", "Char", "Double", "Float", "Half", "Int", "Long", "Short")
_SPARSE_TENSOR_TYPES = ("BFloat16", "Byte", "Char", "Double", "Float", "Half", "Int", "Long", "Short")
_DTYPES = (
    "bfloat16", "bits16", "bits1x8", "bits2x4", "bits4x2", "bits8", "bool", "complex128", "complex32",
    "complex64", "float16", "float32", "float4_e2m1fn_x2", "float64", "float8_e4m3fn", "float8_e4m3fnuz",
    "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu", "int1", "int16", "int2", "int3", "int32", "int4",
    "int5", "int6", "int64", "int7", "int8", "qint32", "qint8", "quint2x4", "quint4x2", "quint8",
    "uint1", "uint16", "uint2", "uint3", "uint32", "uint4", "uint5", "uint6", "uint64", "uint7", "uint8",
)
_REBUILD = (
    "_rebuild_device_tensor_from_cpu_tensor", "_rebuild_device_tensor_from_numpy",
    "_rebuild_meta_tensor_no_storage", "_rebuild_nested_tensor", "_rebuild_parameter",
    "_rebuild_parameter_with_state", "_rebuild_qtensor", "_rebuild_sparse_tensor", "_rebuild_tensor",
    "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_wrapper_subclass",
)


def _torch_tier() -> frozenset[tuple[str, str]]:
    pairs = {
        ("collections", "OrderedDict"), ("collections", "Counter"),
        ("torch.nn.parameter", "Parameter"), ("torch.serialization", "_get_layout"),
        ("torch", "Size"), ("torch", "Tensor"), ("torch", "device"),
        ("_codecs", "encode"), ("builtins", "bytearray"), ("builtins", "set"), ("builtins", "complex"),
        ("torch.storage", "TypedStorage"), ("torch.storage", "UntypedStorage"),
        ("torch._tensor", "_rebuild_from_type_v2"),
    }
    for t in _STORAGE_TYPES:
        pairs.add(("torch", f"{t}Storage"))
        pairs.add(("torch.cuda", f"{t}Storage"))
    for t in _QSTORAGE:
        pairs.add(("torch", f"{t}Storage"))
    for t in _TENSOR_TYPES:
        pairs.add(("torch", f"{t}Tensor"))
        pairs.add(("torch.cuda", f"{t}Tensor"))
    for t in _SPARSE_TENSOR_TYPES:
        pairs.add(("torch.sparse", f"{t}Tensor"))
        pairs.add(("torch.cuda.sparse", f"{t}Tensor"))
    for d in _DTYPES:
        pairs.add(("torch", d))
    for q in ("per_tensor_affine", "per_tensor_symmetric", "per_channel_affine", "per_channel_symmetric",
              "per_channel_affine_float_qparams"):
        pairs.add(("torch", q))
    for f in _REBUILD:
        pairs.add(("torch._utils", f))
    return frozenset(pairs)


_NUMPY_DTYPE_CLASSES = (
    "BoolDType", "Int8DType", "UInt8DType", "Int16DType", "UInt16DType", "Int32DType", "UInt32DType",
    "Int64DType", "UInt64DType", "LongDType", "ULongDType", "LongLongDType", "ULongLongDType",
    "ByteDType", "UByteDType", "ShortDType", "UShortDType", "IntDType", "UIntDType",
    "Float16DType", "Float32DType", "Float64DType", "LongDoubleDType", "Complex64DType",
    "Complex128DType", "CLongDoubleDType", "StrDType", "BytesDType", "DateTime64DType",
    "TimeDelta64DType",
)

TIERS: dict[str, frozenset[tuple[str, str]]] = {
    "torch": _torch_tier(),
    "python": frozenset({
        ("builtins", "frozenset"), ("builtins", "slice"), ("builtins", "range"), ("builtins", "bytes"),
        ("datetime", "datetime"), ("datetime", "date"), ("datetime", "time"),
        ("datetime", "timedelta"), ("datetime", "timezone"),
    }),
    "pathlib": frozenset(
        (mod, cls)
        for mod in ("pathlib", "pathlib._local")
        for cls in ("Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath")
    ),
    "numpy": frozenset(
        {(mod, name) for mod in ("numpy.core.multiarray", "numpy._core.multiarray")
         for name in ("_reconstruct", "scalar")}
        | {(mod, "_frombuffer") for mod in ("numpy.core.numeric", "numpy._core.numeric")}
        | {("numpy", "ndarray"), ("numpy", "dtype")}
        | {("numpy.dtypes", cls) for cls in _NUMPY_DTYPE_CLASSES}
    ),
    "omegaconf": frozenset({
        ("omegaconf.dictconfig", "DictConfig"), ("omegaconf.listconfig", "ListConfig"),
        ("omegaconf.base", "ContainerMetadata"), ("omegaconf.base", "Metadata"),
        ("omegaconf.nodes", "AnyNode"), ("omegaconf.nodes", "StringNode"), ("omegaconf.nodes", "IntegerNode"),
        ("omegaconf.nodes", "FloatNode"), ("omegaconf.nodes", "BooleanNode"), ("omegaconf.nodes", "BytesNode"),
        ("omegaconf.nodes", "PathNode"), ("omegaconf.nodes", "ValueNode"),
        ("typing", "Any"),
        # ContainerMetadata.resolver_cache is a defaultdict(dict); its factory is a global judged on its own
        ("collections", "defaultdict"),
        # OmegaConf metadata names these builtin *types* (ref_type / object_type / key_type)
        ("builtins", "dict"), ("builtins", "list"), ("builtins", "str"), ("builtins", "int"),
        ("builtins", "float"), ("builtins", "bool"), ("builtins", "object"),
    }),
    "lightning": frozenset({
        ("lightning_fabric.utilities.data", "AttributeDict"),
        ("lightning.fabric.utilities.data", "AttributeDict"),
        ("pytorch_lightning.utilities.parsing", "AttributeDict"),
        ("lightning.pytorch.utilities.parsing", "AttributeDict"),
        ("argparse", "Namespace"),
    }),
}

# Scaler files only (`read_scaler_summary`): the estimator class and joblib's array wrapper. Not in
# DEFAULT_TIERS: a checkpoint that needs sklearn to load is not a weights file.
TIERS["scaler"] = frozenset({
    ("sklearn.preprocessing._data", "StandardScaler"),
    ("sklearn.preprocessing.data", "StandardScaler"),     # scikit-learn < 0.22
    ("joblib.numpy_pickle", "NumpyArrayWrapper"),
    ("sklearn.externals.joblib.numpy_pickle", "NumpyArrayWrapper"),
})

DEFAULT_TIERS: tuple[str, ...] = ("torch", "python", "pathlib", "numpy", "omegaconf", "lightning")
SCALER_TIERS: tuple[str, ...] = DEFAULT_TIERS + ("scaler",)
WEIGHTS_ONLY: tuple[str, ...] = ("torch",)


def scaler_tiers(tiers: tuple[str, ...] | None) -> tuple[str, ...]:
    """The tiers a scaler pickle is judged by when checkpoints are judged by `tiers`.

    A scaler is never loaded by `torch.load`, so the weights_only contract
    (`--strict`) does not describe it: any scaler pickle builds its arrays with
    numpy's constructors, which ckreg's scaler loader (`ckreg.scaler.load_scaler`,
    a restricted unpickler) needs too. Judging scalers by the torch tier alone
    would flag every `scaler.pkl` ever written, so strict mode keeps the numpy
    and scaler tiers for scalers and nothing more.
    """
    if tiers is None:
        return SCALER_TIERS
    return tuple(dict.fromkeys(tuple(tiers) + ("numpy", "scaler")))


def tier_of(module: str, name: str, tiers: tuple[str, ...] = DEFAULT_TIERS) -> str | None:
    """The tier that allows `module.name` exactly (after Python-2 module renames), or None: unsafe."""
    pair = canonical(module, name)
    for tier in tiers:
        if pair in TIERS[tier]:
            return tier
    return None


def is_allowed(module: str, name: str, tiers: tuple[str, ...] = DEFAULT_TIERS) -> bool:
    return tier_of(module, name, tiers) is not None
