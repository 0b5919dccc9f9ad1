""".iqm files: a NumPy ``.npz`` without pickles plus a JSON manifest (``docs/intgraph.md``).

``load`` trusts nothing in the file: every array is cross-checked against the manifest, then
the whole graph is validated before it is returned.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import zipfile
from typing import Any

import numpy as np

from .limits import DEFAULT_LIMITS, Limits
from .types import IntGraph, IntGraphError, Op, TensorInfo

FORMAT_NAME = "intquant.intgraph"
# 2: conv / fully_connected weights may be packed (attrs weight_format, weight_shape; a uint8
# const). Version 1 files (every weight an int8/int16 array) still load.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MANIFEST_KEY = "__manifest__"


def _manifest(graph: IntGraph) -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "tensors": [
            {
                "name": t.name,
                "shape": list(t.shape),
                "dtype": t.dtype,
                "scale": float(t.scale),
                "zero_point": int(t.zero_point),
            }
            for t in graph.tensors.values()
        ],
        "ops": [
            {
                "name": op.name,
                "kind": op.kind,
                "inputs": list(op.inputs),
                "output": op.output,
                "attrs": _jsonable_attrs(op.attrs),
                "consts": {
                    k: {"dtype": a.dtype.name, "shape": list(a.shape)} for k, a in op.consts.items()
                },
            }
            for op in graph.ops
        ],
        "input": graph.input,
        "output": graph.output,
        "meta": graph.meta,
    }


def _jsonable_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        if isinstance(v, list | tuple):
            out[k] = [int(e) for e in v]
        elif isinstance(v, np.integer):
            out[k] = int(v)
        else:
            out[k] = v
    return out


def save(graph: IntGraph, path: str | os.PathLike, limits: Limits | None = None) -> None:
    """Validate, then write ``graph`` to ``path`` atomically (temp file + os.replace)."""
    graph.validate(limits)
    arrays: dict[str, np.ndarray] = {
        f"{i}/{k}": np.ascontiguousarray(a)
        for i, op in enumerate(graph.ops)
        for k, a in op.consts.items()
    }
    manifest = json.dumps(_manifest(graph), sort_keys=True).encode("utf-8")
    arrays[MANIFEST_KEY] = np.frombuffer(manifest, dtype=np.uint8)
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".iqm", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp made it 0600: follow the umask
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def load(path: str | os.PathLike, limits: Limits | None = None) -> IntGraph:
    """Read and validate an ``.iqm`` file; any malformation raises IntGraphError naming it.

    Sizes are checked before anything is read: the archive's member count and declared sizes,
    then each array's header (shape, dtype) against the bytes it holds and the ``limits``, so
    a small hostile file cannot make this allocate more than the limits allow.
    """
    path = os.fspath(path)
    limits = limits or DEFAULT_LIMITS
    try:
        arrays = _read_arrays(path, limits)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise IntGraphError(
            f"{path}: not a readable .iqm file (truncated or not an npz archive): {e}"
        ) from e
    if MANIFEST_KEY not in arrays:
        raise IntGraphError(f"{path}: missing key '{MANIFEST_KEY}' (not an IntGraph file)")
    raw = arrays.pop(MANIFEST_KEY)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise IntGraphError(f"{path}: '{MANIFEST_KEY}' must be a 1-D uint8 array")
    try:
        manifest = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise IntGraphError(f"{path}: manifest is not valid UTF-8 JSON: {e}") from e
    graph = _graph_from_manifest(path, manifest, arrays)
    try:
        graph.validate(limits)
    except IntGraphError as e:
        raise IntGraphError(f"{path}: {e}") from e
    return graph


def _read_arrays(path: str, limits: Limits) -> dict[str, np.ndarray]:
    """The arrays of an .npz archive, read without pickles and within ``limits``."""
    budget = limits.max_const_bytes + limits.max_manifest_bytes
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if len(infos) > 8 * limits.max_ops + 1:
            raise ValueError(f"{len(infos)} arrays in the archive, above the limits")
        declared = sum(info.file_size for info in infos)
        if declared > budget + 128 * len(infos):
            raise ValueError(
                f"the archive declares {declared} bytes of arrays, above the limits "
                f"(intgraph.Limits.max_const_bytes = {limits.max_const_bytes})"
            )
        arrays: dict[str, np.ndarray] = {}
        for info in infos:
            if not info.filename.endswith(".npy"):
                raise ValueError(f"archive member {info.filename!r} is not a .npy array")
            key = info.filename[: -len(".npy")]
            if key in arrays:
                raise ValueError(f"archive member {info.filename!r} appears twice")
            with zf.open(info) as fp:
                arrays[key] = _read_npy(fp, info, limits)
    return arrays


def _read_npy(fp: Any, info: zipfile.ZipInfo, limits: Limits) -> np.ndarray:
    """One .npy member: the header's shape and dtype must account for exactly its bytes."""
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
    else:
        raise ValueError(f"{info.filename}: unsupported .npy version {version}")
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in "iufb":
        # (non-integer numbers are read so that the manifest check can name the const)
        raise ValueError(f"{info.filename}: dtype {dtype} is not a plain numeric array")
    if len(shape) > 8 or any(int(n) < 0 for n in shape):
        raise ValueError(f"{info.filename}: shape {shape[:9]} is not a valid array shape")
    nbytes = math.prod(int(n) for n in shape) * dtype.itemsize
    if nbytes > info.file_size or nbytes > limits.max_const_bytes + limits.max_manifest_bytes:
        raise ValueError(
            f"{info.filename}: header declares {nbytes} bytes, the member holds {info.file_size}"
        )
    data = fp.read(nbytes)
    if len(data) != nbytes:
        raise ValueError(f"{info.filename}: truncated ({len(data)} of {nbytes} bytes)")
    order = "F" if fortran else "C"
    return np.frombuffer(data, dtype=dtype).reshape(shape, order=order).copy()


