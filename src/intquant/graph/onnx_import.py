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
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from .capture import batch_after_reshape
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
