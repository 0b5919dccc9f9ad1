"""The CLI driven as a user drives it: subprocesses, files on disk, exit codes, stderr.

A tiny Conv1d + Linear model is written as a torch.export .pt2 (as the docs tell users to), and
the float reference for every number checked here is that PyTorch module itself.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from intquant.intgraph import load as load_iqm
from intquant.ops import weight_codes

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def intquant(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "intquant.cli", *map(str, args)], cwd=cwd,
                          env=ENV, capture_output=True, text=True, timeout=timeout)


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(1, 6, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 12, 3)).eval()


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A user's folder: m.pt2, calib.npz (x), test.npz (x, y), and one quantized DIR."""
    d = tmp_path_factory.mktemp("cli")
    model = tiny_model()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(260, 1, 12)).astype(np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    y = logits.argmax(1)
    torch.export.save(torch.export.export(model, (torch.from_numpy(x[:1]),)), str(d / "m.pt2"))
    np.savez(d / "calib.npz", x=x[:160])
    np.savez(d / "test.npz", x=x[160:], y=y[160:])
    np.save(d / "logits.npy", logits[160:])
    r = intquant("quantize", "m.pt2", "--calib", "calib.npz", "--data", "test.npz", "--out",
                 "out", "--no-sweep", cwd=d)
    assert r.returncode == 0, r.stderr
    return d


def no_partial_dirs(d: Path) -> bool:
    return not any("partial-" in p.name or "intquant-lock" in p.name for p in d.iterdir())


# ----------------------------------------------------------------------------------------------
# The happy path
# ----------------------------------------------------------------------------------------------


def test_quantize_writes_the_promised_folder(work: Path) -> None:
    out = work / "out"
    for f in ("model.iqm", "float_model.pt2", "config.json", "calib.npz", "metrics.json",
              "report.md", "report.html", "analysis.json"):
        assert (out / f).is_file(), f
    assert (out / "c" / "model.c").is_file() and (out / "c" / "model.h").is_file()
    m = json.loads((out / "metrics.json").read_text())
    assert m["model"] == "m.pt2" and m["input_shape"] == [1, 12]
    assert m["c"]["arena_bytes"] > 0
    # Float accuracy against labels made by the float torch model itself is exactly 1.
    assert m["eval"]["float_accuracy"] == 1.0
    assert m["eval"]["int_accuracy"] >= 0.9
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "src='report_files" not in html
    assert no_partial_dirs(work)


def test_eval_matches_float_torch_model(work: Path) -> None:
    r = intquant("eval", "out", "--data", "test.npz", "--json", cwd=work)
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    float_logits = np.load(work / "logits.npy")
    y = np.load(work / "test.npz")["y"]
    assert m["samples"] == len(y)
    assert m["float_accuracy"] == pytest.approx(float(np.mean(float_logits.argmax(1) == y)))
    assert 0 < m["logit_max_abs_error"] < 0.5 * float(np.abs(float_logits).max())


def test_run_float_and_integer_inputs(work: Path) -> None:
    x = np.load(work / "test.npz")["x"][:7]
    np.save(work / "x.npy", x)
    r = intquant("run", "out", "--input", "x.npy", "--output", "y.npy", cwd=work)
    assert r.returncode == 0, r.stderr
    y = np.load(work / "y.npy")
    ref = np.load(work / "logits.npy")[:7]
    assert y.shape == (7, 3)
    assert np.max(np.abs(y - ref)) < 0.1 * np.abs(ref).max()
    # Integer in -> integer out: the raw int8 codes of the same inputs.
    meta = json.loads((work / "out" / "metrics.json").read_text())["input"]
    q = np.clip(np.rint(x / meta["scale"]) + meta["zero_point"], -128, 127).astype(np.int8)
    np.save(work / "xq.npy", q)
    r = intquant("run", "out/model.iqm", "--input", "xq.npy", "--output", "yq.npy", cwd=work)
    assert r.returncode == 0, r.stderr
    yq = np.load(work / "yq.npy")
    assert yq.dtype == np.int8
    out = json.loads((work / "out" / "metrics.json").read_text())["output"]
    np.testing.assert_allclose(out["scale"] * (yq.astype(np.int64) - out["zero_point"]), y)


def test_inspect_lists_layers_and_sizes(work: Path) -> None:
    r = intquant("inspect", "out", cwd=work)
    assert r.returncode == 0, r.stderr
    assert "conv" in r.stdout and "fully_connected" in r.stdout
    # Weight bytes of the listing: 6·1·3 conv int8 + 3·72 linear int8 weights are in there.
    assert "int8[6, 1, 1, 3]" in r.stdout and "int8[3, 72]" in r.stdout
    assert "RAM arena" in r.stdout


def test_inspect_m0_shows_cycles_per_op_and_hot_spots(work: Path) -> None:
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.fail("arm-none-eabi-gcc missing: run scripts/install_toolchain.sh")
    fast = intquant("inspect", "out", "--m0", cwd=work)
    assert fast.returncode == 0, fast.stderr
    assert "cycles (fast multiplier" in fast.stdout and "hot spots" in fast.stdout
    table = fast.stdout.split("cyc/MAC", 1)[1].split("hot spots", 1)[0]
    rows = [ln.split() for ln in table.splitlines() if "fully_connected" in ln]
    assert rows and all(int(r[4]) > 0 for r in rows), fast.stdout  # op, name, kind, MACs, cycles
    small = intquant("inspect", "out", "--m0", "--multiplier", "small", cwd=work)
    assert small.returncode == 0 and "cycles (small multiplier" in small.stdout

    def total(text: str) -> int:
        line = next(ln for ln in text.splitlines() if "cycles (" in ln)
        return int(line.split()[0])

    assert total(small.stdout) > total(fast.stdout)  # 31 more cycles per executed MULS


def test_export_c_and_refuses_to_overwrite(work: Path) -> None:
    r = intquant("export-c", "out/model.iqm", "cproj", "--name", "tiny", cwd=work)
    assert r.returncode == 0, r.stderr
    assert (work / "cproj" / "tiny.c").is_file()
    r = intquant("export-c", "out/model.iqm", "cproj", cwd=work)
    assert r.returncode == 2 and "--force" in r.stderr


def test_analyze_and_report(work: Path) -> None:
    r = intquant("analyze", "out", "--data", "test.npz", "--json", "a.json", "--no-sweep",
                 cwd=work)
    assert r.returncode == 0, r.stderr
    assert "| 0 | conv |" in r.stdout and "Weights per layer" in r.stdout
    a = json.loads((work / "a.json").read_text())
    assert [layer["name"] for layer in a["layers"] if layer["params"]] == ["0", "3"]
    r = intquant("report", "out", "--data", "test.npz", "--out", "rep", "--no-sweep", cwd=work)
    assert r.returncode == 0, r.stderr
    assert (work / "rep" / "report.html").is_file() and (work / "rep" / "report.md").is_file()
    assert no_partial_dirs(work / "rep")


def test_onnx_model(work: Path) -> None:
    torch.onnx.export(tiny_model(), (torch.zeros(1, 1, 12),), str(work / "m.onnx"),
                      dynamo=False)
    r = intquant("quantize", "m.onnx", "--calib", "calib.npz", "--out", "out_onnx",
                 "--no-report", "--no-c", cwd=work)
    assert r.returncode == 0, r.stderr
    assert (work / "out_onnx" / "float_model.onnx").is_file()
    r = intquant("eval", "out_onnx", "--data", "test.npz", "--json", cwd=work)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["float_accuracy"] == 1.0  # labels come from the torch model


def test_zoo_model(zoo_model, tmp_path: Path) -> None:
    """zoo:<name> (cached by the session fixture): float model exported once and kept."""
    _, ds = zoo_model("digits_cnn")
    np.savez(tmp_path / "calib.npz", x=ds.x_train[:200])
    np.savez(tmp_path / "test.npz", x=ds.x_test, y=ds.y_test)
    r = intquant("quantize", "zoo:digits_cnn", "--calib", "calib.npz", "--data", "test.npz",
                 "--out", "z", "--no-report", "--no-c", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "z" / "metrics.json").read_text())
    assert m["eval"]["float_accuracy"] >= 0.97 and m["eval"]["int_accuracy"] >= 0.95
    ep = torch.export.load(str(tmp_path / "z" / "float_model.pt2"))
    model, _ = zoo_model("digits_cnn")
    x = torch.from_numpy(ds.x_test[:1])  # exported with a static batch of one
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x), model(x))


