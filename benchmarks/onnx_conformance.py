"""Run the onnx package's own backend test data through ``intquant.from_onnx`` and write the
conformance table ``benchmarks/conformance.md``.

    python benchmarks/onnx_conformance.py            # all suites, writes the table
    python benchmarks/onnx_conformance.py --no-light # skip the 224x224 light models

Suites: ``pytorch-converted``, ``pytorch-operator``, ``simple`` (stored inputs and outputs) and
``light`` (real architectures with placeholder weights; the suite stores only the output, and
with its placeholder weights the output does not depend on the input, so a seeded N(0, 1) input
is fed). Tolerances are the suite's own: rtol/atol from the case's ``data.json`` (``real/`` for the
light models), else the runner's defaults rtol=1e-3, atol=1e-7, compared with
``np.testing.assert_allclose`` as onnx's backend runner does.

Status: ``pass`` (imports and matches), ``fail`` (imports but mismatches or crashes),
``unsupported`` (the importer refuses it with ``UnsupportedOnnxError``: an op or feature the
float Graph cannot express, e.g. several graph inputs).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from intquant.graph.onnx_import import UnsupportedOnnxError, from_onnx

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
SUITES = ("pytorch-converted", "pytorch-operator", "simple", "light")
TABLE = Path(__file__).parent / "conformance.md"
DEFAULT_RTOL, DEFAULT_ATOL = 1e-3, 1e-7


@dataclass
class Case:
    suite: str
    name: str
    model: Path
    data_sets: list[tuple[list[Path], list[Path]]] = field(default_factory=list)
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL


@dataclass
class Result:
    case: Case
    status: str  # pass | fail | unsupported
    detail: str = ""
    max_abs_err: float | None = None
    ops: str = ""
    seconds: float = 0.0


def _tolerances(json_path: Path) -> tuple[float, float]:
    if json_path.exists():
        d = json.loads(json_path.read_text())
        return float(d.get("rtol", DEFAULT_RTOL)), float(d.get("atol", DEFAULT_ATOL))
    return DEFAULT_RTOL, DEFAULT_ATOL


def list_cases(suites: tuple[str, ...] = SUITES) -> list[Case]:
    """Every case of the given suites, in a stable order."""
    cases: list[Case] = []
    for suite in suites:
        if suite == "light":
            for model in sorted((DATA / "light").glob("light_*.onnx")):
                short = model.stem[len("light_"):]
                out = model.with_name(f"{model.stem}_output_0.pb")
                rtol, atol = _tolerances(DATA / "real" / f"test_{short}" / "data.json")
                cases.append(Case("light", short, model, [([], [out])], rtol, atol))
            continue
        for d in sorted((DATA / suite).iterdir()):
            if not (d / "model.onnx").exists():
                continue
            rtol, atol = _tolerances(d / "data.json")
            sets = []
            for ds in sorted(d.glob("test_data_set_*")):
                sets.append((sorted(ds.glob("input_*.pb")), sorted(ds.glob("output_*.pb"))))
            cases.append(Case(suite, d.name, d / "model.onnx", sets, rtol, atol))
    return cases


def _read_pb(path: Path) -> np.ndarray:
    t = onnx.TensorProto()
    t.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(t)


def _ops(model_path: Path) -> str:
    m = onnx.load(str(model_path), load_external_data=False)
    c = collections.Counter(n.op_type for n in m.graph.node)
    return ", ".join(sorted(c))


def _light_input(model_path: Path, graph_input: str) -> np.ndarray:
    m = onnx.load(str(model_path), load_external_data=False)
    vi = next(i for i in m.graph.input if i.name == graph_input)
    shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def run_case(case: Case) -> Result:
    t0 = time.perf_counter()
    res = Result(case, "fail", ops=_ops(case.model))
    try:
        model = from_onnx(case.model)
    except UnsupportedOnnxError as e:
        res.status, res.detail = "unsupported", str(e)
        return res
    except Exception as e:  # a crash on a model we claim to support is a failure
        res.detail = f"import: {type(e).__name__}: {e}"
        return res
    worst = 0.0
    try:
        for inputs, outputs in case.data_sets:
            if len(outputs) != 1:
                res.status, res.detail = "unsupported", f"{len(outputs)} outputs"
                return res
            x = (_read_pb(inputs[0]) if inputs
                 else _light_input(case.model, model.graph.input.name))
            ref = _read_pb(outputs[0])
            y = model(x).numpy()
            if y.size == ref.size and y.shape != ref.shape:
                y = y.reshape(ref.shape)  # e.g. light models store (1, 1000, 1, 1)
            worst = max(worst, float(np.max(np.abs(y - ref))) if y.shape == ref.shape else np.inf)
            np.testing.assert_allclose(y, ref, rtol=case.rtol, atol=case.atol)
    except AssertionError as e:
        res.detail = " ".join(str(e).split())[:200]
        res.max_abs_err = worst
        return res
    except Exception as e:
        res.detail = f"run: {type(e).__name__}: {e}"
        return res
    res.status, res.max_abs_err = "pass", worst
    res.seconds = time.perf_counter() - t0
    return res


def _short_reason(detail: str) -> str:
    """The part of an UnsupportedOnnxError that says why, without the node's name."""
    if "):" in detail:
        detail = detail.split("):", 1)[1]
    return " ".join(detail.replace("|", "/").split())[:110]


def write_table(results: list[Result], path: Path = TABLE) -> None:
    counts = collections.Counter(r.status for r in results)
    lines = [
        "# ONNX backend-test conformance of `intquant.from_onnx`",
        "",
        "Generated by `python benchmarks/onnx_conformance.py` (onnx "
        f"{onnx.__version__}); the passing cases run in `make test` "
        "(`tests/test_onnx_conformance.py`; the 224x224 light models only under `-m slow`).",
        "Each case's float output from our Graph is compared with the output stored in the "
        "suite, with the suite's tolerance (`assert_allclose(rtol, atol)`).",
        "",
        f"**{counts['pass']} pass, {counts['fail']} fail, {counts['unsupported']} unsupported** "
        f"of {len(results)} cases.",
        "",
        "| suite | case | status | max abs err | rtol / atol | ops | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        err = "" if r.max_abs_err is None else f"{r.max_abs_err:.2e}"
        note = _short_reason(r.detail) if r.status != "pass" else ""
        lines.append(
            f"| {r.case.suite} | {r.case.name} | {r.status} | {err} | "
            f"{r.case.rtol:g} / {r.case.atol:g} | {r.ops} | {note} |"
        )
    path.write_text("\n".join(lines) + "\n")


def read_table(path: Path = TABLE) -> dict[tuple[str, str], str]:
    """(suite, case) -> status, as last written (the test checks the code still agrees)."""
    out: dict[tuple[str, str], str] = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0] in SUITES:
            out[(cells[0], cells[1])] = cells[2]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-light", action="store_true", help="skip the 224x224 light models")
    ap.add_argument("--out", type=Path, default=TABLE)
    args = ap.parse_args(argv)
    suites = tuple(s for s in SUITES if not (args.no_light and s == "light"))
    results = []
    for case in list_cases(suites):
        r = run_case(case)
        results.append(r)
        print(f"{r.case.suite:18s} {r.case.name:45s} {r.status:11s} {_short_reason(r.detail)}",
              flush=True)
    write_table(results, args.out)
    print(f"wrote {args.out}", file=sys.stderr)
    return 1 if any(r.status == "fail" for r in results) else 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    raise SystemExit(main())