def _field(where: str, obj: Any, key: str, types: type | tuple[type, ...]) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise IntGraphError(f"{where}: missing key '{key}'")
    v = obj[key]
    if not isinstance(v, types) or isinstance(v, bool):  # JSON true/false are not integers
        raise IntGraphError(f"{where}: key '{key}' has type {type(v).__name__}")
    return v


def _graph_from_manifest(path: str, m: Any, arrays: dict[str, np.ndarray]) -> IntGraph:
    where = f"{path}: manifest"
    if not isinstance(m, dict):
        raise IntGraphError(f"{where} must be a JSON object")
    if m.get("format") != FORMAT_NAME:
        raise IntGraphError(
            f"{where}: key 'format' must be {FORMAT_NAME!r}, got {m.get('format')!r}"
        )
    version = m.get("version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise IntGraphError(
            f"{where}: key 'version' = {version!r}; this reader understands versions "
            f"{list(READABLE_VERSIONS)}"
        )
    tensors: dict[str, TensorInfo] = {}
    for j, t in enumerate(_field(where, m, "tensors", list)):
        tw = f"{where} tensors[{j}]"
        name = _field(tw, t, "name", str)
        shape = _field(tw, t, "shape", list)
        if any(isinstance(s, bool) or not isinstance(s, int) for s in shape):
            raise IntGraphError(f"{tw}: key 'shape' must be a list of integers, got {shape}")
        scale = _field(tw, t, "scale", (float, int))
        if name in tensors:
            raise IntGraphError(f"{tw}: duplicate tensor name {name!r}")
        tensors[name] = TensorInfo(
            name=name,
            shape=tuple(shape),
            dtype=_field(tw, t, "dtype", str),
            scale=float(scale),
            zero_point=_field(tw, t, "zero_point", int),
        )
    ops: list[Op] = []
    used: set[str] = set()
    for i, o in enumerate(_field(where, m, "ops", list)):
        ow = f"{where} ops[{i}]"
        inputs = _field(ow, o, "inputs", list)
        if any(not isinstance(s, str) for s in inputs):
            raise IntGraphError(f"{ow}: key 'inputs' must be a list of tensor names")
        consts: dict[str, np.ndarray] = {}
        for cname, spec in _field(ow, o, "consts", dict).items():
            key = f"{i}/{cname}"
            if key not in arrays:
                raise IntGraphError(f"{ow}: const '{cname}' is missing from the archive ({key})")
            a = arrays[key]
            used.add(key)
            cw = f"{ow} const '{cname}'"
            if a.dtype.kind not in "iu":
                raise IntGraphError(f"{cw}: stored dtype {a.dtype.name}; consts must be integers")
            if _field(cw, spec, "dtype", str) != a.dtype.name or _field(
                cw, spec, "shape", list
            ) != list(a.shape):
                raise IntGraphError(
                    f"{cw}: stored array {a.dtype.name}{list(a.shape)} does not match the "
                    f"manifest {spec.get('dtype')}{spec.get('shape')} (hand-edited file?)"
                )
            consts[cname] = a
        attrs = _field(ow, o, "attrs", dict)
        if version < 2 and "weight_format" in attrs:
            raise IntGraphError(f"{ow}: packed weights (attr 'weight_format') need version 2")
        ops.append(
            Op(
                name=_field(ow, o, "name", str),
                kind=_field(ow, o, "kind", str),
                inputs=list(inputs),
                output=_field(ow, o, "output", str),
                attrs=attrs,
                consts=consts,
            )
        )
    extra = sorted(set(arrays) - used)
    if extra:
        raise IntGraphError(f"{path}: archive holds arrays not named in the manifest: {extra}")
    meta = m.get("meta", {})
    if not isinstance(meta, dict):
        raise IntGraphError(f"{where}: key 'meta' must be an object")
    return IntGraph(
        tensors=tensors,
        ops=ops,
        input=_field(where, m, "input", str),
        output=_field(where, m, "output", str),
        meta=meta,
    )
