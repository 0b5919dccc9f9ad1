"""ONNX import: a float ONNX model (opsets 6 to 21) into the float Graph.

The importer walks the ONNX nodes once, in order. Every node whose inputs are all constants
(initializers, ``Constant``, ``ConstantOfShape``, shape arithmetic) is evaluated right away with
ONNX's own reference evaluator, so weights hidden behind constant sub-graphs become plain
parameters. Every other node becomes one or more plain Graph nodes (conv, linear, batchnorm,
relu, ...): fusion and BatchNorm folding are left to ``intquant.graph.passes``, which run on any
Graph. The two exceptions are exact rewrites that keep the graph small: a constant bias added
right after a conv/linear goes into its bias, and a constant per-channel scale/shift right after
a conv/linear/batchnorm goes into its parameters.

Shapes come from ONNX's shape inference on the model with a fixed input shape; at the end the
graph is run once with torch (``infer_shapes``) and every node's shape is checked against it.

Errors: malformed files (truncated protobuf, checker failures, missing initializers, dynamic
shapes without ``input_shape``) raise ``ValueError``; valid models using something the float
Graph cannot express raise ``UnsupportedOnnxError`` (a ``ValueError``). Both name the node, its
op and the opset.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from .capture import batch_after_reshape, stacked_on
from .execute import GraphModule, infer_shapes
from .ir import Graph, Node

MIN_OPSET, MAX_OPSET = 6, 21


class UnsupportedOnnxError(ValueError):
    """A valid ONNX model that uses an op or a feature the float Graph cannot express."""


class _DependsOnUnsupported(Exception):
    """A node whose input comes from an unsupported one: not reported a second time."""


_POISONED = "\0unsupported"  # Graph name of tensors produced by an unsupported node


def from_onnx(
    path: str | os.PathLike | onnx.ModelProto, input_shape: tuple[int, ...] | None = None
) -> GraphModule:
    """Import a float ONNX model as a runnable float model (``model(x)``, x NumPy or torch).

    ``input_shape`` is the input shape WITHOUT the batch dimension, e.g. ``(3, 224, 224)``; it is
    needed only when the model's input has dynamic (named) dimensions beyond the batch.
    """
    model = load_onnx(path)
    name = Path(path).stem if isinstance(path, str | os.PathLike) else (model.graph.name or "model")
    return GraphModule(onnx_to_graph(model, input_shape, name=name))


def load_onnx(path: str | os.PathLike | onnx.ModelProto) -> onnx.ModelProto:
    """Read and check a model; every failure becomes a ValueError that says what is wrong."""
    if isinstance(path, onnx.ModelProto):
        model, where = path, f"model {path.graph.name!r}"
    else:
        where = str(path)
        if not Path(where).is_file():
            raise ValueError(f"{where}: no such ONNX file")
        try:
            model = onnx.load(where)
        except DecodeError as e:
            raise ValueError(
                f"{where}: not a valid ONNX protobuf (truncated or corrupt file?): {e}"
            ) from e
        except Exception as e:  # external data missing, unreadable file, ...
            raise ValueError(f"{where}: onnx.load failed: {type(e).__name__}: {e}") from e
    opset = default_opset(model)
    _check_node_inputs_defined(model, opset)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise ValueError(f"{where} (opset {opset}): onnx.checker rejected the model: {e}") from e
    return model


def default_opset(model: onnx.ModelProto) -> int:
    """The version of the default ('' / 'ai.onnx') domain the model imports."""
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    raise ValueError("model imports no version of the default ONNX domain (opset_import)")


def _node_label(node: onnx.NodeProto, opset: int) -> str:
    name = node.name or (node.output[0] if node.output else "?")
    return f"node {name!r} ({node.op_type}, opset {opset})"


def _check_node_inputs_defined(model: onnx.ModelProto, opset: int) -> None:
    """Name the node whose input is nowhere defined — usually a missing initializer."""
    known = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer}
    known.add("")
    for node in model.graph.node:
        for inp in node.input:
            if inp not in known:
                raise ValueError(
                    f"{_node_label(node, opset)}: input {inp!r} is not a graph input, an "
                    "initializer or the output of an earlier node (missing initializer?)"
                )
        known.update(node.output)


def onnx_to_graph(
    model: onnx.ModelProto, input_shape: tuple[int, ...] | None = None, name: str = "model"
) -> Graph:
    """Convert a checked ModelProto to a float Graph with shapes filled in."""
    return _Importer(model, input_shape, name).run()


def _shape_of(vi: onnx.ValueInfoProto) -> tuple[int | str | None, ...] | None:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    return tuple(
        d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim
    )


def _one_node_model(node: onnx.NodeProto, opset: int, ir_version: int) -> onnx.ModelProto:
    """A model around one node, so the reference evaluator picks the model's opset version."""
    ins = [onnx.helper.make_tensor_value_info(i, onnx.TensorProto.UNDEFINED, None)
           for i in dict.fromkeys(node.input) if i]
    outs = [onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None)
            for o in node.output if o]
    g = onnx.helper.make_graph([node], "fold", ins, outs)
    return onnx.helper.make_model(
        g, opset_imports=[onnx.helper.make_opsetid("", opset)], ir_version=ir_version
    )


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class _Importer:
    """One pass over the ONNX nodes; see the module docstring."""

    def __init__(self, model: onnx.ModelProto, input_shape: tuple[int, ...] | None, name: str):
        self.model, self.name = model, name
        self.opset = default_opset(model)
        if not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise UnsupportedOnnxError(
                f"model uses opset {self.opset}; the importer supports opsets {MIN_OPSET} to "
                f"{MAX_OPSET} (re-export with opset_version <= {MAX_OPSET})"
            )
        self.consts: dict[str, np.ndarray] = {
            t.name: numpy_helper.to_array(t) for t in model.graph.initializer
        }
        self.ir_name: dict[str, str] = {}  # ONNX tensor -> Graph node holding its value
        self.nodes: list[Node] = []
        self.by_name: dict[str, Node] = {}
        self.uses: dict[str, int] = {}
        for n in model.graph.node:
            for i in n.input:
                self.uses[i] = self.uses.get(i, 0) + 1
        for o in model.graph.output:
            self.uses[o.name] = self.uses.get(o.name, 0) + 1
        self.input_name, self.full_input_shape = self._graph_input(input_shape)
        self.shapes = self._inferred_shapes()
        self.batch_size = int(self.full_input_shape[0])
        self.batch: dict[str, int | None] = {}  # ONNX tensor -> its batch axis (None: merged)
        # node (by first output) -> handler replacing HANDLERS for it, set by the CLAIMS passes
        self.claimed: dict[str, Callable[[_Importer, onnx.NodeProto], None]] = {}

    # ---- graph boundary and shapes -------------------------------------------------------

    def _graph_input(self, input_shape: tuple[int, ...] | None) -> tuple[str, tuple[int, ...]]:
        inputs = [i for i in self.model.graph.input if i.name not in self.consts]
        used = [i for i in inputs if self.uses.get(i.name, 0) > 0]
        if len(used) != 1:
            raise UnsupportedOnnxError(
                f"model has {len(used)} graph inputs without initializers "
                f"({[i.name for i in used]}); the float Graph takes exactly one input"
            )
        vi = used[0]
        elem = vi.type.tensor_type.elem_type
        if elem != onnx.TensorProto.FLOAT:
            raise UnsupportedOnnxError(
                f"graph input {vi.name!r} has element type "
                f"{onnx.TensorProto.DataType.Name(elem)}; only float32 inputs are supported"
            )
        dims = _shape_of(vi)
        if dims is None or len(dims) < 1:
            if input_shape is None:
                raise ValueError(
                    f"graph input {vi.name!r} has no static shape; pass input_shape=(C, H, W) "
                    "(without the batch dimension)"
                )
            return vi.name, (1, *map(int, input_shape))
        batch = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else 1
        rest = dims[1:]
        if input_shape is None:
            dynamic = [i + 1 for i, d in enumerate(rest) if not (isinstance(d, int) and d > 0)]
            if dynamic:
                raise ValueError(
                    f"graph input {vi.name!r} has dynamic dimensions {dims} (axes {dynamic}); "
                    "pass input_shape=(...) without the batch dimension"
                )
            return vi.name, (batch, *rest)
        input_shape = tuple(int(d) for d in input_shape)
        if len(input_shape) != len(rest):
            raise ValueError(
                f"input_shape {input_shape} has {len(input_shape)} dims but graph input "
                f"{vi.name!r} {dims} has {len(rest)} besides the batch"
            )
        for i, (given, declared) in enumerate(zip(input_shape, rest, strict=True)):
            if isinstance(declared, int) and declared > 0 and declared != given:
                raise ValueError(
                    f"input_shape {input_shape} disagrees with graph input {vi.name!r} {dims} "
                    f"at axis {i + 1}"
                )
        return vi.name, (batch, *input_shape)

    def _inferred_shapes(self) -> dict[str, tuple]:
        """ONNX shape inference with the input fixed to its concrete shape."""
        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        for vi in model.graph.input:
            if vi.name == self.input_name:
                shape = vi.type.tensor_type.shape
                del shape.dim[:]
                for d in self.full_input_shape:
                    shape.dim.add().dim_value = d
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
        except Exception as e:
            raise ValueError(
                f"ONNX shape inference failed (opset {self.opset}) for input shape "
                f"{self.full_input_shape}: {e}"
            ) from e
        shapes: dict[str, tuple] = {}
        g = inferred.graph
        for vi in list(g.value_info) + list(g.output) + list(g.input):
            s = _shape_of(vi)
            if s is not None and all(isinstance(d, int) for d in s):
                shapes[vi.name] = s
        shapes[self.input_name] = self.full_input_shape
        return shapes

    # ---- helpers used by the op handlers --------------------------------------------------

    def where(self, node: onnx.NodeProto) -> str:
        return _node_label(node, self.opset)

    def unsupported(self, node: onnx.NodeProto, why: str) -> UnsupportedOnnxError:
        return UnsupportedOnnxError(f"{self.where(node)}: {why}")

    def shape(self, node: onnx.NodeProto, tensor: str) -> tuple[int, ...]:
        """Full (batched) static shape of an activation tensor."""
        if tensor in self.shapes:
            return self.shapes[tensor]
        raise ValueError(
            f"{self.where(node)}: ONNX shape inference gave no static shape for {tensor!r}; "
            "pass input_shape=(...) or export the model with static shapes"
        )

    def is_const(self, tensor: str) -> bool:
        return tensor in self.consts

    def const(self, node: onnx.NodeProto, idx: int, what: str) -> np.ndarray | None:
        """Input ``idx`` as a constant array (None if absent); activations are rejected."""
        if idx >= len(node.input) or node.input[idx] == "":
            return None
        t = node.input[idx]
        if t not in self.consts:
            raise self.unsupported(node, f"{what} (input {idx}, {t!r}) must be a constant")
        return self.consts[t]

    def act(self, node: onnx.NodeProto, idx: int = 0) -> str:
        """The Graph node holding activation input ``idx``."""
        t = node.input[idx]
        if self.ir_name.get(t) == _POISONED:
            raise _DependsOnUnsupported
        if t in self.ir_name:
            return self.ir_name[t]
        raise self.unsupported(node, f"input {idx} ({t!r}) is a constant where a tensor that "
                               "depends on the graph input is expected")

    def emit(
        self, node: onnx.NodeProto, op: str, inputs: list[str], attrs: dict | None = None,
        params: dict[str, np.ndarray] | None = None, out: str | None = None,
    ) -> Node:
        """Append a Graph node for ONNX ``node`` and make ``out`` (its output) point at it."""
        out = node.output[0] if out is None else out
        base = node.name or out
        name, k = base, 1
        while name in self.by_name:
            name, k = f"{base}_{k}", k + 1
        params = {k2: np.require(v, np.float32, ["C", "W"]) for k2, v in (params or {}).items()}
        n = Node(name=name, op=op, inputs=inputs, attrs=attrs or {}, params=params,
                 source=self.where(node))
        self.nodes.append(n)
        self.by_name[name] = n
        self.ir_name[out] = name
        return n

    def alias(self, node: onnx.NodeProto, src_idx: int = 0) -> None:
        self.ir_name[node.output[0]] = self.act(node, src_idx)

    def single_use(self, tensor: str) -> bool:
        return self.uses.get(tensor, 0) == 1

    # ---- the batch axis (see capture.py: a batch of one may move or merge away) ---------------

    def batch_axis(self, tensor: str) -> int | None:
        return self.batch.get(tensor, 0)

    def sample_shape(self, node: onnx.NodeProto, tensor: str) -> tuple[int, ...]:
        """The per-sample shape of an activation: its full shape without the batch axis."""
        full, b = self.shape(node, tensor), self.batch_axis(tensor)
        return full if b is None else full[:b] + full[b + 1:]

    def sample_dim(self, node: onnx.NodeProto, tensor: str, d: int) -> int:
        """The per-sample axis of axis ``d`` of the full tensor (never the batch axis)."""
        rank = len(self.shape(node, tensor))
        d = int(d) + rank if int(d) < 0 else int(d)
        b = self.batch_axis(tensor)
        if d == b:
            raise self.unsupported(node, f"operates along the batch axis (axis {d} of "
                                   f"{tensor!r}, shape {self.shape(node, tensor)})")
        return d if b is None or d < b else d - 1

    def require_batch_first(self, node: onnx.NodeProto) -> None:
        for t in node.input:
            if t and t in self.ir_name and self.batch_axis(t) != 0:
                b = self.batch_axis(t)
                where = "merged into another axis" if b is None else f"at axis {b}"
                raise self.unsupported(node, f"its input {t!r} has its batch axis {where}; "
                                       "this op needs the batch axis first")

    def track_batch(self, node: onnx.NodeProto) -> None:
        """The output's batch axis from the first activation input (``batch_after_reshape``);
        handlers that move it (Transpose, Gather, ...) set it themselves."""
        acts = [t for t in node.input if t and t in self.ir_name]
        out = node.output[0] if node.output else ""
        if not acts or not out or out not in self.shapes or acts[0] not in self.shapes:
            return
        src, dst = self.shapes[acts[0]], self.shapes[out]
        b = batch_after_reshape(src, self.batch_axis(acts[0]), dst, self.batch_size)
        if b is None and self.batch_size != 1:
            raise self.unsupported(node, f"reshapes {src} to {dst} across the batch axis")
        self.batch[out] = b

    # ---- main loop ------------------------------------------------------------------------

    def run(self) -> Graph:
        g = self.model.graph
        inp = Node(name=self.input_name, op="input", source="graph input")
        self.nodes.append(inp)
        self.by_name[inp.name] = inp
        self.ir_name[self.input_name] = inp.name
        problems: list[str] = []
        for claim in CLAIMS:
            claim(self)
        for node in g.node:
            try:
                self._import_node(node)
            except _DependsOnUnsupported:
                self._poison(node)
            except UnsupportedOnnxError as e:
                problems.append(str(e))
                self._poison(node)
        if problems:
            raise UnsupportedOnnxError(
                f"{len(problems)} unsupported node(s): " + "; ".join(problems)
                + f". Supported ops: {', '.join(sorted(HANDLERS))}"
            )
        if len(g.output) != 1:
            raise UnsupportedOnnxError(
                f"model has {len(g.output)} outputs ({[o.name for o in g.output]}); the float "
                "Graph has exactly one output"
            )
        out = g.output[0].name
        if out not in self.ir_name:
            raise UnsupportedOnnxError(f"graph output {out!r} is a constant")
        self._batch_first_output(out)
        graph = Graph(nodes=self.nodes, output=self.ir_name[out], name=self.name)
        graph.validate()
        self._check_shapes(graph)
        return graph

    def _batch_first_output(self, out: str) -> None:
        """The graph output as (N, ...): a reshape when its batch axis was merged away."""
        b = self.batch_axis(out)
        if b == 0:
            return
        full = self.shapes.get(out, ())
        if b is not None or not full or full[0] != 1:
            raise UnsupportedOnnxError(f"graph output {out!r} (shape {full}) does not have its "
                                       "batch axis first")
        name = self.ir_name[out] + "__batch_first"
        n = Node(name=name, op="reshape", inputs=[self.ir_name[out]],
                 attrs={"shape": list(full[1:])}, source="graph output")
        self.nodes.append(n)
        self.by_name[name] = n
        self.ir_name[out] = name
        self.batch[out] = 0

    def _import_node(self, node: onnx.NodeProto) -> None:
        if any(self.ir_name.get(i) == _POISONED for i in node.input):
            raise _DependsOnUnsupported
        if node.domain not in ("", "ai.onnx"):
            raise self.unsupported(node, f"custom domain {node.domain!r} is not supported")
        claimed = self.claimed.get(node.output[0]) if node.output else None
        if claimed is not None:
            claimed(self, node)
            return
        if all(i == "" or i in self.consts for i in node.input) and node.op_type != "Shape":
            self.fold(node)
            return
        handler = HANDLERS.get(node.op_type)
        if handler is None:
            raise self.unsupported(
                node, f"op {node.op_type} is not supported on tensors that depend on the input"
            )
        for extra in node.output[1:]:
            if extra and self.uses.get(extra, 0) and node.op_type not in ("Dropout",):
                raise self.unsupported(node, f"its output {extra!r} is used; only the "
                                       "first output is supported")
        self._fill_missing_shapes(node)
        if node.op_type not in BATCH_ANYWHERE:
            self.require_batch_first(node)
        if node.op_type != "Shape":
            self.track_batch(node)
        handler(self, node)

    def _poison(self, node: onnx.NodeProto) -> None:
        """Mark the node's outputs so that nodes using them are skipped, not reported."""
        for out in node.output:
            if out:
                self.ir_name[out] = _POISONED

    def _fill_missing_shapes(self, node: onnx.NodeProto) -> None:
        """Where ONNX shape inference stopped (shapes computed by Shape/Gather/Concat chains it
        cannot follow), run the node once with the reference evaluator on zeros: its inputs'
        shapes are known by induction and its constant inputs are folded by now."""
        missing = [o for o in node.output[:1] if o and o not in self.shapes]
        if not missing or any(i and i not in self.consts and i not in self.shapes
                              for i in node.input):
            return
        feeds = {i: self.consts[i] if i in self.consts else np.zeros(self.shapes[i], np.float32)
                 for i in node.input if i}
        try:
            ev = ReferenceEvaluator(_one_node_model(node, self.opset, self.model.ir_version))
            out = ev.run(None, feeds)[0]
        except Exception:
            return  # the handler reports the missing shape with the node's name
        self.shapes[missing[0]] = tuple(int(d) for d in np.shape(out))

    def fold(self, node: onnx.NodeProto) -> None:
        """Evaluate a node whose inputs are all constants with ONNX's reference evaluator."""
        try:
            ev = ReferenceEvaluator(_one_node_model(node, self.opset, self.model.ir_version))
            feeds = {i: self.consts[i] for i in node.input if i}
            outs = ev.run(None, feeds)
        except Exception as e:
            raise ValueError(
                f"{self.where(node)}: evaluating this constant node failed: {e}"
            ) from e
        for name, value in zip(node.output, outs, strict=False):
            if name:
                self.consts[name] = np.asarray(value)

    def _check_shapes(self, graph: Graph) -> None:
        """Run the Graph once with torch; its shapes must be ONNX's (else the import is wrong)."""
        infer_shapes(graph, self.full_input_shape[1:])
        onnx_of = {v: k for k, v in self.ir_name.items()}
        for n in graph.nodes:
            t = onnx_of.get(n.name)
            if t is None or t not in self.shapes or n.op == "input":
                continue
            full, b = self.shapes[t], self.batch_axis(t)
            want = tuple(full if b is None else full[:b] + full[b + 1:])
            if tuple(n.shape) != want:
                raise ValueError(
                    f"{n.source}: imported node {n.name!r} ({n.op}) computes shape {n.shape} "
                    f"but ONNX shape inference says {want}"
                )