# ----------------------------------------------------------------------------------------------
# User mistakes: exit code 2, one clear line, no traceback, nothing half-written
# ----------------------------------------------------------------------------------------------


def assert_user_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("intquant ") and "error:" in last
    for n in needles:
        assert n in last, (n, last)


def test_missing_key(work: Path) -> None:
    np.savez(work / "nokey.npz", inputs=np.zeros((4, 1, 12), np.float32))
    r = intquant("quantize", "m.pt2", "--calib", "nokey.npz", "--out", "o1", cwd=work)
    assert_user_error(r, "no array 'x'", "np.savez")
    assert not (work / "o1").exists()


def test_wrong_shape(work: Path) -> None:
    np.save(work / "flat.npy", np.zeros((4, 12), np.float32))
    r = intquant("quantize", "m.pt2", "--calib", "flat.npy", "--out", "o2", cwd=work)
    assert_user_error(r, "(4, 12)", "(N, 1, 12)", "reshape")
    assert not (work / "o2").exists() and no_partial_dirs(work)


def test_nan_in_data(work: Path) -> None:
    x = np.load(work / "test.npz")["x"].copy()
    x[5, 0, 3] = np.nan
    np.savez(work / "nan.npz", x=x, y=np.load(work / "test.npz")["y"])
    r = intquant("eval", "out", "--data", "nan.npz", cwd=work)
    assert_user_error(r, "NaN", "1 of")


