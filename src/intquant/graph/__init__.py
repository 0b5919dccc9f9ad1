"""Float graph IR, capture from torch.export / ONNX, and graph passes."""

from .capture import UnsupportedOpError, capture, capture_exported
from .execute import GraphModule, infer_shapes, run_graph
from .ir import OPS, Graph, Node
from .passes import fold_batchnorm, fuse_activations, optimize

__all__ = [
    "OPS", "Graph", "GraphModule", "Node", "UnsupportedOpError", "capture", "capture_exported",
    "fold_batchnorm", "fuse_activations", "infer_shapes", "optimize", "run_graph",
]