# ---- per-channel constants ------------------------------------------------------------------


def per_channel(
    imp: _Importer, node: onnx.NodeProto, c: np.ndarray, full: tuple[int, ...]
) -> np.ndarray:
    """A constant broadcast against an activation of shape ``full`` as a scalar (shape ()) or a
    vector over axis 1 (channels / features); anything else cannot be one Graph node."""
    c = np.asarray(c, dtype=np.float32)
    if c.ndim > len(full):
        raise imp.unsupported(node, f"constant of shape {c.shape} has more dims than {full}")
    if c.size == 1:
        return c.reshape(())
    c_full = c.reshape((1,) * (len(full) - c.ndim) + c.shape)
    varying = [ax for ax, d in enumerate(c_full.shape) if d != 1]
    if varying != [1] or len(full) < 2 or c_full.shape[1] != full[1]:
        raise imp.unsupported(
            node, f"constant of shape {c.shape} broadcast over a tensor of shape {full}; only "
            "scalars and per-channel (axis 1) constants are supported"
        )
    return c_full.reshape(-1)


def _channels(full: tuple[int, ...]) -> int:
    return full[1] if len(full) >= 2 else 1


def emit_affine(
    imp: _Importer, node: onnx.NodeProto, x_tensor: str, scale: np.ndarray | None,
    shift: np.ndarray | None,
) -> None:
    """y = x·scale + shift with per-channel/scalar constants. Folded exactly into the producing
    conv/linear/batchnorm when x has no other consumer; otherwise a mul_const or a batchnorm
    node (mean 0, var 1, eps 0 — an exact per-channel affine the BN passes understand)."""
    x = imp.act(node, list(node.input).index(x_tensor))
    full = imp.shape(node, x_tensor)
    prod = imp.by_name[x]
    foldable = (
        imp.single_use(x_tensor) and prod.act is None and x_tensor not in
        {o.name for o in imp.model.graph.output}
    )
    channel_is_axis1 = prod.op != "linear" or len(full) == 2
    if foldable and channel_is_axis1 and prod.op in ("conv", "linear", "batchnorm"):
        cout = _channels(imp.shape(node, x_tensor))
        s = np.ones(cout, np.float32) if scale is None else np.broadcast_to(scale, (cout,))
        b = np.zeros(cout, np.float32) if shift is None else np.broadcast_to(shift, (cout,))
        p = prod.params
        if prod.op == "batchnorm":
            p["weight"] = (p["weight"] * s).astype(np.float32)
            p["bias"] = (p["bias"] * s + b).astype(np.float32)
        else:
            w = p["weight"]
            p["weight"] = (w * s.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32)
            old = p.get("bias", np.zeros(cout, np.float32))
            p["bias"] = (old * s + b).astype(np.float32)
        imp.ir_name[node.output[0]] = x
        return
    if shift is None:
        imp.emit(node, "mul_const", [x], params={"value": scale})
        return
    cout = _channels(full)
    s = np.ones(cout, np.float32) if scale is None else np.broadcast_to(scale, (cout,))
    imp.emit(
        node, "batchnorm", [x], attrs={"eps": 0.0},
        params={"mean": np.zeros(cout), "var": np.ones(cout), "weight": s,
                "bias": np.broadcast_to(shift, (cout,))},
    )


# ---- op handlers ------------------------------------------------------------------------------