def test_missing_labels_for_eval(work: Path) -> None:
    np.savez(work / "xonly.npz", x=np.load(work / "test.npz")["x"])
    r = intquant("eval", "out", "--data", "xonly.npz", cwd=work)
    assert r.returncode == 0, r.stderr  # no labels: agreement and logit error only
    assert "top-1 agreement" in r.stdout and "integer accuracy" not in r.stdout


def test_unsupported_op_names_the_layer(work: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 8), nn.Softplus(), nn.Linear(8, 3)).eval()
    torch.export.save(torch.export.export(model, (torch.zeros(1, 12),)),
                      str(work / "softplus.pt2"))
    np.savez(work / "calib12.npz", x=np.ones((8, 12), np.float32))
    r = intquant("quantize", "softplus.pt2", "--calib", "calib12.npz", "--out", "o3", cwd=work)
    assert_user_error(r, "softplus", "'1'")
    assert not (work / "o3").exists() and no_partial_dirs(work)


def test_existing_output_folder_is_kept(work: Path) -> None:
    before = (work / "out" / "model.iqm").read_bytes()
    r = intquant("quantize", "m.pt2", "--calib", "calib.npz", "--out", "out", cwd=work)
    assert_user_error(r, "already exists", "--force")
    assert (work / "out" / "model.iqm").read_bytes() == before


@pytest.mark.parametrize("args,needles", [
    (["quantize", "nothere.pt2", "--calib", "calib.npz", "--out", "o4"], ["does not exist"]),
    (["quantize", "calib.npz", "--calib", "calib.npz", "--out", "o4"], ["zoo:<name>", ".pt2"]),
    (["quantize", "zoo:nope", "--calib", "calib.npz", "--out", "o4"], ["unknown zoo model"]),
    (["quantize", "m.pt2", "--calib", "calib.npz", "--out", "o4", "--weight-bits", "40"],
     ["weight_bits", "[1, 16]"]),
    (["eval", "calib.npz", "--data", "test.npz"], ["not an intquant output folder"]),
    (["run", "out", "--input", "missing.npy", "--output", "y.npy"], ["does not exist"]),
])
def test_bad_arguments(work: Path, args: list[str], needles: list[str]) -> None:
    assert_user_error(intquant(*args, cwd=work), *needles)
    assert not (work / "o4").exists()


