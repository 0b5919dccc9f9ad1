""".iqm files: a NumPy ``.npz`` without pickles plus a JSON manifest (``docs/intgraph.md``).

``load`` trusts nothing in the file: every array is cross-checked against the manifest, then
the whole graph is validated before it is returned.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from typing import Any

import numpy as np

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


def save(graph: IntGraph, path: str | os.PathLike) -> None:
    """Validate, then write ``graph`` to ``path`` atomically (temp file + os.replace)."""
    graph.validate()
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
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path: str | os.PathLike) -> IntGraph:
    """Read and validate an ``.iqm`` file; any malformation raises IntGraphError naming it."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
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
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IntGraphError(f"{path}: manifest is not valid UTF-8 JSON: {e}") from e
    graph = _graph_from_manifest(path, manifest, arrays)
    try:
        graph.validate()
    except IntGraphError as e:
        raise IntGraphError(f"{path}: {e}") from e
    return graph


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