def _spatial(
    imp: _Importer, node: onnx.NodeProto, kernel: list[int], *, ceil_ok: bool
) -> tuple[list[int], list[int], list[int], list[int]]:
    """strides, pads_begin, pads_end, dilations over the spatial dims, with auto_pad resolved
    and ceil_mode turned into extra end padding (the output size comes from ONNX inference)."""
    a = _attrs(node)
    nd = len(kernel)
    strides = list(a.get("strides", [1] * nd))
    dil = list(a.get("dilations", [1] * nd))
    in_sp = imp.shape(node, node.input[0])[2:]
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pb, pe = [], []
        for i in range(nd):
            out = -(-in_sp[i] // strides[i])
            total = max((out - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - in_sp[i], 0)
            small, big = total // 2, total - total // 2
            pb.append(small if auto == "SAME_UPPER" else big)
            pe.append(big if auto == "SAME_UPPER" else small)
    elif auto == "VALID":
        pb, pe = [0] * nd, [0] * nd
    else:
        pads = list(a.get("pads", [0] * (2 * nd)))
        pb, pe = pads[:nd], pads[nd:]
    if any(p < 0 for p in pb + pe):
        raise imp.unsupported(node, f"negative pads {pb + pe}")
    if a.get("ceil_mode", 0):
        if not ceil_ok:
            raise imp.unsupported(node, "ceil_mode=1 with count_include_pad=1 and padding")
        out_sp = imp.shape(node, node.output[0])[2:]
        for i in range(nd):
            need = (out_sp[i] - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1
            pe[i] += max(0, need - (in_sp[i] + pb[i] + pe[i]))
    return strides, pb, pe, dil


def _as_2d(nd: int, strides, pb, pe, dil, kernel) -> dict:
    """Graph attrs (always [h, w] / [top, left, bottom, right]); 1-D lives in the w entries."""
    if nd == 1:
        return {"dims": 1, "kernel": [1, kernel[0]], "stride": [1, strides[0]],
                "padding": [0, pb[0], 0, pe[0]], "dilation": [1, dil[0]]}
    return {"dims": 2, "kernel": list(kernel), "stride": list(strides),
            "padding": [pb[0], pb[1], pe[0], pe[1]], "dilation": list(dil)}


def _spatial_rank(imp: _Importer, node: onnx.NodeProto) -> int:
    nd = len(imp.shape(node, node.input[0])) - 2
    if nd not in (1, 2):
        raise imp.unsupported(node, f"{nd}-D spatial input; only 1-D and 2-D are supported")
    return nd


def op_conv(imp: _Importer, node: onnx.NodeProto) -> None:
    x = imp.act(node)
    w = imp.const(node, 1, "weight")
    b = imp.const(node, 2, "bias")
    nd = _spatial_rank(imp, node)
    kernel = list(w.shape[2:])
    s, pb, pe, d = _spatial(imp, node, kernel, ceil_ok=True)
    attrs = _as_2d(nd, s, pb, pe, d, kernel)
    del attrs["kernel"]
    attrs["groups"] = int(_attrs(node).get("group", 1))
    params = {"weight": w}
    if b is not None:
        params["bias"] = b
    imp.emit(node, "conv", [x], attrs, params)


def op_pool(imp: _Importer, node: onnx.NodeProto) -> None:
    x = imp.act(node)
    nd = _spatial_rank(imp, node)
    a = _attrs(node)
    kernel = list(a["kernel_shape"])
    is_max = node.op_type == "MaxPool"
    cip = int(a.get("count_include_pad", 0))
    has_pad = any(a.get("pads", [])) or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID")
    s, pb, pe, d = _spatial(imp, node, kernel, ceil_ok=is_max or not (cip and has_pad))
    attrs = _as_2d(nd, s, pb, pe, d, kernel)
    if is_max:
        if a.get("storage_order", 0):
            raise imp.unsupported(node, "storage_order=1")
        imp.emit(node, "max_pool", [x], attrs)
        return
    if any(v != 1 for v in d):
        raise imp.unsupported(node, f"AveragePool dilations {d}")
    del attrs["dilation"]
    attrs["count_include_pad"] = cip
    imp.emit(node, "avg_pool", [x], attrs)


def op_global_avg_pool(imp: _Importer, node: onnx.NodeProto) -> None:
    _spatial_rank(imp, node)
    imp.emit(node, "global_avg_pool", [imp.act(node)])


def op_gemm(imp: _Importer, node: onnx.NodeProto) -> None:
    a = _attrs(node)
    if a.get("transA", 0):
        raise imp.unsupported(node, "transA=1 (the activation must be A, batch first)")
    x = imp.act(node)
    imp.sample_dim(node, node.input[0], -1)  # a Linear over the last axis, wherever the batch is
    bmat = imp.const(node, 1, "B")
    w = (bmat if a.get("transB", 0) else bmat.T) * float(a.get("alpha", 1.0))
    params = {"weight": w}
    c = imp.const(node, 2, "C")
    if c is not None:
        cf = np.asarray(c, np.float32) * float(a.get("beta", 1.0))
        if cf.ndim == 2 and cf.shape[0] != 1:
            raise imp.unsupported(node, f"C of shape {c.shape} differs per batch row")
        params["bias"] = np.broadcast_to(cf.reshape(-1) if cf.size > 1 else cf, (w.shape[0],))
    imp.emit(node, "linear", [x], params=params)


def op_matmul(imp: _Importer, node: onnx.NodeProto) -> None:
    """(…, K) x (K, M) constant: Linear; two activations (…, M, K) x (…, K, N): matmul."""
    if not imp.is_const(node.input[1]):
        op_matmul_activations(imp, node)
        return
    x = imp.act(node)
    bmat = imp.const(node, 1, "B (the right-hand matrix)")
    if bmat.ndim != 2 or len(imp.shape(node, node.input[0])) < 2:
        raise imp.unsupported(node, f"MatMul of a {imp.shape(node, node.input[0])} tensor by a "
                              f"constant of shape {bmat.shape}; only (..., K) x (K, M)")
    imp.sample_dim(node, node.input[0], -1)
    imp.emit(node, "linear", [x], params={"weight": bmat.T})


def _binary_const(imp: _Importer, node: onnx.NodeProto) -> tuple[str, np.ndarray, int] | None:
    """(activation tensor, constant, constant position) for act ∘ const, else None."""
    a, b = node.input[0], node.input[1]
    if imp.is_const(b) and not imp.is_const(a):
        return a, imp.consts[b], 1
    if imp.is_const(a) and not imp.is_const(b):
        return b, imp.consts[a], 0
    return None


def _check_broadcast_keeps_shape(imp: _Importer, node: onnx.NodeProto, x: str) -> None:
    if imp.shape(node, node.output[0]) != imp.shape(node, x):
        raise imp.unsupported(node, f"broadcasting changes the shape {imp.shape(node, x)} to "
                              f"{imp.shape(node, node.output[0])}")


def op_add_sub(imp: _Importer, node: onnx.NodeProto) -> None:
    bc = _binary_const(imp, node)
    if bc is None:
        _binary_activations(imp, node, "add" if node.op_type == "Add" else "sub")
        return
    x, c, pos = bc
    _check_broadcast_keeps_shape(imp, node, x)
    if node.op_type == "Sub":
        if pos == 0:  # c − x = (−1)·x + c
            c = per_channel(imp, node, c, imp.shape(node, x))
            emit_affine(imp, node, x, np.full(np.shape(c), -1.0, np.float32), c)
            return
        c = -np.asarray(c, np.float32)
    if fold_last_axis_bias(imp, node, x, c):
        return
    full = imp.shape(node, x)
    if np.asarray(c).size == 1 or imp.batch_axis(x) == 0:
        try:
            emit_affine(imp, node, x, None, per_channel(imp, node, c, full))
            return
        except UnsupportedOnnxError:
            pass  # a constant tensor: add_const below
    value = np.ascontiguousarray(np.broadcast_to(np.asarray(c, np.float32), full))
    b = imp.batch_axis(x)
    if b is not None:  # one per-sample tensor: the same for every sample of the batch
        first = np.take(value, [0], axis=b)
        if not np.array_equal(np.broadcast_to(first, value.shape), value):
            raise imp.unsupported(node, "a constant that differs from sample to sample (it "
                                  "varies along the batch axis)")
        value = first
    imp.emit(node, "add_const", [imp.act(node, list(node.input).index(x))],
             params={"value": value.reshape(imp.sample_shape(node, x))})


def op_mul_div(imp: _Importer, node: onnx.NodeProto) -> None:
    bc = _binary_const(imp, node)
    if bc is None:
        if node.op_type == "Div":
            raise imp.unsupported(node, "Div of two non-constant tensors")
        _binary_activations(imp, node, "mul")
        return
    x, c, pos = bc
    if node.op_type == "Div" and pos == 0:
        raise imp.unsupported(node, "constant divided by a tensor")
    if np.asarray(c).size > 1:
        imp.require_batch_first(node)  # one value per channel (axis 1)
    _check_broadcast_keeps_shape(imp, node, x)
    c = per_channel(imp, node, c, imp.shape(node, x))
    emit_affine(imp, node, x, (1.0 / c if node.op_type == "Div" else c).astype(np.float32), None)


def op_sum(imp: _Importer, node: onnx.NodeProto) -> None:
    if any(imp.is_const(i) for i in node.input):
        raise imp.unsupported(node, "Sum with constant operands")
    shapes = {imp.shape(node, i) for i in node.input}
    if len(shapes) != 1:
        raise imp.unsupported(node, f"Sum of tensors of different shapes {sorted(shapes)}")
    if len(node.input) == 1:
        imp.alias(node)
        return
    acc = imp.act(node, 0)
    for k in range(1, len(node.input)):
        out = node.output[0] if k == len(node.input) - 1 else f"{node.output[0]}__sum{k}"
        acc = imp.emit(node, "add", [acc, imp.act(node, k)], out=out).name


def op_clip(imp: _Importer, node: onnx.NodeProto) -> None:
    if imp.opset < 11:
        a = _attrs(node)
        lo, hi = a.get("min"), a.get("max")
    else:
        lo_c, hi_c = imp.const(node, 1, "min"), imp.const(node, 2, "max")
        lo = None if lo_c is None else float(lo_c)
        hi = None if hi_c is None else float(hi_c)
    lo = None if lo is None or lo <= -3.4e38 else float(lo)
    hi = None if hi is None or hi >= 3.4e38 else float(hi)
    imp.emit(node, "clamp", [imp.act(node)], {"min": lo, "max": hi})


def op_softmax(imp: _Importer, node: onnx.NodeProto) -> None:
    """Softmax along ``axis`` (opset >= 13, or the last axis); opset < 13 flattens the axes
    from ``axis`` on into one row (a reshape pair)."""
    full = imp.shape(node, node.input[0])
    r = len(full)
    axis = int(_attrs(node).get("axis", 1 if imp.opset < 13 else -1))
    axis = axis + r if axis < 0 else axis
    x = imp.act(node)
    if imp.opset >= 13 or axis == r - 1:
        imp.emit(node, "softmax", [x], {"axis": imp.sample_dim(node, node.input[0], axis)})
        return
    imp.require_batch_first(node)
    if axis == 0:
        raise imp.unsupported(node, "softmax over the batch axis")
    out = node.output[0]
    flat = int(np.prod(full[axis:]))
    head = [int(np.prod(full[1:axis]))] if axis > 1 else []
    t = imp.emit(node, "reshape", [x], {"shape": head + [flat]}, out=out + "__2d").name
    t = imp.emit(node, "softmax", [t], out=out + "__sm").name
    imp.emit(node, "reshape", [t], {"shape": list(full[1:])})


def op_batchnorm(imp: _Importer, node: onnx.NodeProto) -> None:
    a = _attrs(node)
    if a.get("training_mode", 0):
        raise imp.unsupported(node, "training_mode=1")
    if imp.opset < 9 and not a.get("spatial", 1):
        raise imp.unsupported(node, "spatial=0")
    params = {
        "weight": imp.const(node, 1, "scale"), "bias": imp.const(node, 2, "B"),
        "mean": imp.const(node, 3, "mean"), "var": imp.const(node, 4, "var"),
    }
    imp.emit(node, "batchnorm", [imp.act(node)], {"eps": float(a.get("epsilon", 1e-5))}, params)


def op_reshape_like(imp: _Importer, node: onnx.NodeProto) -> None:
    """Flatten / Reshape / Squeeze / Unsqueeze: the per-sample values in C order; where the
    batch axis went is tracked (``track_batch``: a batch of several may not be merged)."""
    dst = imp.sample_shape(node, node.output[0])
    if dst == imp.sample_shape(node, node.input[0]):
        imp.alias(node)
        return
    imp.emit(node, "reshape", [imp.act(node)], {"shape": [int(d) for d in dst]})


def op_transpose(imp: _Importer, node: onnx.NodeProto) -> None:
    """The batch axis moves with the permutation; the per-sample axes are permuted (nothing to
    do when their order is kept)."""
    x = node.input[0]
    r = len(imp.shape(node, x))
    perm = [int(p) for p in _attrs(node).get("perm", list(reversed(range(r))))]
    b = imp.batch_axis(x)
    imp.batch[node.output[0]] = None if b is None else perm.index(b)
    sample_perm = [imp.sample_dim(node, x, p) for p in perm if p != b]
    if sample_perm == sorted(sample_perm):
        imp.alias(node)
        return
    imp.emit(node, "transpose", [imp.act(node)], {"perm": sample_perm})


def op_concat(imp: _Importer, node: onnx.NodeProto) -> None:
    r = len(imp.shape(node, node.output[0]))
    axis = int(_attrs(node)["axis"])
    axis = axis + r if axis < 0 else axis
    if axis == 0:
        raise imp.unsupported(node, "concat along the batch axis")
    if any(imp.is_const(i) for i in node.input):
        raise imp.unsupported(node, "concat of a constant and a tensor")
    ins = [imp.act(node, k) for k in range(len(node.input))]
    imp.emit(node, "concat", ins, {"axis": axis - 1})


def op_pad(imp: _Importer, node: onnx.NodeProto) -> None:
    a = _attrs(node)
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "constant":
        raise imp.unsupported(node, f"mode {mode!r}; only constant padding is supported")
    r = len(imp.shape(node, node.input[0]))
    if imp.opset < 11:
        pads, value = list(a["pads"]), float(a.get("value", 0.0))
        axes = list(range(r))
    else:
        pads = imp.const(node, 1, "pads").astype(int).tolist()
        v = imp.const(node, 2, "constant_value")
        value = 0.0 if v is None else float(np.asarray(v).reshape(()))
        ax = imp.const(node, 3, "axes")
        axes = list(range(r)) if ax is None else [int(i) + r if i < 0 else int(i) for i in ax]
    n = len(axes)
    before, after = [0] * r, [0] * r
    for k, ax in enumerate(axes):
        before[ax], after[ax] = pads[k], pads[n + k]
    if before[0] or after[0]:
        raise imp.unsupported(node, "padding of the batch axis")
    if any(p < 0 for p in before + after):
        raise imp.unsupported(node, f"negative pads {pads} (cropping)")
    flat = [p for d in range(1, r) for p in (before[d], after[d])]
    imp.emit(node, "pad", [imp.act(node)], {"pads": flat, "value": value})


def op_identity(imp: _Importer, node: onnx.NodeProto) -> None:
    imp.alias(node)


def op_dropout(imp: _Importer, node: onnx.NodeProto) -> None:
    if len(node.output) > 1 and node.output[1] and imp.uses.get(node.output[1], 0):
        raise imp.unsupported(node, "its mask output is used")
    imp.alias(node)


def op_shape(imp: _Importer, node: onnx.NodeProto) -> None:
    """Shape of an activation is a constant once the input shape is fixed."""
    full = np.asarray(imp.shape(node, node.input[0]), dtype=np.int64)
    a = _attrs(node)
    start, end = a.get("start", 0), a.get("end", len(full))
    imp.consts[node.output[0]] = full[start:end]


def op_lrn(imp: _Importer, node: onnx.NodeProto) -> None:
    a = _attrs(node)
    imp.emit(node, "lrn", [imp.act(node)], {
        "size": int(a["size"]), "alpha": float(a.get("alpha", 1e-4)),
        "beta": float(a.get("beta", 0.75)), "bias": float(a.get("bias", 1.0)),
    })


def _simple(op: str, attrs: Callable[[dict], dict] | None = None):
    def handler(imp: _Importer, node: onnx.NodeProto) -> None:
        imp.emit(node, op, [imp.act(node)], attrs(_attrs(node)) if attrs else {})
    return handler


# -- two-activation ops and activations (reach-elem) ----------------------------------------


def _binary_activations(imp: _Importer, node: onnx.NodeProto, op: str) -> None:
    """Add / Sub / Mul of two tensors that depend on the input: NumPy broadcasting within the
    same rank (a per-channel (N, C, 1, 1) gate, a per-sample scalar), never across the batch."""
    sa, sb = imp.shape(node, node.input[0]), imp.shape(node, node.input[1])
    if len(sa) != len(sb) or sa[0] != sb[0]:
        raise imp.unsupported(
            node, f"{node.op_type} of tensors of shapes {sa} and {sb}: broadcasting needs both "
            "of the same rank and batch size (size-1 axes, e.g. (N, C, 1, 1))")
    if imp.batch_axis(node.input[0]) != imp.batch_axis(node.input[1]):
        raise imp.unsupported(node, f"{node.op_type} of tensors whose batch axes differ: "
                              "transpose one so that the samples line up")
    imp.emit(node, op, [imp.act(node, 0), imp.act(node, 1)])


def op_hardsigmoid(imp: _Importer, node: onnx.NodeProto) -> None:
    a = _attrs(node)
    imp.emit(node, "hardsigmoid", [imp.act(node)],
             {"alpha": float(a.get("alpha", 0.2)), "beta": float(a.get("beta", 0.5))})


def op_gelu(imp: _Importer, node: onnx.NodeProto) -> None:
    approximate = _attrs(node).get("approximate", b"none")
    approximate = approximate.decode() if isinstance(approximate, bytes) else approximate
    if approximate not in ("none", "tanh"):
        raise imp.unsupported(node, f"approximate={approximate!r}")
    imp.emit(node, "gelu", [imp.act(node)], {"approximate": approximate})


def op_elu(imp: _Importer, node: onnx.NodeProto) -> None:
    """Elu (alpha), and Selu as ELU with scale gamma."""
    a = _attrs(node)
    if node.op_type == "Selu":
        attrs = {"alpha": float(a.get("alpha", 1.67326319217681884765625)),
                 "scale": float(a.get("gamma", 1.05070102214813232421875)), "input_scale": 1.0}
    else:
        attrs = {"alpha": float(a.get("alpha", 1.0)), "scale": 1.0, "input_scale": 1.0}
    imp.emit(node, "elu", [imp.act(node)], attrs)


def op_celu(imp: _Importer, node: onnx.NodeProto) -> None:
    """Celu(alpha) = max(0, x) + min(0, alpha·(exp(x/alpha) − 1)): ELU with input_scale
    1/alpha."""
    alpha = float(_attrs(node).get("alpha", 1.0))
    if alpha == 0:
        raise imp.unsupported(node, "alpha = 0")
    imp.emit(node, "elu", [imp.act(node)],
             {"alpha": alpha, "scale": 1.0, "input_scale": 1.0 / alpha})


def op_prelu(imp: _Importer, node: onnx.NodeProto) -> None:
    """PRelu with a constant slope: one per channel (axis 1) or one shared."""
    x = imp.act(node)
    slope = per_channel(imp, node, imp.const(node, 1, "slope"), imp.shape(node, node.input[0]))
    imp.emit(node, "prelu", [x], params={"weight": np.asarray(slope, np.float32).reshape(-1)})
# -- reach-vision: upsampling and transposed convolution ---------------------------------------

# Resize coordinate/rounding modes that read input index o div f for an integer factor f.
_NEAREST_FLOOR = {("asymmetric", "floor"), ("half_pixel", "round_prefer_floor"),
                  ("half_pixel", "round_prefer_ceil"), ("pytorch_half_pixel", "round_prefer_floor"),
                  ("pytorch_half_pixel", "round_prefer_ceil")}


def _str_attr(a: dict, key: str, default: str) -> str:
    v = a.get(key, default)
    return v.decode() if isinstance(v, bytes) else v


def op_resize(imp: _Importer, node: onnx.NodeProto) -> None:
    """Resize (opset >= 10) / Upsample (opset < 10) by integer factors over the spatial axes:
    nearest (any mode reading o div f) or linear with half_pixel (PyTorch align_corners=False)."""
    a = _attrs(node)
    x = imp.act(node)
    src, out = imp.shape(node, node.input[0]), imp.shape(node, node.output[0])
    if src[:2] != out[:2]:
        raise imp.unsupported(node, f"resizes the batch or channel axis ({src} to {out})")
    if len(src) not in (3, 4) or any(o % i for i, o in zip(src[2:], out[2:], strict=True)):
        raise imp.unsupported(node, f"{src} to {out}: only 1-D/2-D integer upsampling factors")
    f = [o // i for i, o in zip(src[2:], out[2:], strict=True)]
    mode = _str_attr(a, "mode", "nearest")
    legacy = node.op_type == "Upsample"
    coord = "asymmetric" if legacy else _str_attr(a, "coordinate_transformation_mode",
                                                    "half_pixel")
    if a.get("antialias", 0) or a.get("exclude_outside", 0):
        raise imp.unsupported(node, "antialias / exclude_outside")
    if mode == "nearest":
        rounding = "floor" if legacy else _str_attr(a, "nearest_mode", "round_prefer_floor")
        if (coord, rounding) not in _NEAREST_FLOOR:
            raise imp.unsupported(node, f"nearest with coordinate_transformation_mode {coord!r} "
                                  f"and nearest_mode {rounding!r}")
        kind = "nearest"
    elif mode in ("linear", "bilinear") and coord in ("half_pixel", "pytorch_half_pixel"):
        kind = "bilinear"
    else:
        raise imp.unsupported(node, f"mode {mode!r} with coordinate_transformation_mode "
                              f"{coord!r} (supported: nearest; linear with half_pixel)")
    imp.emit(node, "upsample", [x], {"mode": kind, "factor": f if len(f) == 2 else [1, f[0]]})


def op_conv_transpose(imp: _Importer, node: onnx.NodeProto) -> None:
    """ConvTranspose: one ``conv_transpose`` node (ops/conv_transpose.py)."""
    from ..ops.conv_transpose import swap_channel_axes

    a = _attrs(node)
    x = imp.act(node)
    w = imp.const(node, 1, "weight")
    b = imp.const(node, 2, "bias")
    nd = _spatial_rank(imp, node)
    if _str_attr(a, "auto_pad", "NOTSET") != "NOTSET" or "output_shape" in a:
        raise imp.unsupported(node, "auto_pad / output_shape (give pads and output_padding)")
    kernel = list(w.shape[2:])
    pads = list(a.get("pads", [0] * (2 * nd)))
    extra = list(a.get("output_padding", [0] * nd))
    groups = int(a.get("group", 1))
    attrs = _as_2d(nd, list(a.get("strides", [1] * nd)), pads[:nd], pads[nd:],
                   list(a.get("dilations", [1] * nd)), kernel)
    del attrs["kernel"]
    attrs["output_padding"] = extra if nd == 2 else [0, extra[0]]
    attrs["groups"] = groups
    params = {"weight": swap_channel_axes(np.asarray(w, np.float32), groups)}
    if b is not None:
        params["bias"] = b
    imp.emit(node, "conv_transpose", [x], attrs, params)


# ---- reach-transformer: LayerNormalization, MatMul of activations, Gather / Slice, ReduceMean,
# ---- per-last-axis biases of Linear over (N, ..., C) --------------------------------------------


def op_matmul_activations(imp: _Importer, node: onnx.NodeProto) -> None:
    a, b = node.input[0], node.input[1]
    if imp.is_const(a):
        raise imp.unsupported(node, "MatMul of a constant by a tensor")
    for t in (a, b):
        if len(imp.shape(node, t)) < 3:
            raise imp.unsupported(node, f"MatMul of {t!r} without a batch axis of its own")
        imp.sample_dim(node, t, -1)
        imp.sample_dim(node, t, -2)
    if imp.sample_shape(node, a)[:-2] != imp.sample_shape(node, b)[:-2]:
        raise imp.unsupported(node, f"MatMul of {imp.shape(node, a)} by {imp.shape(node, b)} "
                              "broadcasts the leading axes")
    imp.emit(node, "matmul", [imp.act(node, 0), imp.act(node, 1)],
             {"transpose_b": False, "alpha": 1.0})


def fold_last_axis_bias(imp: _Importer, node: onnx.NodeProto, x: str, c: np.ndarray) -> bool:
    """A constant along the last axis added to a Linear over (N, …, C) (torch exports Linear on
    tokens as MatMul + Add): it goes into the Linear's bias. False if that does not apply."""
    full = imp.shape(node, x)
    prod = imp.by_name.get(imp.ir_name.get(x, ""))
    if prod is None or prod.op != "linear" or len(full) <= 2 or prod.act is not None or \
            not imp.single_use(x) or x in {o.name for o in imp.model.graph.output}:
        return False
    v = np.broadcast_to(np.asarray(c, np.float32), full)
    last = v.reshape(-1, full[-1])[0]
    if not np.array_equal(v, np.broadcast_to(last, full)):
        return False
    old = prod.params.get("bias", np.zeros(full[-1], np.float32))
    prod.params["bias"] = (old + last).astype(np.float32)
    imp.ir_name[node.output[0]] = prod.name
    return True


def _slice_of(imp: _Importer, node: onnx.NodeProto, src: str, out: str, axis: int, start: int,
              stop: int, step: int, keepdim: bool) -> None:
    """``out`` = elements start:stop:step of axis ``axis`` of ``src`` (keepdim False: select)."""
    b = imp.batch_axis(src)
    full = imp.shape(node, src)
    count = len(range(start, stop, step))
    if count == 0:
        raise imp.unsupported(node, f"empty slice {start}:{stop}:{step} of axis {axis}")
    if axis == b:
        if count != 1:
            raise imp.unsupported(node, f"slices the batch axis to {count} elements")
        imp.batch[out] = b if keepdim else None
        imp.ir_name[out] = imp.ir_name[src]
        return
    imp.batch[out] = b if keepdim or b is None else (b if b < axis else b - 1)
    if keepdim and (start, stop, step) == (0, full[axis], 1):
        imp.ir_name[out] = imp.ir_name[src]
        return
    if src not in imp.ir_name or imp.ir_name[src] == _POISONED:
        raise _DependsOnUnsupported
    attrs = {"axis": imp.sample_dim(node, src, axis), "start": start, "stop": stop,
             "step": step, "keepdim": keepdim}
    imp.emit(node, "slice", [imp.ir_name[src]], attrs, out=out)


def op_gather(imp: _Importer, node: onnx.NodeProto) -> None:
    """x[:, i] (a scalar index: the axis is dropped) or x[:, [i, i+s, …]] (evenly spaced)."""
    data = node.input[0]
    full = imp.shape(node, data)
    idx = np.asarray(imp.const(node, 1, "indices"), np.int64)
    axis = int(_attrs(node).get("axis", 0))
    axis = axis + len(full) if axis < 0 else axis
    if idx.ndim > 1 or idx.size == 0:
        raise imp.unsupported(node, f"Gather with indices of shape {idx.shape}")
    vals = idx.reshape(-1) % full[axis]
    step = int(vals[1] - vals[0]) if vals.size > 1 else 1
    if step < 1 or not np.array_equal(vals, vals[0] + step * np.arange(vals.size)):
        raise imp.unsupported(node, f"Gather of indices {vals.tolist()} (only evenly "
                              "increasing ones)")
    imp.act(node)
    _slice_of(imp, node, data, node.output[0], axis, int(vals[0]), int(vals[-1]) + 1, step,
              keepdim=idx.ndim == 1)


def op_slice(imp: _Importer, node: onnx.NodeProto) -> None:
    """Slice over any axes: one slice per sliced axis (positive steps)."""
    data = node.input[0]
    full = list(imp.shape(node, data))
    r = len(full)
    if imp.opset < 10:
        a = _attrs(node)
        starts, ends = list(a["starts"]), list(a["ends"])
        axes = list(a.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts = imp.const(node, 1, "starts").astype(np.int64).tolist()
        ends = imp.const(node, 2, "ends").astype(np.int64).tolist()
        ax = imp.const(node, 3, "axes")
        axes = list(range(len(starts))) if ax is None else ax.astype(np.int64).tolist()
        st = imp.const(node, 4, "steps")
        steps = [1] * len(starts) if st is None else st.astype(np.int64).tolist()
    pieces = []
    for axis, s0, e0, st0 in zip(axes, starts, ends, steps, strict=True):
        axis = int(axis) + r if int(axis) < 0 else int(axis)
        if st0 < 1:
            raise imp.unsupported(node, f"Slice step {st0} (only positive steps)")
        start, stop, step = slice(int(s0), int(e0), int(st0)).indices(full[axis])
        if (start, stop, step) != (0, full[axis], 1):
            pieces.append((axis, start, stop, step))
    imp.act(node)
    if not pieces:
        imp.alias(node)
        return
    src = data
    for k, (axis, start, stop, step) in enumerate(pieces):
        out = node.output[0] if k == len(pieces) - 1 else f"{node.output[0]}__slice{k}"
        full[axis] = len(range(start, stop, step))
        imp.shapes.setdefault(out, tuple(full))
        _slice_of(imp, node, src, out, axis, start, stop, step, keepdim=True)
        src = out


def op_reduce_mean(imp: _Importer, node: onnx.NodeProto) -> None:
    """Mean over adjacent non-batch axes (e.g. over the tokens of (N, T, C))."""
    data = node.input[0]
    r = len(imp.shape(node, data))
    a = _attrs(node)
    axes = a.get("axes") if imp.opset < 18 else imp.const(node, 1, "axes")
    if axes is None or len(axes) == 0:
        if a.get("noop_with_empty_axes", 0):
            imp.alias(node)
            return
        raise imp.unsupported(node, "ReduceMean over every axis (the batch axis included)")
    axes = sorted(int(v) + r if int(v) < 0 else int(v) for v in np.asarray(axes).reshape(-1))
    sample_axes = [imp.sample_dim(node, data, v) for v in axes]
    if sample_axes != list(range(sample_axes[0], sample_axes[-1] + 1)):
        raise imp.unsupported(node, f"ReduceMean over the non-adjacent axes {axes}")
    imp.emit(node, "mean", [imp.act(node)],
             {"axes": sample_axes, "keepdim": bool(a.get("keepdims", 1))})


def op_layer_norm(imp: _Importer, node: onnx.NodeProto) -> None:
    """LayerNormalization (opset 17) over the axes from ``axis`` on."""
    x = node.input[0]
    full = imp.shape(node, x)
    a = _attrs(node)
    axis = int(a.get("axis", -1))
    axis = axis + len(full) if axis < 0 else axis
    for d in range(axis, len(full)):
        imp.sample_dim(node, x, d)
    norm_shape = tuple(full[axis:])
    size = int(np.prod(norm_shape))
    scale = imp.const(node, 1, "Scale")
    bias = imp.const(node, 2, "B")
    params = {"weight": np.broadcast_to(np.asarray(scale, np.float32), norm_shape).reshape(size),
              "bias": np.zeros(size, np.float32) if bias is None else
              np.broadcast_to(np.asarray(bias, np.float32), norm_shape).reshape(size)}
    imp.emit(node, "layer_norm", [imp.act(node)],
             {"eps": float(a.get("epsilon", 1e-5)), "dims": len(norm_shape)}, params)
# ---- recurrent layers (reach-rnn): ONNX GRU / LSTM, as torch.onnx exports nn.GRU / nn.LSTM ----
#
# One ONNX GRU / LSTM node is one layer; it becomes one float node (``gru`` / ``lstm``, see
# intquant/ops/gru.py) over a batch-first sequence. Around it torch.onnx writes a Transpose to
# time-major (layout 0), a Squeeze of the direction axis, then a Transpose back and a Gather of
# the last step (out[:, -1]), or a Gather of the last step of the time-major sequence, or a
# Squeeze of Y_h; the initial state is a constant (an Expand of zeros to the batch size).
# ``claim_onnx_recurrent`` recognises these before the walk (one of CLAIMS).

_ONNX_RNN = {"GRU": "gru", "LSTM": "lstm"}
# ir_name keys of a layer's own node and of time-major views: not ONNX tensors, so the final
# shape check (ONNX's shape of each tensor) skips them.
_PRIVATE = "\0rnn:"
# ONNX gate order -> PyTorch's: GRU z r h -> r z n; LSTM i o f c -> i f g o.
_TORCH_FROM_ONNX = {"gru": (1, 0, 2), "lstm": (0, 2, 3, 1)}


def _static(imp: _Importer, producers: dict, tensor: str) -> np.ndarray | None:
    """A constant known before the walk: an initializer or a Constant node's value."""
    if tensor in imp.consts:
        return imp.consts[tensor]
    p = producers.get(tensor)
    if p is not None and p.op_type == "Constant":
        a = {x.name: x for x in p.attribute}
        if "value" in a:
            return numpy_helper.to_array(a["value"].t)
        for k in ("value_int", "value_ints"):
            if k in a:
                return np.asarray(onnx.helper.get_attribute_value(a[k]))
    return None


def _axes(imp: _Importer, producers: dict, node: onnx.NodeProto) -> list[int] | None:
    a = _attrs(node)
    if "axes" in a:
        return [int(v) for v in a["axes"]]
    v = _static(imp, producers, node.input[1]) if len(node.input) > 1 else None
    return None if v is None else [int(x) for x in np.ravel(v)]


def _is_perm_swap(node: onnx.NodeProto, rank: int) -> bool:
    return node.op_type == "Transpose" and rank == 3 and \
        [int(p) for p in _attrs(node).get("perm", [])] == [1, 0, 2]


def _last_gather(imp: _Importer, producers: dict, node: onnx.NodeProto, axis: int,
                 size: int) -> bool:
    """Gather of index −1 (or size − 1) along ``axis``: the last step."""
    if node.op_type != "Gather" or int(_attrs(node).get("axis", 0)) != axis:
        return False
    idx = _static(imp, producers, node.input[1])
    return idx is not None and np.ndim(idx) == 0 and int(idx) in (-1, size - 1)


def _reorder_gates(a: np.ndarray, kind: str) -> np.ndarray:
    """Rows of ONNX's gate blocks in PyTorch's order (axis 0)."""
    parts = np.split(a, len(_TORCH_FROM_ONNX[kind]))
    return np.concatenate([parts[k] for k in _TORCH_FROM_ONNX[kind]])


def _onnx_layer_handler(kind: str, source: str, sequence: bool):
    def h(imp: _Importer, node: onnx.NodeProto) -> None:
        a = _attrs(node)
        direction = a.get("direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else direction
        if direction != "forward":
            raise imp.unsupported(node, f"direction {direction!r}; only forward layers")
        if kind == "gru" and int(a.get("linear_before_reset", 0)) != 1:
            raise imp.unsupported(node, "linear_before_reset=0 (PyTorch's nn.GRU exports 1)")
        if kind == "lstm" and int(a.get("input_forget", 0)):
            raise imp.unsupported(node, "input_forget=1")
        if "clip" in a or "activations" in a:
            raise imp.unsupported(node, "custom activations or clip")
        if len(node.input) > 4 and node.input[4]:
            raise imp.unsupported(node, "sequence_lens (every sequence has the full length)")
        if kind == "lstm" and len(node.input) > 7 and node.input[7]:
            raise imp.unsupported(node, "peephole weights P")
        hid = int(a["hidden_size"])
        w, r = imp.const(node, 1, "W")[0], imp.const(node, 2, "R")[0]
        b = imp.const(node, 3, "B")
        b = np.zeros(2 * w.shape[0], np.float32) if b is None else b[0]
        params = {"w_ih0": _reorder_gates(w, kind), "w_hh0": _reorder_gates(r, kind),
                  "b_ih0": _reorder_gates(b[:w.shape[0]], kind),
                  "b_hh0": _reorder_gates(b[w.shape[0]:], kind)}
        for key, idx in (("h0", 5), ("c0", 6))[:2 if kind == "lstm" else 1]:
            v = imp.const(node, idx, f"initial state {key}")
            if v is None:
                v = np.zeros(hid, np.float32)
            elif v.size != hid:
                raise imp.unsupported(node, f"initial state {key} differs per batch row")
            params[f"{key}0"] = np.asarray(v, np.float32).reshape(hid)
        key = source if source in imp.ir_name else _PRIVATE + source
        if imp.ir_name.get(key) == _POISONED:
            raise _DependsOnUnsupported
        if key not in imp.ir_name:
            raise imp.unsupported(node, "its input is not a time-major view (Transpose "
                                  "perm [1, 0, 2]) of a batch-first sequence")
        imp.emit(node, kind, [imp.ir_name[key]],
                 {"hidden_size": hid, "layers": 1, "sequence": sequence}, params,
                 out=_PRIVATE + node.output[0])
    return h


def _no_op_onnx(imp: _Importer, node: onnx.NodeProto) -> None:
    """A node a claimed pattern consumes."""


def _alias_onnx(layer: str, private: bool = False):
    """The tensor holds the layer's float node (its last step or its batch-first sequence);
    ``private``: the time-major sequence, kept under a key shape checks do not compare."""
    def h(imp: _Importer, node: onnx.NodeProto) -> None:
        key = _PRIVATE + node.output[0] if private else node.output[0]
        imp.ir_name[key] = imp.ir_name[_PRIVATE + layer]
    return h


def _refuse_onnx(message: str):
    def h(imp: _Importer, node: onnx.NodeProto) -> None:
        raise imp.unsupported(node, message)
    return h


def _dead(imp: _Importer, outputs: set[str], tensor: str) -> bool:
    return imp.uses.get(tensor, 0) == 0 and tensor not in outputs


def _claim_stacked_states(imp: _Importer, producers: dict, consumers: dict, outputs: set[str],
                          cat: onnx.NodeProto, state: str, k: int, last: list[str],
                          refused: dict) -> None:
    """torch.onnx's h_n of stacked layers: Concat of every layer's Y_h along axis 0. Its last
    entry (Gather −1) is the last layer's last step; nothing else of it is supported."""
    n = len(cat.input)
    mine = k == 1 and cat.input[-1] == state
    for v in consumers.get(cat.output[0], []):
        if v.op_type == "Shape" or _dead(imp, outputs, v.output[0]):
            continue
        if _last_gather(imp, producers, v, 0, n):
            if mine:
                last.append(v.output[0])
            continue
        refused[v.output[0]] = "uses the stacked states h_n / c_n; supported: h_n[-1]"
    imp.claimed[cat.output[0]] = _no_op_onnx


def claim_onnx_recurrent(imp: _Importer) -> None:
    """Claim the nodes around every ONNX GRU / LSTM (see the section comment)."""
    g = imp.model.graph
    producers = {o: n for n in g.node for o in n.output if o}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}
    time_major: set[str] = set()  # squeezed Y of a layout-0 layer
    for node in g.node:
        if node.op_type in _ONNX_RNN:
            _claim_onnx_layer(imp, node, producers, consumers, outputs, time_major)


def _claim_onnx_layer(imp: _Importer, node: onnx.NodeProto, producers: dict, consumers: dict,
                      outputs: set[str], time_major: set[str]) -> None:
    kind = _ONNX_RNN[node.op_type]
    layout = int(_attrs(node).get("layout", 0))
    x = node.input[0]
    steps = imp.shapes.get(x, (0, 0))[1 if layout else 0]
    source = x
    if not layout and x not in time_major:
        p = producers.get(x)
        if p is not None and _is_perm_swap(p, len(imp.shapes.get(x, ()))):
            source = p.input[0]
            if all(c.op_type in (*_ONNX_RNN, "Shape") for c in consumers.get(x, [])):
                imp.claimed[p.output[0]] = _no_op_onnx
    me = node.output[0]
    last, seq, refused, claims = [], False, {}, {}
    y = node.output[0] if node.output else ""
    for sq in consumers.get(y, []):
        if sq.op_type != "Squeeze" or _axes(imp, producers, sq) != [2 if layout else 1]:
            refused[sq.output[0]] = "uses Y before its direction axis is squeezed"
            continue
        s = sq.output[0]
        claims[s] = _alias_onnx(me, private=not layout)
        for u in consumers.get(s, []):
            if u.op_type == "Shape":  # reads only the (static) shape
                continue
            if _last_gather(imp, producers, u, 1 if layout else 0, steps):
                last.append(u.output[0])
            elif layout or u.op_type in _ONNX_RNN:
                seq = True
                if not layout:
                    time_major.add(s)
            elif _is_perm_swap(u, 3):
                claims[u.output[0]] = _alias_onnx(me)
                for v in consumers.get(u.output[0], []):
                    if v.op_type == "Shape":
                        continue
                    if _last_gather(imp, producers, v, 1, steps):
                        last.append(v.output[0])
                    else:
                        seq = True
                seq = seq or u.output[0] in outputs
            else:
                refused[u.output[0]] = ("uses the time-major sequence; take its last step or "
                                        "transpose it to batch-first")
        seq = seq or (layout and s in outputs)
    for k, what in ((1, "Y_h"), (2, "Y_c")):
        t = node.output[k] if len(node.output) > k else ""
        for u in consumers.get(t, []) if t else []:
            if u.op_type == "Shape" or _dead(imp, outputs, u.output[0]):
                continue
            if u.op_type == "Concat" and not layout and int(_attrs(u).get("axis", 0)) == 0:
                _claim_stacked_states(imp, producers, consumers, outputs, u, t, k, last,
                                      refused)
                continue
            squeezed = u.op_type == "Squeeze" and _axes(imp, producers, u) == [1 if layout else 0]
            gathered = u.op_type == "Gather" and not layout and _last_gather(imp, producers, u,
                                                                             0, 1)
            if k == 1 and (squeezed or gathered):
                last.append(u.output[0])
            else:
                refused[u.output[0]] = f"uses {what}; supported: the last step of Y or Y_h"
    if seq and last:
        for t in last:
            refused[t] = "the last step is taken while the whole sequence is used too"
        last = []
    imp.claimed[me] = _onnx_layer_handler(kind, source, seq)
    for t, h in claims.items():
        imp.claimed[t] = h
    for t in last:
        imp.claimed[t] = _alias_onnx(me)
    for t, message in refused.items():
        imp.claimed[t] = _refuse_onnx(message)


# ---- GRUCell / LSTMCell loops (reach-rnn): the unrolled steps torch.onnx writes ---------------
#
# torch.onnx (the TorchScript exporter and the dynamo one alike) unrolls
# ``for t: h = cell(x[:, t], h)`` into the same nodes at every step: two Gemms (or MatMul + Add)
# with the cell's weights, a Split of the gate pre-activations, Sigmoid / Tanh, and the state
# update — GRU: r = σ(gi_r + gh_r), z = σ(gi_z + gh_z), n = tanh(gi_n + r·gh_n),
# h' = (h − n)·z + n; LSTM: (i, f, g, o) = split(gi + gh), c' = σ(f)·c + σ(i)·tanh(g),
# h' = σ(o)·tanh(c'). ``claim_onnx_cell_loops`` matches each step node for node (Add and Mul
# operands in either order), links the steps that continue one state with equal weights into a
# loop, and checks, as capture.py does for torch.export, what the loop reads — x[:, t] for every
# t in order (Gather, or Split / Slice + Squeeze, of x or of x.transpose(0, 1)), or every state
# of another loop (stacked cells) — and what reads it: its last state, or every state stacked
# along axis 1 (Unsqueeze + Concat). The loop becomes one ``gru`` / ``lstm`` node, the node
# torch.export's capture gives. A Split of a Gemm into 3 or 4 equal parts that is not such a
# step, or a loop used otherwise, is refused at one node with what did not match.

_CELL_WHAT = {"gru": "GRUCell", "lstm": "LSTMCell"}
_CELL_GATES = {3: "gru", 4: "lstm"}
_ZERO_STATE = "\0zeros"  # the initial h of a loop whose first hidden-side gates were folded


class _NoMatch(Exception):
    """Why the nodes around a gate Split are not one cell step."""


class _Net:
    """Producers and consumers of every tensor of the model, for the pattern matches."""

    def __init__(self, imp: _Importer) -> None:
        g = imp.model.graph
        self.imp = imp
        self.producer = {o: n for n in g.node for o in n.output if o}
        self.users: dict[str, list[onnx.NodeProto]] = {}
        for n in g.node:
            for i in n.input:
                if n.op_type != "Shape":  # Shape reads only the static shape
                    self.users.setdefault(i, []).append(n)
        self.outputs = {o.name for o in g.output}

    def static(self, tensor: str) -> np.ndarray | None:
        """A constant known before the walk, also behind Identity nodes (torch.onnx writes
        a weight read at several steps as Identity copies of one initializer)."""
        p = self.producer.get(tensor)
        while p is not None and p.op_type == "Identity" and tensor not in self.imp.consts:
            tensor = p.input[0]
            p = self.producer.get(tensor)
        return _static(self.imp, self.producer, tensor)

    def made_by(self, tensor: str, *ops: str) -> onnx.NodeProto | None:
        p = self.producer.get(tensor)
        return p if p is not None and p.op_type in ops else None

    def need(self, tensor: str, op: str, what: str) -> onnx.NodeProto:
        p = self.made_by(tensor, op)
        if p is None:
            raise _NoMatch(f"{what} is not a {op}")
        return p

    def only_user(self, tensor: str, op: str, what: str) -> onnx.NodeProto:
        """The single consumer of ``tensor``, which must be an ``op``."""
        us = self.users.get(tensor, [])
        if len(us) != 1 or us[0].op_type != op or tensor in self.outputs:
            raise _NoMatch(f"{what} is not used by one {op} only")
        return us[0]


def _other(node: onnx.NodeProto, tensor: str, what: str) -> str:
    """The other operand of a two-input Add / Mul / Sub that reads ``tensor``."""
    ins = list(node.input)
    if len(ins) != 2 or tensor not in ins or ins[0] == ins[1]:
        raise _NoMatch(f"{what}: node {node.name or node.output[0]!r} is not a two-input "
                       f"{node.op_type} of it")
    return ins[1 - ins.index(tensor)]


@dataclass
class _CellLinear:
    """y = input·Wᵀ + b with constant W (out, in) and b: a Gemm, a MatMul, or MatMul + Add."""

    input: str
    weight: np.ndarray
    bias: np.ndarray | None
    nodes: list[onnx.NodeProto]


def _cell_linear(net: _Net, tensor: str) -> _CellLinear:
    p = net.made_by(tensor, "Gemm", "MatMul", "Add")
    if p is None:
        raise _NoMatch("a gate pre-activation is not a Gemm / MatMul of the cell's weights")
    if p.op_type == "Add":
        consts = [i for i in p.input if net.static(i) is not None]
        if len(consts) != 1 or len(p.input) != 2:
            raise _NoMatch("a gate pre-activation is not a Gemm / MatMul of the cell's weights")
        inner = _cell_linear(net, _other(p, consts[0], "the bias add"))
        if inner.bias is not None or net.only_user(inner.nodes[0].output[0], "Add",
                                                   "the MatMul") is not p:
            raise _NoMatch("a gate MatMul has two biases")
        return _CellLinear(inner.input, inner.weight,
                           np.ravel(net.static(consts[0])).astype(np.float32), inner.nodes + [p])
    w = net.static(p.input[1])
    if w is None or np.ndim(w) != 2:
        raise _NoMatch(f"the weight of {p.op_type} {p.name!r} is not a constant matrix")
    if p.op_type == "MatMul":
        return _CellLinear(p.input[0], np.asarray(w, np.float32).T, None, [p])
    a = _attrs(p)
    if float(a.get("alpha", 1.0)) != 1.0 or float(a.get("beta", 1.0)) != 1.0 or \
            int(a.get("transA", 0)):
        raise _NoMatch(f"Gemm {p.name!r} has alpha, beta or transA")
    w = np.asarray(w, np.float32) if int(a.get("transB", 0)) else np.asarray(w, np.float32).T
    b = net.static(p.input[2]) if len(p.input) > 2 and p.input[2] else None
    if len(p.input) > 2 and p.input[2] and (b is None or np.size(b) != w.shape[0]):
        raise _NoMatch(f"the bias of Gemm {p.name!r} is not a constant vector")
    return _CellLinear(p.input[0], w, None if b is None else np.ravel(b).astype(np.float32),
                       [p])


@dataclass
class _CellStep:
    """One step of a cell loop: what it reads, what it writes, and its nodes."""

    kind: str
    split: onnx.NodeProto  # the gate Split (the node refusals name)
    final: onnx.NodeProto  # the node writing h'
    linears: list[_CellLinear]  # GRU: [x side, h side]; LSTM: order known once linked
    h_in: str | None
    c_in: str | None
    c_out: str | None
    nodes: list[onnx.NodeProto]

    @property
    def h_out(self) -> str:
        return self.final.output[0]

    @property
    def x(self) -> str:
        return self.linears[0].input

    def weights(self) -> tuple:
        (wx, wh) = self.linears
        return wx.weight, wh.weight, wx.bias, wh.bias


def _split_sizes(net: _Net, s: onnx.NodeProto) -> list[int] | None:
    """The part sizes of a Split, None when it splits into equal parts (no sizes given)."""
    if len(s.input) > 1 and s.input[1]:
        v = net.static(s.input[1])
        return None if v is None else [int(d) for d in np.ravel(v)]
    a = _attrs(s)
    return [int(d) for d in a["split"]] if "split" in a else None


def _gate_split(net: _Net, s: onnx.NodeProto) -> str | None:
    """The kind of a Split into 3 (GRU) or 4 (LSTM) equal parts along axis 1 of a Gemm /
    MatMul / Add output: the candidates of a cell step (shapes may be unknown before the walk:
    a state expanded from a parameter to the batch size)."""
    if s.op_type != "Split" or len(s.output) not in _CELL_GATES or \
            net.made_by(s.input[0], "Gemm", "MatMul", "Add") is None or \
            int(_attrs(s).get("axis", 0)) not in (1, -1):
        return None
    sizes = _split_sizes(net, s)
    if sizes is not None and len(set(sizes)) != 1:
        return None
    return _CELL_GATES[len(s.output)]


def _check_interior(net: _Net, step: _CellStep, keep: set[str]) -> None:
    """Every tensor a step computes, except ``keep`` (its states), is read inside the step."""
    mine = {id(n) for n in step.nodes}
    for n in step.nodes:
        for o in n.output:
            if o in keep or not o:
                continue
            if o in net.outputs or any(id(u) not in mine for u in net.users.get(o, [])):
                raise _NoMatch(f"the step's tensor {o!r} is also used outside the step")


def _match_gru(net: _Net, sh: onnx.NodeProto) -> _CellStep:
    """The GRU step whose hidden-side gate Split is ``sh`` (its third part is multiplied by r)."""
    m = net.only_user(sh.output[2], "Mul", "the third part of the Split (r·gh_n)")
    r = net.need(_other(m, sh.output[2], "r·gh_n"), "Sigmoid", "the reset gate r")
    add_r = net.need(r.input[0], "Add", "the input of the reset gate")
    si = net.need(_other(add_r, sh.output[0], "gi_r + gh_r"), "Split", "the input-side gates")
    if len(si.output) != 3 or si.output[0] != _other(add_r, sh.output[0], "gi_r + gh_r"):
        raise _NoMatch("the reset gate does not add the first parts of both gate Splits")
    add_z = net.only_user(sh.output[1], "Add", "the second part of the Split (gh_z)")
    if _other(add_z, sh.output[1], "gi_z + gh_z") != si.output[1]:
        raise _NoMatch("the update gate does not add the second parts of both gate Splits")
    z = net.only_user(add_z.output[0], "Sigmoid", "gi_z + gh_z")
    add_n = net.only_user(m.output[0], "Add", "r·gh_n")
    if _other(add_n, m.output[0], "gi_n + r·gh_n") != si.output[2]:
        raise _NoMatch("the new gate does not add the third part of the input-side Split")
    tanh_n = net.only_user(add_n.output[0], "Tanh", "gi_n + r·gh_n")
    n = tanh_n.output[0]
    users = net.users.get(n, [])
    sub = next((u for u in users if u.op_type == "Sub" and list(u.input[1:]) == [n]), None)
    if sub is None or len(users) != 2:
        raise _NoMatch("the new gate n is not used as h − n and + n (h' = (h − n)·z + n)")
    mul_z = net.only_user(sub.output[0], "Mul", "h − n")
    if _other(mul_z, sub.output[0], "(h − n)·z") != z.output[0]:
        raise _NoMatch("h − n is not multiplied by the update gate z")
    final = net.only_user(mul_z.output[0], "Add", "(h − n)·z")
    if _other(final, mul_z.output[0], "(h − n)·z + n") != n or final not in users:
        raise _NoMatch("(h − n)·z is not added to n")
    lx, lh = _cell_linear(net, si.input[0]), _cell_linear(net, sh.input[0])
    hid = lh.weight.shape[1]
    if lh.input != sub.input[0]:
        raise _NoMatch("the state in h − n is not the one the hidden-side Gemm reads")
    if lh.weight.shape != (3 * hid, hid) or lx.weight.shape[0] != 3 * hid:
        raise _NoMatch(f"the weights have shapes {lx.weight.shape} and {lh.weight.shape}, not "
                       f"(3·{hid}, F) and (3·{hid}, {hid})")
    nodes = lx.nodes + lh.nodes + [si, sh, m, r, add_r, add_z, z, add_n, tanh_n, sub, mul_z,
                                   final]
    step = _CellStep("gru", sh, final, [lx, lh], lh.input, None, None, nodes)
    _check_interior(net, step, {final.output[0]})
    return step


def _match_lstm(net: _Net, s: onnx.NodeProto) -> _CellStep:
    """The LSTM step whose gate Split is ``s``; which Gemm reads the state is known once the
    steps are linked (``_orient_lstm``)."""
    add = net.need(s.input[0], "Add", "the gate pre-activation (gi + gh)")
    if len(add.input) != 2:
        raise _NoMatch("the gate pre-activation is not gi + gh")
    folded = [net.static(t) for t in add.input]
    if folded[0] is not None and folded[1] is None:  # the first step's h·W_hhᵀ + b_hh of a
        folded.reverse()  # constant h0, folded by the exporter: see _orient_first_lstm
        add_in = list(add.input)[::-1]
    else:
        add_in = list(add.input)
    la = _cell_linear(net, add_in[0])
    lb = _CellLinear(add_in[1], None, folded[1], []) if folded[1] is not None else \
        _cell_linear(net, add_in[1])
    i, f, g, o = (net.only_user(s.output[k], op, f"gate {k} of the Split")
                  for k, op in enumerate(("Sigmoid", "Sigmoid", "Tanh", "Sigmoid")))
    mul_f = net.only_user(f.output[0], "Mul", "the forget gate")
    c_in = _other(mul_f, f.output[0], "f·c")
    mul_ig = net.only_user(i.output[0], "Mul", "the input gate")
    if _other(mul_ig, i.output[0], "i·g") != g.output[0] or \
            net.only_user(g.output[0], "Mul", "the cell gate") is not mul_ig:
        raise _NoMatch("the input gate is not multiplied by the cell gate")
    add_c = net.only_user(mul_f.output[0], "Add", "f·c")
    if _other(add_c, mul_f.output[0], "f·c + i·g") != mul_ig.output[0]:
        raise _NoMatch("c' is not f·c + i·g")
    c_out = add_c.output[0]
    tanhs = [u for u in net.users.get(c_out, []) if u.op_type == "Tanh"]
    if len(tanhs) != 1:
        raise _NoMatch("c' is not read by one Tanh")
    final = net.only_user(tanhs[0].output[0], "Mul", "tanh(c')")
    if _other(final, tanhs[0].output[0], "o·tanh(c')") != o.output[0] or \
            net.only_user(o.output[0], "Mul", "the output gate") is not final:
        raise _NoMatch("h' is not the output gate times tanh(c')")
    hid = la.weight.shape[0] // 4
    wb = np.zeros((4 * hid, hid)) if lb.weight is None else lb.weight  # (folded: W_hh unseen)
    if la.weight.shape[0] != wb.shape[0] or la.weight.shape[0] != 4 * hid or \
            hid not in (la.weight.shape[1], wb.shape[1]):
        raise _NoMatch(f"the weights have shapes {la.weight.shape} and {wb.shape}, not "
                       "(4·H, F) and (4·H, H)")
    if lb.weight is None and np.size(lb.bias) % (4 * hid):
        raise _NoMatch(f"the constant gate term has {np.size(lb.bias)} entries")
    nodes = la.nodes + lb.nodes + [add, s, i, f, g, o, mul_f, mul_ig, add_c, tanhs[0], final]
    step = _CellStep("lstm", s, final, [la, lb], None, c_in, c_out, nodes)
    _check_interior(net, step, {final.output[0], c_out})
    return step


def _hidden_side(net: _Net, s: onnx.NodeProto) -> onnx.NodeProto:
    """A GRU step's hidden-side gate Split, from either of its two Splits (the input side's
    third part is added to r·gh_n): both report the same mismatch."""
    us = net.users.get(s.output[2], [])
    if len(us) == 1 and us[0].op_type == "Add" and len(us[0].input) == 2:
        m = net.made_by(us[0].input[1 - list(us[0].input).index(s.output[2])], "Mul")
        for t in m.input if m is not None else ():
            p = net.made_by(t, "Split")
            if p is not None and p is not s and len(p.output) == 3 and t == p.output[2]:
                return p
    return s


def _match_step(net: _Net, s: onnx.NodeProto, kind: str) -> _CellStep:
    if kind == "gru":
        return _match_gru(net, _hidden_side(net, s))
    return _match_lstm(net, s)


@dataclass
class _CellLoop:
    """Steps that continue one state with equal weights: one recurrent layer."""

    kind: str
    steps: list[_CellStep]
    source: str | None = None  # the batch-first (N, T, F) sequence read x[:, t] by x[:, t]
    inputs_from: _CellLoop | None = None  # or: the states of another loop
    select_nodes: list[onnx.NodeProto] = field(default_factory=list)
    stack: onnx.NodeProto | None = None  # Concat of every state along axis 1
    stack_nodes: list[onnx.NodeProto] = field(default_factory=list)
    sequence: bool = False

    @property
    def last(self) -> str:
        return self.steps[-1].h_out


def _same_weights(a: tuple, b: tuple) -> bool:
    return all((x is None and y is None) or (x is not None and y is not None and
               x.shape == y.shape and np.array_equal(x, y)) for x, y in zip(a, b, strict=True))


def _link_steps(steps: list[_CellStep]) -> tuple[list[_CellLoop], dict[int, str]]:
    """Chains of steps, each continuing the state of the one before (LSTM: its c; GRU: its h)
    with the same weights; and why a step cannot be linked (by id of its loop's first step)."""
    by_state = {(s.c_out if s.kind == "lstm" else s.h_out): s for s in steps}
    prev: dict[int, _CellStep] = {}
    nxt: dict[int, _CellStep] = {}
    why: dict[int, str] = {}
    for s in steps:
        p = by_state.get(s.c_in if s.kind == "lstm" else s.h_in)
        if p is None or p.kind != s.kind:
            continue
        if id(p) in nxt:
            why[id(p)] = "two steps continue one state: not a loop"
        prev[id(s)], nxt[id(p)] = p, s
        if s.kind == "lstm":
            why_s = _orient_lstm(s, p.h_out)
            if why_s:
                why[id(s)] = why_s
    loops = []
    for s in steps:
        if id(s) in prev:
            continue
        chain = [s]
        while id(chain[-1]) in nxt:
            chain.append(nxt[id(chain[-1])])
        loops.append(_CellLoop(s.kind, chain))
    return loops, why


def _orient_lstm(step: _CellStep, h_prev: str) -> str | None:
    """Put the Gemm reading the previous step's h second (the hidden side)."""
    reads = [lin.input == h_prev for lin in step.linears]
    if reads.count(True) != 1:
        return "a step does not read the previous step's h through exactly one of its Gemms"
    if reads[0]:
        step.linears.reverse()
    step.h_in = h_prev
    return None


def _orient_first_lstm(loop: _CellLoop, net: _Net, by_state: dict) -> str | None:
    """The first step of an LSTM loop has no previous h: its hidden-side Gemm is the one with
    the later steps' hidden weights, or (one step only) the one not reading x[:, t]."""
    first = loop.steps[0]
    if first.linears[1].weight is None:
        return _unfold_first_lstm(loop)
    if len(loop.steps) > 1:
        ref = loop.steps[1].linears
        for order in (first.linears, first.linears[::-1]):
            if all(a.weight.shape == b.weight.shape and np.array_equal(a.weight, b.weight)
                   for a, b in zip(order, ref, strict=True)):
                if order is not first.linears:
                    first.linears.reverse()
                first.h_in = first.linears[1].input
                return None
        return "its steps do not share their weights"
    reads_x = [_time_step_onnx(net, lin.input) is not None or lin.input in by_state
               for lin in first.linears]
    if reads_x.count(True) != 1:
        return "its one step does not read x[:, t] through exactly one of its Gemms"
    if reads_x[1]:
        first.linears.reverse()
    first.h_in = first.linears[1].input
    return None


def _unfold_first_lstm(loop: _CellLoop) -> str | None:
    """The exporter folded the first step's hidden-side gates h0·W_hhᵀ + b_hh into a constant
    (the dynamo exporter does so for zeros h0 at a static batch size): when that constant is
    b_hh in every row, h0 = 0 computes the same step (h0 enters an LSTM step only through
    W_hh); the weights come from the second step."""
    first = loop.steps[0]
    if len(loop.steps) < 2:
        return ("its one step has its hidden-side gates folded into a constant by the exporter "
                "(the hidden weights are not in the file; export with dynamo=False)")
    _, w_hh, _, b_hh = loop.steps[1].weights()
    rows = np.asarray(first.linears[1].bias, np.float32).reshape(-1, w_hh.shape[0])
    b = np.zeros(w_hh.shape[0], np.float32) if b_hh is None else b_hh
    if not (rows == b).all():
        return ("the exporter folded its first step's hidden-side gates into a constant "
                     "that is not b_hh (an initial h other than zeros; export with dynamo=False)")
    first.linears[1] = _CellLinear(_ZERO_STATE, w_hh, b_hh, [])
    first.h_in = _ZERO_STATE
    return None


def _time_step_onnx(net: _Net, tensor: str) -> tuple[str, int, int, list] | None:
    """(sequence, axis, index, nodes) of x_t = Gather(seq, t, axis) or Squeeze(Split(seq)[t])
    or Squeeze(Slice(seq, t, t + 1)) along the same axis."""
    g = net.made_by(tensor, "Gather")
    if g is not None:
        idx = net.static(g.input[1])
        if idx is None or np.ndim(idx) != 0:
            return None
        return g.input[0], int(_attrs(g).get("axis", 0)), int(idx), [g]
    sq = net.made_by(tensor, "Squeeze")
    if sq is None:
        return None
    axes = _axes(net.imp, net.producer, sq)
    part = sq.input[0]
    p = net.made_by(part, "Split", "Slice")
    if p is None or axes is None or len(axes) != 1:
        return None
    rank = len(net.imp.shapes.get(p.input[0], ()))
    if rank == 0:
        return None
    if p.op_type == "Split":
        sizes = _split_sizes(net, p)
        if axes[0] % rank != int(_attrs(p).get("axis", 0)) % rank or (
                sizes or [net.imp.shapes[p.input[0]][axes[0] % rank] // len(p.output)]) != \
                [1] * len(sizes or [1]):
            return None
        return p.input[0], axes[0], list(p.output).index(part), [sq, p]
    starts, ends = (net.static(p.input[k]) for k in (1, 2))
    sl_axes = net.static(p.input[3]) if len(p.input) > 3 and p.input[3] else None
    steps = net.static(p.input[4]) if len(p.input) > 4 and p.input[4] else None
    if starts is None or ends is None or np.size(starts) != 1 or (
            sl_axes is not None and int(np.ravel(sl_axes)[0]) % rank != axes[0] % rank) or (
            steps is not None and int(np.ravel(steps)[0]) != 1):
        return None
    size = net.imp.shapes[p.input[0]][axes[0] % rank]
    start, end = int(np.ravel(starts)[0]), int(np.ravel(ends)[0])
    start = start + size if start < 0 else start
    end = end + size if end < 0 else min(end, size)
    if end - start != 1:
        return None
    return p.input[0], axes[0], start, [sq, p]


def _locate_cell_steps(net: _Net, loop: _CellLoop, by_state: dict) -> str | None:
    """What the loop reads at each step (see capture._locate_steps); None, or why not."""
    steps = [_time_step_onnx(net, s.x) for s in loop.steps]
    if all(s is not None for s in steps):
        seq, axis = steps[0][0], steps[0][1]
        if any(s[0] != seq or s[1] != axis for s in steps):
            return "its steps read different sequences"
        size = net.imp.shapes.get(seq, ())
        if len(size) != 3 or axis % 3 not in (0, 1):
            return "its steps do not read x[:, t] of a (N, T, F) sequence"
        axis %= 3
        if [s[2] % size[axis] for s in steps] != list(range(size[axis])):
            return f"it does not read every step 0 .. {size[axis] - 1} of the sequence in order"
        if axis == 0:
            p = net.made_by(seq, "Transpose")
            if p is None or not _is_perm_swap(p, 3):
                return "it loops over the first axis of a tensor that is not x.transpose(0, 1)"
            loop.source = p.input[0]
            loop.select_nodes.append(p)
        else:
            loop.source = seq
        loop.select_nodes += [n for s in steps for n in s[3]]
        return None
    below = stacked_on([by_state.get(s.x) for s in loop.steps], lambda lower: len(lower.steps))
    if below is not None:
        loop.inputs_from = below
        below.sequence = True
        return None
    return "its inputs are neither x[:, t] for every step nor the states of another loop"


def _stacked_states(net: _Net, loop: _CellLoop, states: list[str]) -> onnx.NodeProto | None:
    """The Concat(Unsqueeze(h_t, 1) for every t, axis=1) of torch.stack(states, dim=1)."""
    unsq = []
    for h in states:
        us = [u for u in net.users.get(h, []) if u.op_type == "Unsqueeze"]
        if len(us) != 1 or _axes(net.imp, net.producer, us[0]) not in ([1], [-2]):
            return None
        unsq.append(us[0])
    cats = {id(u): u for x in unsq for u in net.users.get(x.output[0], [])}
    if len(cats) != 1:
        return None
    cat = next(iter(cats.values()))
    if cat.op_type != "Concat" or int(_attrs(cat).get("axis", 0)) % 3 != 1 or \
            list(cat.input) != [x.output[0] for x in unsq]:
        return None
    loop.stack_nodes = unsq
    return cat


def _check_cell_uses(net: _Net, loop: _CellLoop, dependents: list[_CellLoop]) -> str | None:
    """How the loop's states are used (see capture._claim_chain); None, or why not."""
    states = [s.h_out for s in loop.steps]
    ours = {id(n) for s in loop.steps for n in s.nodes} | \
        {id(n) for d in dependents for s in d.steps for n in s.linears[0].nodes}
    loop.stack = _stacked_states(net, loop, states)
    if loop.stack is not None:
        ours |= {id(n) for n in loop.stack_nodes}
    loop.sequence = loop.sequence or loop.stack is not None
    last_used = states[-1] in net.outputs
    for k, h in enumerate(states):
        for u in net.users.get(h, []):
            if id(u) in ours:
                continue
            if k < len(states) - 1:
                return f"the state after step {k} is used by {u.op_type} {u.name!r}"
            last_used = True
    if loop.sequence and last_used:
        return "both its last state and its whole sequence of states are used"
    if loop.kind == "lstm":
        for k, s in enumerate(loop.steps):
            inside = {id(n) for n in s.nodes} | (
                {id(n) for n in loop.steps[k + 1].nodes} if k + 1 < len(loop.steps) else set())
            if s.c_out in net.outputs or any(id(u) not in inside
                                             for u in net.users.get(s.c_out, [])):
                return f"the cell state after step {k} is used outside the loop"
    return None


def _cell_loop_handler(loop: _CellLoop):
    def h(imp: _Importer, node: onnx.NodeProto) -> None:
        first, what = loop.steps[0], _CELL_WHAT[loop.kind]
        w_ih, w_hh, b_ih, b_hh = first.weights()
        hid, rows = int(w_hh.shape[1]), int(w_hh.shape[0])
        params = {"w_ih0": w_ih, "w_hh0": w_hh,
                  "b_ih0": np.zeros(rows, np.float32) if b_ih is None else b_ih,
                  "b_hh0": np.zeros(rows, np.float32) if b_hh is None else b_hh}
        for key, t in (("h0", first.h_in), ("c0", first.c_in))[:2 if loop.kind == "lstm" else 1]:
            v = np.zeros(hid, np.float32) if t == _ZERO_STATE else imp.consts.get(t)
            if v is None or np.size(v) % hid:
                raise imp.unsupported(node, f"the initial {key[0]} of the {what} loop ({t!r}) "
                                      "is not a constant; it must be zeros or a parameter, not "
                                      "computed from the input")
            v = np.asarray(v, np.float32).reshape(-1, hid)
            if not (v == v[0]).all():
                raise imp.unsupported(node, f"the initial {key[0]} of the {what} loop differs "
                                      "per batch row")
            params[f"{key}0"] = v[0]
        key = _PRIVATE + loop.inputs_from.last if loop.inputs_from else loop.source
        if imp.ir_name.get(key) == _POISONED or (loop.inputs_from and key not in imp.ir_name):
            raise _DependsOnUnsupported  # (the loop it reads was refused)
        if key not in imp.ir_name:
            raise imp.unsupported(node, f"the {what} loop reads a constant sequence")
        n = imp.emit(node, loop.kind, [imp.ir_name[key]],
                     {"hidden_size": hid, "layers": 1, "sequence": loop.sequence}, params,
                     out=_PRIVATE + loop.last)
        if not loop.sequence:
            imp.ir_name[loop.last] = n.name
        # shape inference cannot follow a state expanded from a parameter to the batch size
        steps = len(loop.steps)
        imp.shapes.setdefault(loop.last, (imp.batch_size, hid))
        if loop.stack is not None:
            imp.shapes.setdefault(loop.stack.output[0], (imp.batch_size, steps, hid))
    return h


def _silently_poisoned(imp: _Importer, node: onnx.NodeProto) -> None:
    """A node of a refused loop that another node already reports."""
    raise _DependsOnUnsupported


def claim_onnx_cell_loops(imp: _Importer) -> None:
    """Claim the nodes of GRUCell / LSTMCell loops (see the section comment)."""
    net = _Net(imp)
    steps, failed, in_steps = [], [], set()
    for node in imp.model.graph.node:
        cand = _gate_split(net, node)
        if cand is None or id(node) in in_steps:  # (a GRU's other Split)
            continue
        try:
            steps.append(_match_step(net, node, cand))
            in_steps |= {id(n) for n in steps[-1].nodes}
        except _NoMatch as e:
            failed.append((node, cand, str(e)))
    failed = [f for f in failed if id(f[0]) not in in_steps]
    for k, (node, kind, why) in enumerate(failed):
        imp.claimed[node.output[0]] = _silently_poisoned if k else _refuse_onnx(
            f"splits a Gemm into {len(node.output)} equal parts like a {_CELL_WHAT[kind]} step, "
            f"but {why} (supported: {_CELL_WHAT[kind]} loops as torch.onnx exports them)")
    loops, link_why = _link_steps(steps)
    by_state = {s.h_out: (loop, k) for loop in loops for k, s in enumerate(loop.steps)}
    why = {id(loop): next((link_why[id(s)] for s in loop.steps if id(s) in link_why), None)
           for loop in loops}
    for loop in loops:
        if why[id(loop)] is None and loop.kind == "lstm":
            why[id(loop)] = _orient_first_lstm(loop, net, by_state)
    for loop in loops:
        if why[id(loop)] is None and not _same_weights_all(loop):
            why[id(loop)] = "its steps do not share their weights"
    for loop in loops:
        why[id(loop)] = why[id(loop)] or _locate_cell_steps(net, loop, by_state)
    for loop in loops:
        dependents = [d for d in loops if d.inputs_from is loop]
        why[id(loop)] = why[id(loop)] or _check_cell_uses(net, loop, dependents)
    for loop in loops:
        _claim_cell_loop(imp, net, loop, why[id(loop)])


def _same_weights_all(loop: _CellLoop) -> bool:
    w = loop.steps[0].weights()
    return all(_same_weights(w, s.weights()) for s in loop.steps[1:])


def _claim_cell_loop(imp: _Importer, net: _Net, loop: _CellLoop, why: str | None) -> None:
    what = _CELL_WHAT[loop.kind]
    if why is not None:  # reported once, at the first step (the others depend on it)
        splits = [n for s in loop.steps for n in s.nodes if n.op_type == "Split"]
        for n in splits:
            imp.claimed[n.output[0]] = _silently_poisoned
        imp.claimed[loop.steps[0].split.output[0]] = _refuse_onnx(
            f"a {what} loop that intquant cannot run as one recurrent layer: {why} "
            "(supported: h = cell(x[:, t], h) for every t in order, h starting from a "
            "constant such as zeros; then the last h, or torch.stack of every h along dim 1)")
        return
    for s in loop.steps:
        for n in s.nodes:
            imp.claimed[n.output[0]] = _no_op_onnx
    imp.claimed[loop.last] = _cell_loop_handler(loop)
    if loop.stack is not None:
        for n in loop.stack_nodes:
            imp.claimed[n.output[0]] = _no_op_onnx
        imp.claimed[loop.stack.output[0]] = _alias_onnx(loop.last)
    claimed = {id(n) for s in loop.steps for n in s.nodes}
    pending = {id(n): n for n in loop.select_nodes}
    while pending:  # x[:, t] selections read only by the loop (and by each other)
        done = [k for k, n in pending.items() if all(
            id(u) in claimed for o in n.output if o for u in net.users.get(o, []))]
        if not done:
            break
        for k in done:
            imp.claimed[pending[k].output[0]] = _no_op_onnx
            claimed.add(k)
            del pending[k]


HANDLERS: dict[str, Callable[[_Importer, onnx.NodeProto], None]] = {
    "Conv": op_conv,
    "Gemm": op_gemm,
    "MatMul": op_matmul,
    "Add": op_add_sub,
    "Sub": op_add_sub,
    "Sum": op_sum,
    "Mul": op_mul_div,
    "Div": op_mul_div,
    "Relu": _simple("relu"),
    "Clip": op_clip,
    "LeakyRelu": _simple("leaky_relu", lambda a: {"negative_slope": float(a.get("alpha", 0.01))}),
    "Sigmoid": _simple("sigmoid"),
    "Tanh": _simple("tanh"),
    "Softmax": op_softmax,
    "MaxPool": op_pool,
    "AveragePool": op_pool,
    "GlobalAveragePool": op_global_avg_pool,
    "BatchNormalization": op_batchnorm,
    "Flatten": op_reshape_like,
    "Reshape": op_reshape_like,
    "Squeeze": op_reshape_like,
    "Unsqueeze": op_reshape_like,
    "Transpose": op_transpose,
    "Concat": op_concat,
    "Pad": op_pad,
    "Identity": op_identity,
    "Dropout": op_dropout,
    "Shape": op_shape,
    "LRN": op_lrn,

    # -- two-activation ops and activations --
    "HardSwish": _simple("hardswish"),
    "HardSigmoid": op_hardsigmoid,
    "Gelu": op_gelu,
    "Elu": op_elu,
    "Selu": op_elu,
    "Celu": op_celu,
    "PRelu": op_prelu,
    "Erf": _simple("erf"),

    # -- transformer pieces: normalisation, matmul, slicing --
    "LayerNormalization": op_layer_norm,
    "Gather": op_gather,
    "Slice": op_slice,
    "ReduceMean": op_reduce_mean,

    # -- recurrent layers --
    "GRU": _refuse_onnx("a GRU whose surroundings intquant does not recognise"),
    "LSTM": _refuse_onnx("an LSTM whose surroundings intquant does not recognise"),

    # -- upsampling and transposed convolution --
    "Resize": op_resize,
    "Upsample": op_resize,
    "ConvTranspose": op_conv_transpose,
}
# Ops whose handler reads where the batch axis is (``_Importer.batch_axis``) or does not care
# (elementwise); every other op gets batch-first inputs only.
BATCH_ANYWHERE: frozenset[str] = frozenset({
    "Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "Identity", "Dropout", "Shape", "Flatten",
    "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Softmax", "MatMul", "Gemm", "Add", "Sub",
    "Mul", "Div",
    # -- transformer pieces --
    "LayerNormalization", "Gather", "Slice", "ReduceMean",
})
# Passes over the whole model before the node-by-node walk: each may claim nodes
# (``_Importer.claimed``, keyed by the node's first output) whose meaning spans several nodes.
CLAIMS: list[Callable[[_Importer], None]] = [
    claim_onnx_recurrent,
    claim_onnx_cell_loops,
]
# Constant and ConstantOfShape have only constant inputs: they are always folded.
SUPPORTED_OPS = sorted(set(HANDLERS) | {"Constant", "ConstantOfShape"})


# ---- weights for models that ship placeholders ------------------------------------------------

# (op, input index) -> what that slot holds; decides the distribution of a re-drawn weight.
_WEIGHT_SLOTS = {
    ("Conv", 1): "weight", ("Conv", 2): "bias", ("Gemm", 1): "weight", ("Gemm", 2): "bias",
    ("MatMul", 1): "weight", ("BatchNormalization", 1): "scale",
    ("BatchNormalization", 2): "bias", ("BatchNormalization", 3): "bias",
    ("BatchNormalization", 4): "scale", ("Mul", 1): "scale", ("Mul", 0): "scale",
    ("Add", 1): "bias", ("Add", 0): "bias",
}


def randomize_weights(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """A copy of ``model`` whose float parameters are redrawn at random (He-normal weights,
    small biases, BatchNorm scales and variances in [0.5, 1.5]).

    The onnx ``light`` models carry placeholder weights (every weight the constant 0.02, made by
    ``ConstantOfShape``), under which every input gives the same output; random weights make
    them real test cases. ``ConstantOfShape`` nodes with a constant shape become initializers.
    """
    rng = np.random.default_rng(seed)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.ir_version = max(out.ir_version, 4)  # IR >= 4: initializers need not be graph inputs
    g = out.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    slots: dict[str, tuple[str, onnx.NodeProto]] = {}
    for n in g.node:
        for k, i in enumerate(n.input):
            if (n.op_type, k) in _WEIGHT_SLOTS:
                slots.setdefault(i, (_WEIGHT_SLOTS[(n.op_type, k)], n))
    keep: list[onnx.NodeProto] = []
    for n in g.node:
        if n.op_type == "ConstantOfShape" and n.input and n.input[0] in inits:
            value = onnx.helper.get_attribute_value(n.attribute[0]) if n.attribute else None
            fill = numpy_helper.to_array(value).reshape(-1)[0] if value is not None else 0.0
            inits[n.output[0]] = np.full(inits[n.input[0]].astype(int), fill, np.float32)
        else:
            keep.append(n)
    for name, arr in inits.items():
        if name in slots and arr.dtype == np.float32 and arr.size > 1:
            inits[name] = _draw(rng, slots[name][0], slots[name][1], arr.shape)
    del g.node[:]
    g.node.extend(keep)
    del g.initializer[:]
    g.initializer.extend(numpy_helper.from_array(a, name) for a, name in
                         ((np.asarray(v), k) for k, v in inits.items()))
    return out


def _draw(rng: np.random.Generator, role: str, node: onnx.NodeProto, shape) -> np.ndarray:
    if role == "weight":
        if node.op_type == "Conv":
            fan_in = int(np.prod(shape[1:]))
        elif node.op_type == "Gemm" and _attrs(node).get("transB", 0):
            fan_in = shape[1]
        else:
            fan_in = shape[0]
        return (rng.standard_normal(shape) * np.sqrt(2.0 / max(fan_in, 1))).astype(np.float32)
    if role == "scale":
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    return (rng.standard_normal(shape) * 0.1).astype(np.float32)
