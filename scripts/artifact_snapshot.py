"""Write every generated artifact of a fixed set of models to a folder, or compare two folders.

Used to prove that a refactoring changed no behaviour: run ``write`` before and after, then
``compare``. The set: every zoo model in int8, 16x8 and W16A16 (float model → .iqm → C project
and both ONNX exports), and random one-op graphs of every IntGraph op kind from the test factory
(.iqm → C project and ONNX). Lowering involves float math, so the zoo part is comparable on one
machine only; the one-op part is pure integers.

    python scripts/artifact_snapshot.py write /tmp/before
    python scripts/artifact_snapshot.py compare /tmp/before /tmp/after
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

MODES = {
    "int8": {"weight_bits": 8, "act_bits": 8},
    "16x8": {"weight_bits": 8, "act_bits": 16},
    "w16a16": {"weight_bits": 16, "act_bits": 16},
}
ONE_OP_DTYPES = ("int8", "uint8", "int16")


def write_graph_artifacts(graph, out: Path) -> None:
    from intquant.codegen import export_c
    from intquant.intgraph import save
    from intquant.onnx_export import intgraph_to_onnx

    out.mkdir(parents=True, exist_ok=True)
    save(graph, out / "model.iqm")
    export_c(graph, out / "c", name="model")
    for requant in ("integer", "float"):
        try:
            intgraph_to_onnx(graph, out / f"model_{requant}.onnx", requant=requant)
        except ValueError as e:  # an op kind without ONNX export: record the message
            (out / f"model_{requant}.onnx.error").write_text(str(e))


def write(dest: Path) -> None:
    import intquant
    from intgraph_factory import ONE_OP_BUILDERS, random_chain
    from intquant import zoo

    for name in zoo.names():
        model, ds = zoo.get(name, progress=False)
        for mode, kw in MODES.items():
            q = intquant.quantize(model, ds.x_train[:256], intquant.Config(**kw), progress=False)
            write_graph_artifacts(q.graph, dest / "zoo" / f"{name}_{mode}")
    for kind, build in ONE_OP_BUILDERS.items():
        for dtype in ONE_OP_DTYPES:
            for dims in (1, 2):
                rng = np.random.default_rng(7)
                try:
                    graph = build(rng, dtype=dtype, dims=dims)
                except TypeError:  # builders without a dims parameter
                    if dims != 2:
                        continue
                    graph = build(rng, dtype=dtype)
                write_graph_artifacts(graph, dest / "one_op" / f"{kind}_{dtype}_{dims}d")
    for seed in range(6):
        for dtype in ONE_OP_DTYPES:
            for dims in (1, 2):
                graph = random_chain(np.random.default_rng(seed), dims=dims, dtype=dtype)
                write_graph_artifacts(graph, dest / "chain" / f"{seed}_{dtype}_{dims}d")


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def compare(a: Path, b: Path) -> int:
    da, db = digests(a), digests(b)
    only_a = sorted(set(da) - set(db))
    only_b = sorted(set(db) - set(da))
    changed = sorted(k for k in set(da) & set(db) if da[k] != db[k])
    for label, items in (("only before", only_a), ("only after", only_b), ("changed", changed)):
        for k in items:
            print(f"{label}: {k}")
    print(f"{len(da)} files before, {len(db)} after: {len(changed)} changed, "
          f"{len(only_a)} removed, {len(only_b)} added")
    return 1 if changed or only_a or only_b else 0


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "write":
        write(Path(argv[1]))
        return 0
    if len(argv) == 3 and argv[0] == "compare":
        return compare(Path(argv[1]), Path(argv[2]))
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