def test_bad_config_json(work: Path) -> None:
    (work / "bad.json").write_text('{"weight_bits": 8, "colour": "red"}')
    r = intquant("quantize", "m.pt2", "--calib", "calib.npz", "--out", "o5", "--config",
                 "bad.json", cwd=work)
    assert_user_error(r, "bad.json", "colour")
    (work / "broken.json").write_text('{"weight_bits": ')
    r = intquant("quantize", "m.pt2", "--calib", "calib.npz", "--out", "o5", "--config",
                 "broken.json", cwd=work)
    assert_user_error(r, "not valid JSON")


def test_config_file_with_override_is_applied(work: Path) -> None:
    (work / "cfg.json").write_text(json.dumps({"weight_bits": 8,
                                               "overrides": {"3": {"weight_bits": 4}}}))
    r = intquant("quantize", "m.pt2", "--calib", "calib.npz", "--out", "o6", "--config",
                 "cfg.json", "--no-report", "--no-c", cwd=work)
    assert r.returncode == 0, r.stderr
    g = load_iqm(work / "o6" / "model.iqm")
    w_lin, w_conv = weight_codes(g.op_by_name("3")), weight_codes(g.op_by_name("0"))
    assert np.abs(w_lin).max() <= 7 and np.abs(w_conv).max() == 127
    assert g.op_by_name("3").attrs["weight_format"] == "int4"  # stored packed


def test_weight_budget_mixed_precision(work: Path) -> None:
    r = intquant("quantize", "m.pt2", "--calib", "calib.npz", "--out", "o8", "--weight-budget",
                 "60%", "--candidates", "4,8", "--no-sweep", cwd=work)
    assert r.returncode == 0, r.stderr
    chosen = json.loads((work / "o8" / "mixed.json").read_text())
    model = tiny_model()
    sizes = {"0": model[0].weight.numel(), "3": model[3].weight.numel()}
    budget = int(0.6 * sum(sizes.values()))
    assert chosen["budget_bytes"] == budget
    bits = chosen["weight_bits"]
    # rows of K = 3 (conv) and 72 (linear) codes: 4-bit rows take ceil(K / 2) bytes
    rows_k = {"0": (6, 3), "3": (3, 72)}
    expected = sum(r_ * (k if b == 8 else -(-k // 2)) for n, b in bits.items()
                   for r_, k in [rows_k[n]])
    assert chosen["predicted"]["weight_bytes"] == expected <= budget
    g = load_iqm(work / "o8" / "model.iqm")
    for n, b in bits.items():
        assert np.abs(weight_codes(g.op_by_name(n)).astype(int)).max() <= 2 ** (b - 1) - 1
    # the generated C holds exactly the predicted weight bytes
    info = json.loads((work / "o8" / "c" / "model_info.json").read_text())
    assert sum(o.get("weight_array_bytes", 0) for o in info["ops"]) == expected
    assert "Mixed precision" in (work / "o8" / "report.md").read_text()


def test_ctrl_c_leaves_nothing_half_written(work: Path) -> None:
    # INTQUANT_TEST_HOLD_AT (test-only): the loading step waits for the signal before its "done"
    # line, so the Ctrl-C lands inside it even when a loaded machine delays this process.
    proc = subprocess.Popen(
        [sys.executable, "-m", "intquant.cli", "quantize", "m.pt2", "--calib", "calib.npz",
         "--out", "o7"], cwd=work, env={**ENV, "INTQUANT_TEST_HOLD_AT": "loading"},
        stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:  # interrupt once the work has started (the staging dir exists)
        seen.append(line)
        if "loading" in line:
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, "".join(seen) + rest
    assert "interrupted" in rest and "Traceback" not in rest
    assert not (work / "o7").exists() and no_partial_dirs(work)
