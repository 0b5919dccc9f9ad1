"""intquant used as a careless user or an attacker would use it (issue 10).

Each test reproduces one observation of the issue: the user's folders (never deleted, never
half-written, never written by two runs at once, permissions from the umask), signals, one-line
errors with exit code 2 for bad files and locations, the API promises, warnings that say what to
do, and the report with hostile layer names.

Most CLI cases call ``intquant.cli.main`` in this process (torch is imported once); signals and
concurrency need real processes.
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import signal
import stat
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import intquant
from intgraph_factory import conv_graph, max_pool_graph
from intquant import cli
from intquant.codegen import export_c
from intquant.codegen.toolchain import compile_and_run_host
from intquant.graph.pt2 import UnsafePt2Error, load_pt2
from intquant.interpreter import run
from intquant.intgraph import IntGraphError, Limits, load, save

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
SRC = Path(intquant.__file__).resolve().parent


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(1, 6, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 12, 3)).eval()


def inputs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 1, 12)).astype(np.float32)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A user's folder: m.pt2, m.onnx, calib.npz (x), test.npz (x, y)."""
    d = tmp_path_factory.mktemp("hostile")
    model = tiny_model()
    x = inputs(260)
    with torch.no_grad():
        y = model(torch.from_numpy(x)).numpy().argmax(1)
    torch.export.save(torch.export.export(model, (torch.from_numpy(x[:1]),)), str(d / "m.pt2"))
    torch.onnx.export(model, (torch.zeros(1, 1, 12),), str(d / "m.onnx"), dynamo=False)
    np.savez(d / "calib.npz", x=x[:160])
    np.savez(d / "test.npz", x=x[160:], y=y[160:])
    return d


@pytest.fixture
def run_cli(capsys, monkeypatch) -> Callable[..., tuple[int, str]]:
    """``intquant ARGS`` in this process from folder ``cwd``: (exit code, stderr)."""

    def run(*args: str, cwd: Path) -> tuple[int, str]:
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        code = cli.main([str(a) for a in args])
        return code, capsys.readouterr().err

    return run


@pytest.fixture(scope="module")
def qdir(work) -> Path:
    """An intquant output folder (quantize, no C, no report) made in this process."""
    code = cli.main(["quantize", str(work / "m.pt2"), "--calib", str(work / "calib.npz"),
                     "--out", str(work / "q"), "--no-c", "--no-report"])
    assert code == 0
    return work / "q"


@pytest.fixture(scope="module")
def qmodel(work):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return intquant.quantize(tiny_model(), inputs(160), progress=False)


def one_line_error(code: int, err: str, *needles: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("intquant ") and "error:" in last, err
    for n in needles:
        assert n in last, (n, last)
    return last


def leftovers(d: Path) -> list[str]:
    """Hidden entries intquant may create next to an output: partial folders, locks."""
    return sorted(p.name for p in d.iterdir() if "partial" in p.name or "intquant-" in p.name)


def snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------------------------
# 3. The user's folders are never deleted
# ----------------------------------------------------------------------------------------------


def test_export_c_into_the_working_folder_deletes_nothing(qmodel, tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "data.bin").write_bytes(b"\x01\x02")
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="working folder"):
            qmodel.export_c(".", overwrite=overwrite)
    assert snapshot(tmp_path) == before and leftovers(tmp_path) == []


def test_quantize_out_dot_force_keeps_the_working_folder(work, run_cli, tmp_path):
    for f in ("m.pt2", "calib.npz"):
        (tmp_path / f).write_bytes((work / f).read_bytes())
    before = snapshot(tmp_path)
    code, err = run_cli("quantize", "m.pt2", "--calib", "calib.npz", "--out", ".", "--force",
                        "--no-c", "--no-report", cwd=tmp_path)
    one_line_error(code, err, "working folder")
    assert snapshot(tmp_path) == before and leftovers(tmp_path) == []


def test_export_c_refuses_a_folder_intquant_did_not_write(qmodel, tmp_path):
    user = tmp_path / "project"
    user.mkdir()
    (user / "main.c").write_text("int main(void) { return 0; }\n")
    before = snapshot(tmp_path)
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="intquant did not write"):
            qmodel.export_c(user, overwrite=overwrite)
    assert snapshot(tmp_path) == before and leftovers(tmp_path) == []


def test_export_c_replaces_its_own_folder_only_when_asked(qmodel, tmp_path):
    out = tmp_path / "c"
    qmodel.export_c(out, name="first")
    with pytest.raises(ValueError, match="overwrite=True"):
        qmodel.export_c(out, name="second")
    assert (out / "first.c").is_file()
    qmodel.export_c(out, name="second", overwrite=True)
    assert (out / "second.c").is_file() and not (out / "first.c").exists()
    assert leftovers(tmp_path) == []


def test_export_c_into_an_empty_folder_keeps_that_folder(qmodel, tmp_path):
    out = tmp_path / "c"
    out.mkdir()
    inode = out.stat().st_ino
    qmodel.export_c(out)
    assert (out / "model.c").is_file() and out.stat().st_ino == inode


def test_cli_export_c_refuses_a_foreign_folder_even_with_force(qdir, run_cli, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("x")
    code, err = run_cli("export-c", qdir / "model.iqm", "mine", "--force", cwd=tmp_path)
    one_line_error(code, err, "intquant did not write")
    assert (tmp_path / "mine" / "keep.txt").read_text() == "x"


def test_report_into_an_output_folder_replaces_only_the_report(work, run_cli, tmp_path):
    code, err = run_cli("quantize", work / "m.pt2", "--calib", work / "calib.npz", "--out", "q",
                        "--no-c", "--no-report", cwd=tmp_path)
    assert code == 0, err
    (tmp_path / "q" / "report.md").write_text("stale")
    before = snapshot(tmp_path / "q")
    for _ in range(2):  # the second run replaces the first one's report
        code, err = run_cli("report", "q", "--data", work / "test.npz", "--no-sweep",
                            cwd=tmp_path)
        assert code == 0, err
    after = snapshot(tmp_path / "q")
    assert {k: v for k, v in after.items() if k in before and k != "report.md"} == {
        k: v for k, v in before.items() if k != "report.md"}
    assert after["report.md"].startswith(b"# intquant report")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_outputs_follow_the_umask(qmodel, tmp_path, umask):
    old = os.umask(umask)
    try:
        res = qmodel.export_c(tmp_path / "c")
        qmodel.save(tmp_path / "m.iqm")
    finally:
        os.umask(old)

    def mode(p: Path) -> int:
        return stat.S_IMODE(p.stat().st_mode)

    assert mode(res.out_dir) == 0o777 & ~umask
    assert mode(tmp_path / "m.iqm") == 0o666 & ~umask
    assert {mode(p) for p in res.paths} == {0o666 & ~umask}


# ----------------------------------------------------------------------------------------------
# 7. Signals, killed runs, concurrency
# ----------------------------------------------------------------------------------------------


def spawn_quantize(cwd: Path, out: str, *extra: str, hold_at: str = "") -> subprocess.Popen:
    """``hold_at``: the step (title prefix) that waits for a signal before its "done" line
    (the CLI's test-only ``INTQUANT_TEST_HOLD_AT``), so that however loaded the machine, the
    signal lands inside that step and never after the run finished."""
    env = {**ENV, "INTQUANT_TEST_HOLD_AT": hold_at} if hold_at else ENV
    return subprocess.Popen(
        [sys.executable, "-m", "intquant.cli", "quantize", "m.pt2", "--calib", "calib.npz",
         "--out", out, "--no-c", *extra],
        cwd=cwd, env=env, stderr=subprocess.PIPE, text=True)


def wait_for_line(proc: subprocess.Popen, needle: str) -> list[str]:
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} never printed:\n{''.join(seen)}")


@pytest.mark.parametrize("sig,when", [
    (signal.SIGTERM, "loading"),
    (signal.SIGTERM, "quantizing"),
    (signal.SIGINT, "analysing"),
    (signal.SIGTERM, "analysing"),
])
def test_signals_leave_nothing_behind(work, tmp_path, sig, when):
    for f in ("m.pt2", "calib.npz", "test.npz"):
        (tmp_path / f).write_bytes((work / f).read_bytes())
    proc = spawn_quantize(tmp_path, "o", hold_at=when)
    seen = wait_for_line(proc, when)
    time.sleep(0.1)  # inside the step (its work or its test-only hold), not on its first line
    proc.send_signal(sig)
    rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 128 + sig, "".join(seen) + rest
    assert "Traceback" not in rest and "nothing was left half-written" in rest
    assert not (tmp_path / "o").exists() and leftovers(tmp_path) == []


def run_entry_point(cwd: Path, main_body: str) -> subprocess.CompletedProcess:
    """The CLI's process entry point ``intquant.cli.run`` with ``main`` replaced by a function
    whose body is ``main_body``, run as ``python -m`` like ``python -m intquant.cli`` (the
    interpreter's exit path differs from ``-c``'s)."""
    (cwd / "entry_under_test.py").write_text(
        "import atexit, os, signal, time\nimport intquant.cli as cli\n"
        "def main():\n" + "".join(f"    {line}\n" for line in main_body.splitlines())
        + "cli.main = main\ncli.run()\n")
    return subprocess.run([sys.executable, "-m", "entry_under_test"], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=120)


def test_a_ctrl_c_after_main_returned_still_exits_130(tmp_path):
    """A Ctrl-C landing after main() left its handlers (its return path, a loaded machine) used
    to hit Python's default handler: a traceback and death by SIGINT (status -2)."""
    res = run_entry_point(tmp_path, "os.kill(os.getpid(), signal.SIGINT)\nreturn 0")
    assert res.returncode == 130, res.stderr
    assert "Traceback" not in res.stderr and "nothing was left half-written" in res.stderr


def test_a_ctrl_c_through_library_exec_code_still_exits_130_not_by_sigint(tmp_path):
    """A Ctrl-C that passes through code made by ``exec`` of a string (dataclasses, namedtuple,
    torch do it; here main itself) and is handled must end with exit code 130: CPython
    remembers such an interrupt and, unless the CLI clears that, kills the process with SIGINT
    at exit (status -2) — the flaky -2 of the signal tests on a loaded machine."""
    body = ('exec("os.kill(os.getpid(), signal.SIGINT)\\nfor i in range(10**8): pass")\n'
            "return 0")
    res = run_entry_point(tmp_path, body)
    assert res.returncode == 130, res.stderr
    assert "Traceback" not in res.stderr and "nothing was left half-written" in res.stderr


def test_a_signal_while_python_shuts_down_keeps_the_settled_exit_code(tmp_path):
    """Once the exit code is settled, a Ctrl-C or SIGTERM during interpreter shutdown (an atexit
    hook here) neither kills the process nor prints a traceback."""
    body = ("def late():\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n"
            "    time.sleep(0.2)\n"
            "atexit.register(late)\nreturn 3")
    res = run_entry_point(tmp_path, body)
    assert res.returncode == 3, res.stderr
    assert "Traceback" not in res.stderr and "KeyboardInterrupt" not in res.stderr


class CtrlCInDel:
    """Presses Ctrl-C while Python runs its ``__del__``: Python prints the KeyboardInterrupt as
    "Exception ignored" and drops it. Matplotlib and friends have such finalizers: this is how
    a Ctrl-C during report writing got lost."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.5)  # the handler runs here and its KeyboardInterrupt is swallowed


def test_a_swallowed_ctrl_c_during_report_writing_still_stops(qdir, work, run_cli, monkeypatch):
    """A swallowed Ctrl-C must not end in exit 0 with the output written: the signal is
    remembered, the output is not committed, and no "Exception ignored" traceback is shown."""
    import intquant.analysis as analysis_pkg

    real = analysis_pkg.write_report

    def write_report_swallowing_ctrl_c(a, out, extra=None):
        paths = real(a, out, extra)
        CtrlCInDel()  # collected at once
        return paths

    monkeypatch.setattr(analysis_pkg, "write_report", write_report_swallowing_ctrl_c,
                        raising=False)
    code, err = run_cli("report", qdir, "--data", "test.npz", "--out", "rep", "--no-sweep",
                        cwd=work)
    assert code == 130, err
    assert "Traceback" not in err and "interrupted; nothing was left half-written" in err
    assert not (work / "rep").exists() and leftovers(work) == []


def test_leftovers_of_a_killed_run_are_removed_by_the_next(work, run_cli, tmp_path):
    for f in ("m.pt2", "calib.npz", "test.npz"):
        (tmp_path / f).write_bytes((work / f).read_bytes())
    proc = spawn_quantize(tmp_path, "o", "--no-report")
    wait_for_line(proc, "loading")  # the partial folder and the lock exist from here on
    proc.kill()  # SIGKILL: no handler runs, the partial folder stays
    proc.communicate(timeout=60)
    assert leftovers(tmp_path) != []
    code, err = run_cli("quantize", "m.pt2", "--calib", "calib.npz", "--out", "o", "--no-c",
                        "--no-report", cwd=tmp_path)
    assert code == 0, err
    assert (tmp_path / "o" / "model.iqm").is_file() and leftovers(tmp_path) == []


def test_a_second_concurrent_writer_fails_with_one_line(work, run_cli, tmp_path):
    for f in ("m.pt2", "calib.npz", "test.npz"):
        (tmp_path / f).write_bytes((work / f).read_bytes())
    first = spawn_quantize(tmp_path, "o", "--data", "test.npz")
    wait_for_line(first, "loading")
    code, err = run_cli("quantize", "m.pt2", "--calib", "calib.npz", "--out", "o", "--no-c",
                        "--no-report", cwd=tmp_path)
    rest = first.communicate(timeout=300)[1]
    one_line_error(code, err, "being written by another intquant process", "pid")
    assert first.returncode == 0, rest
    assert "report.md" in os.listdir(tmp_path / "o")  # the first run's output, complete
    assert leftovers(tmp_path) == []


# ----------------------------------------------------------------------------------------------
# 5. One line and exit code 2 instead of a traceback
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["empty", "truncated"])
@pytest.mark.parametrize("command", ["quantize", "eval"])
def test_empty_or_truncated_npz(work, qdir, run_cli, tmp_path, damage, command):
    good = (work / "test.npz").read_bytes()
    (tmp_path / "bad.npz").write_bytes(b"" if damage == "empty" else good[:len(good) // 2])
    if command == "quantize":
        args = ["quantize", work / "m.pt2", "--calib", "bad.npz", "--out", "o"]
    else:
        args = ["eval", qdir, "--data", "bad.npz"]
    code, err = run_cli(*args, cwd=tmp_path)
    one_line_error(code, err, "bad.npz", "empty" if damage == "empty" else "truncated")
    assert not (tmp_path / "o").exists()


@contextmanager
def read_only_workspace(work: Path, qdir: Path) -> Iterator[Path]:
    """A folder with the user's inputs and a subfolder ``ro`` this process cannot write: chmod
    0555, and as root (which ignores permissions) the effective uid/gid of nobody."""
    import shutil

    base = Path(tempfile.mkdtemp(prefix="iq-ro-"))
    try:
        for f in ("m.pt2", "calib.npz", "test.npz"):
            shutil.copyfile(work / f, base / f)
        shutil.copytree(qdir, base / "q")
        np.save(base / "x.npy", inputs(4))
        (base / "ro").mkdir()
        for p in [base, *base.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        (base / "ro").chmod(0o555)
        if os.geteuid() != 0:
            yield base
            return
        try:
            os.setegid(65534)
            os.seteuid(65534)
        except OSError:
            pytest.skip("running as root without a way to drop privileges")
        try:
            yield base
        finally:
            os.seteuid(0)
            os.setegid(0)
    finally:
        (base / "ro").chmod(0o755)
        shutil.rmtree(base)


@pytest.mark.parametrize("command", ["quantize", "export-c", "run", "report"])
def test_read_only_output_location(work, qdir, run_cli, command):
    args = {
        "quantize": ["quantize", "m.pt2", "--calib", "calib.npz", "--out", "ro/out", "--no-c",
                     "--no-report"],
        "export-c": ["export-c", "q/model.iqm", "ro/c"],
        "run": ["run", "q", "--input", "x.npy", "--output", "ro/y.npy"],
        "report": ["report", "q", "--data", "test.npz", "--out", "ro/rep", "--no-sweep"],
    }[command]
    with read_only_workspace(work, qdir) as base:
        code, err = run_cli(*args, cwd=base)
        one_line_error(code, err, "ro", "not writable")
        assert os.listdir(base / "ro") == []


def test_out_below_an_existing_file(work, run_cli):
    code, err = run_cli("quantize", "m.pt2", "--calib", "calib.npz", "--out", "calib.npz/sub",
                        cwd=work)
    one_line_error(code, err, "calib.npz is a file")


def test_report_out_naming_a_file(work, qdir, run_cli):
    before = (work / "calib.npz").read_bytes()
    code, err = run_cli("report", qdir, "--data", "test.npz", "--out", "calib.npz", cwd=work)
    one_line_error(code, err, "calib.npz is a file")
    assert "re-quantizing" not in err and "analysing" not in err  # refused before the work
    assert (work / "calib.npz").read_bytes() == before


def test_analyze_json_naming_a_folder_fails_before_the_work(work, qdir, run_cli, tmp_path):
    code, err = run_cli("analyze", qdir, "--data", work / "test.npz", "--json", tmp_path,
                        cwd=work)
    one_line_error(code, err, "is a folder")
    assert "re-quantizing" not in err and "analysing" not in err


def ramp_conv_relu6() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(1, 4, 3), nn.ReLU6(), nn.Flatten(), nn.Linear(40, 3)).eval()


def test_calibration_values_times_1e30_name_the_layer(work, run_cli, tmp_path):
    x = inputs(64) * np.float32(1e30)
    with pytest.raises(ValueError, match=r"layer '0'.*calibration data .* wrong scale"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            intquant.quantize(ramp_conv_relu6(), x, progress=False)
    torch.export.save(torch.export.export(ramp_conv_relu6(), (torch.zeros(1, 1, 12),)),
                      str(tmp_path / "r6.pt2"))
    np.savez(tmp_path / "huge.npz", x=x)
    code, err = run_cli("quantize", "r6.pt2", "--calib", "huge.npz", "--out", "o", "--no-c",
                        "--no-report", cwd=tmp_path)
    one_line_error(code, err, "layer '0'", "wrong scale")
    assert not (tmp_path / "o").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("command", ["run", "eval"])
def test_empty_input_to_run_and_eval(qdir, run_cli, tmp_path, command):
    np.savez(tmp_path / "none.npz", x=np.zeros((0, 1, 12), np.float32),
             y=np.zeros(0, np.int64))
    args = (["run", qdir, "--input", "none.npz", "--output", "y.npy"] if command == "run"
            else ["eval", qdir, "--data", "none.npz"])
    code, err = run_cli(*args, cwd=tmp_path)
    one_line_error(code, err, "none.npz", "no samples")
    assert not (tmp_path / "y.npy").exists()


def test_linear_over_n_t_c_is_a_linear_per_token():
    """Linear on (N, T, C) (a token sequence) was refused before the transformer family; it is
    one fully_connected over the last axis, within the layer's error bound of float (weights
    and one output rounding: 2.51 LSB) on the dequantized input."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4)).eval()
    x = np.random.default_rng(0).normal(size=(40, 5, 8)).astype(np.float32)
    q = intquant.quantize(model, x, intquant.Config(calibration="minmax",
                                                    bias_correction=False), progress=False)
    assert [op.kind for op in q.graph.ops] == ["fully_connected"]
    assert q.graph.tensors[q.graph.input].shape == (5, 8)
    xq = q.quantize_input(x)
    info = q.input_info
    with torch.no_grad():
        ref = model(torch.from_numpy(info.scale * (xq.astype(np.float32) - info.zero_point)))
    err = np.abs(q.dequantize_output(q.run(xq)) - ref.numpy()).max() / q.output_info.scale
    assert err <= 2.51, err


# ----------------------------------------------------------------------------------------------
# 6. API promises
# ----------------------------------------------------------------------------------------------


def test_quantize_accepts_modules_programs_and_files(work):
    x = inputs(160)
    model = tiny_model()
    ep = torch.export.export(model, (torch.from_numpy(x[:1]),))
    probe = inputs(50, seed=1)

    def integer_outputs(m) -> np.ndarray:
        q = intquant.quantize(m, x, progress=False)
        return q.run(q.quantize_input(probe))

    ref = integer_outputs(model)
    for form in (ep, ep.module(), str(work / "m.pt2"), work / "m.pt2"):
        np.testing.assert_array_equal(integer_outputs(form), ref)
    from intquant.graph.onnx_import import from_onnx

    onnx_ref = integer_outputs(from_onnx(onnx.load(str(work / "m.onnx"))))
    for form in (str(work / "m.onnx"), work / "m.onnx"):
        np.testing.assert_array_equal(integer_outputs(form), onnx_ref)
    with pytest.raises(ValueError, match=r"\.pt2.*\.onnx"):
        intquant.quantize(str(work / "calib.npz"), x, progress=False)


def test_submodules_are_attributes_without_importing_them():
    code = ("import intquant\n"
            "assert callable(intquant.qat.prepare)\n"
            "assert callable(intquant.regularizers.kurtosis)\n"
            "assert callable(intquant.analysis.analyze)\n"
            "assert callable(intquant.codegen.export_c)\n")
    r = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr


def test_library_calls_print_no_progress_bars_for_short_work(capfd):
    capfd.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = intquant.quantize(tiny_model(), inputs(64))
        intquant.analyze(tiny_model(), q, inputs(64), sweep=False)
        intquant.train(tiny_model(), (inputs(64), np.arange(64) % 3), epochs=2)
    assert capfd.readouterr().err == ""


def test_progress_false_and_the_environment_silence_bars(capfd, monkeypatch):
    from intquant import progress

    monkeypatch.setattr(progress, "DELAY_SECONDS", 0.0)  # as if the work took long
    batches = [inputs(8)] * 40

    def bars(**kw) -> str:
        capfd.readouterr()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            intquant.quantize(tiny_model(), batches, **kw)
        return capfd.readouterr().err

    assert "calibrating" in bars(progress=True)
    assert bars(progress=False) == ""
    monkeypatch.setenv("INTQUANT_PROGRESS", "0")
    assert bars(progress=True) == ""


# ----------------------------------------------------------------------------------------------
# 8. Warnings that say what to do
# ----------------------------------------------------------------------------------------------


def bn_model_trained_on_unit_range() -> tuple[nn.Module, np.ndarray]:
    """Conv + BatchNorm whose running statistics come from inputs in [0, 1] (like pixels / 255)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 3))
    x = np.random.default_rng(0).integers(0, 256, size=(256, 1, 8, 8)).astype(np.float32) / 255
    model.train()
    with torch.no_grad():
        for _ in range(50):  # momentum 0.1: the running stats converge to the data's
            model(torch.from_numpy(x))
    return model.eval(), x


def data_warnings(fn: Callable[[], object]) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [str(w.message) for w in caught if issubclass(w.category, intquant.DataWarning)]


def test_uint8_calibration_for_a_model_trained_on_unit_range_warns():
    model, x = bn_model_trained_on_unit_range()
    assert data_warnings(lambda: intquant.quantize(model, x, progress=False)) == []
    got = data_warnings(lambda: intquant.quantize(model, x * 255, progress=False))
    assert len(got) == 1 and "BatchNorm ('1')" in got[0] and "0-255" in got[0]
    assert "preprocess the calibration data" in got[0]


@pytest.mark.parametrize("kind,needle", [
    ("zeros", "every calibration value is zero"),
    ("constant", "every calibration value is the same value (0.5)"),
    ("identical", "all 64 calibration samples are identical"),
])
def test_constant_calibration_warns(kind, needle):
    x = {"zeros": np.zeros((64, 1, 12), np.float32),
         "constant": np.full((64, 1, 12), 0.5, np.float32),
         "identical": np.repeat(inputs(1), 64, axis=0)}[kind]
    got = data_warnings(lambda: intquant.quantize(tiny_model(), x, progress=False))
    assert any(needle in m for m in got), got


def test_few_calibration_samples_warn(work, run_cli, tmp_path):
    for n, expected in ((1, True), (31, True), (32, False)):
        got = data_warnings(lambda n=n: intquant.quantize(tiny_model(), inputs(n),
                                                          progress=False))
        assert any(f"only {n} calibration sample" in m for m in got) == expected, (n, got)
    np.savez(tmp_path / "few.npz", x=inputs(8))
    code, err = run_cli("quantize", work / "m.pt2", "--calib", "few.npz", "--out", "o",
                        "--no-c", "--no-report", cwd=tmp_path)
    assert code == 0, err
    assert "intquant quantize: warning: only 8 calibration sample(s)" in err


def test_eval_labels_outside_the_classes_warn(work, qdir, qmodel, run_cli, tmp_path):
    with np.load(work / "test.npz") as z:
        x, y = z["x"], z["y"]
    np.savez(tmp_path / "onebased.npz", x=x, y=y + 1)
    code, err = run_cli("eval", qdir, "--data", "onebased.npz", cwd=tmp_path)
    assert code == 0, err
    line = next(ln for ln in err.splitlines() if "warning:" in ln)
    assert "outside [0, 3)" in line and "1-based" in line
    got = data_warnings(lambda: qmodel.accuracy(x, y + 1))
    assert any("outside [0, 3)" in m for m in got)
    assert data_warnings(lambda: qmodel.accuracy(x, y)) == []
    got = data_warnings(lambda: intquant.analyze(tiny_model(), qmodel, (x, y + 1),
                                                 sensitivity=False, sweep=False))
    assert any("outside [0, 3)" in m for m in got)


def test_channels_last_images_get_a_transpose_hint(run_cli, tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 2)).eval()
    torch.export.save(torch.export.export(model, (torch.zeros(1, 3, 8, 8),)),
                      str(tmp_path / "img.pt2"))
    nhwc = np.random.default_rng(0).random((40, 8, 8, 3)).astype(np.float32)
    np.savez(tmp_path / "nhwc.npz", x=nhwc)
    code, err = run_cli("quantize", "img.pt2", "--calib", "nhwc.npz", "--out", "o", cwd=tmp_path)
    last = one_line_error(code, err, "x.transpose(0, 3, 1, 2)")
    assert "reshape(" not in last
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = intquant.quantize(model, nhwc.transpose(0, 3, 1, 2), progress=False)
    with pytest.raises(ValueError, match=re.escape("x.transpose(0, 3, 1, 2)")):
        q.quantize_input(nhwc)


# ----------------------------------------------------------------------------------------------
# 9. The report with hostile layer names
# ----------------------------------------------------------------------------------------------

HOSTILE = "<img src=x onerror=alert(1)>|**bold**"


def gemm_chain_onnx(names: list[str]) -> onnx.ModelProto:
    """x (N, 4) → Gemm → Relu → Gemm → Relu → Gemm (3 classes), node names as given."""
    rng = np.random.default_rng(0)
    sizes = [4, 8, 8, 3]
    nodes, inits, prev = [], [], "x"
    for i, name in enumerate(names):
        w = rng.normal(size=(sizes[i + 1], sizes[i])).astype(np.float32)
        b = rng.normal(size=sizes[i + 1]).astype(np.float32) * 0.1
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        out = f"g{i}" if i < len(names) - 1 else "y"
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [out], name=name,
                                      transB=1))
        if i < len(names) - 1:
            nodes.append(helper.make_node("Relu", [out], [f"r{i}"], name=f"relu{i}"))
            prev = f"r{i}"
    graph = helper.make_graph(
        nodes, "hostile", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.fixture(scope="module")
def hostile_analysis():
    from intquant.graph.onnx_import import from_onnx

    model = from_onnx(gemm_chain_onnx(["/a;b/Gemm", "/a:b/Gemm", HOSTILE]))
    x = np.random.default_rng(1).normal(size=(200, 4)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = intquant.quantize(model, x, progress=False)
        return intquant.analyze(model, q, x, sweep=False, name=HOSTILE)


@pytest.fixture(scope="module")
def hostile_report(hostile_analysis, tmp_path_factory) -> dict[str, Path]:
    from intquant.analysis import write_report

    return write_report(hostile_analysis, tmp_path_factory.mktemp("report"))


def test_names_that_sanitize_alike_get_their_own_histograms(hostile_report):
    paths = hostile_report
    md = paths["md"].read_text()
    images = re.findall(r"report_files/(weights_[^)]+\.png)", md)
    assert len(images) == 3 and len(set(images)) == 3
    assert all((paths["images"] / f).is_file() for f in images)


def test_report_markdown_escapes_names(hostile_report):
    paths = hostile_report
    md = paths["md"].read_text()
    assert not re.search(r"(?<!\\)[<>*]", md)  # no raw HTML, no emphasis: all escaped
    assert r"\<img src=x onerror=alert(1)\>\|\*\*bold\*\*" in md
    widths = set()  # the name's "|" never adds a table column: every row as wide as its header
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            widths.add(len(re.findall(r"(?<!\\)\|", line)))
        elif widths:
            assert len(widths) == 1, widths
            widths = set()
    html = paths["html"].read_text()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


@pytest.fixture(scope="module")
def figures(hostile_analysis, tmp_path_factory) -> dict[str, object]:
    """The matplotlib Figures of the report, by file name; the first weighted layer has a
    sensitivity of exactly 0.00 pp (at its width), the second at low bits."""
    import copy

    from intquant.analysis import plots

    a = copy.deepcopy(hostile_analysis)
    layers = [s for s in a.layers if s.sensitivity is not None]
    layers[0].sensitivity = layers[1].sensitivity_low = 0.0
    drawn: dict[str, object] = {}
    real = plots._save

    def keep(fig, path):
        drawn[Path(path).name] = fig
        return real(fig, path)

    plots._save = keep
    try:
        plots.write_plots(a, tmp_path_factory.mktemp("plots"))
    finally:
        plots._save = real
    drawn["layers"] = layers
    return drawn


def test_zero_sensitivity_layers_still_get_a_mark(figures):
    layers = figures["layers"]
    fig = figures["sensitivity.png"]
    fig.canvas.draw()
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    for i in range(len(layers)):
        for dx in (-0.2, 0.2):  # both bars of layer i: something with area at its place
            px = ax.transData.transform((i + dx, 0.0))[0]
            visible = [a for a in ax.patches + ax.lines
                       if a.get_visible() and _covers(a.get_window_extent(renderer), px)
                       and a.get_window_extent(renderer).width > 1
                       and a.get_window_extent(renderer).height > 1]
            assert visible, (i, dx)


def _covers(bbox, px: float) -> bool:
    return bbox.x0 - 0.5 <= px <= bbox.x1 + 0.5


def test_legends_do_not_hide_bars(figures):
    for name in ("sqnr.png", "sensitivity.png"):
        fig = figures[name]
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        ax = fig.axes[0]
        legend = ax.get_legend().get_window_extent(renderer)
        for bar in ax.patches:
            box = bar.get_window_extent(renderer)
            if box.height > 0:
                assert not legend.overlaps(box), (name, box, legend)


def test_stats_does_not_import_report():
    tree = ast.parse((SRC / "analysis" / "stats.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m and m.split(".")[-1] in ("report", "plots") for m in imported), imported


# ----------------------------------------------------------------------------------------------
# Item 2: hostile names cannot inject code into the generated C; item 4: bounded resources
# ----------------------------------------------------------------------------------------------

INJECT = "*/ if (input[0] == 99) return 0; /*"
CORPUS = [
    INJECT,
    "*/ return 42; /*",
    "/*",
    '"',
    "\\",
    "a\nb\r\n#define x 1",
    "%s%n%x",
    "$(touch pwned)",
    "`id`",
    "../../etc",
    "nul\x00byte",
    "ünïcödé 😀 \u202e",
    "x" * 10_000,
]
# nn.Module names may not contain '.'; everything else is allowed.
MODULE_KEYS = [k for k in CORPUS if "." not in k]


def trigger_inputs(shape: tuple[int, ...], dtype: str, n: int = 6) -> np.ndarray:
    """Random inputs whose first element takes the values injected code would test for."""
    rng = np.random.default_rng(5)
    info = np.iinfo(np.dtype(dtype))
    x = rng.integers(info.min, info.max + 1, size=(n, *shape)).astype(dtype)
    flat = x.reshape(n, -1)
    flat[: min(n, 4), 0] = [99, 42, 0, -1][: min(n, 4)] if info.min < 0 else [99, 42, 0, 1]
    return x


def assert_c_equals_interpreter(graph, tmp_path: Path, x: np.ndarray) -> Path:
    res = export_c(graph, tmp_path / "c", name="net")
    y = compile_and_run_host(res.out_dir, x, opt="-O2")
    np.testing.assert_array_equal(y, run(graph, x))
    source = "\n".join(p.read_text(errors="replace") for p in res.out_dir.glob("*.[ch]"))
    for needle in (INJECT, "*/ return 42; /*", "$(touch pwned)", "`id`", "#include <evil.h>"):
        assert needle not in source  # no name survives with the characters that could inject
    return res.out_dir


class HostileDict(nn.Module):
    """A ModuleDict whose keys are the hostile corpus, applied in order."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleDict({k: nn.Linear(8, 8) for k in MODULE_KEYS})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers.values():
            x = torch.relu(layer(x))
        return x


def test_module_dict_keys_cannot_inject_c(tmp_path):
    torch.manual_seed(0)
    model = HostileDict().eval()
    calib = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)
    q = intquant.quantize(model, calib, progress=False)
    assert any(INJECT in op.name for op in q.graph.ops)  # the names really reach the graph
    assert_c_equals_interpreter(q.graph, tmp_path, trigger_inputs((8,), "int8"))


def hostile_onnx() -> onnx.ModelProto:
    """Gemm → Relu → Gemm with hostile node, tensor and graph-input names."""
    rng = np.random.default_rng(1)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 6)).astype(np.float32), "*/ w1 /*")
    w2 = numpy_helper.from_array(rng.standard_normal((4, 8)).astype(np.float32), '"w2\\')
    nodes = [
        helper.make_node("Gemm", [INJECT, "*/ w1 /*"], ["h /* x */"], name="*/ return 42; /*",
                         transB=1),
        helper.make_node("Relu", ["h /* x */"], ["r\n#include <evil.h>"], name="$(touch pwned)"),
        helper.make_node("Gemm", ["r\n#include <evil.h>", '"w2\\'], ["`id`"], name="../../etc",
                         transB=1),
    ]
    graph = helper.make_graph(
        nodes, "hostile */", [helper.make_tensor_value_info(INJECT, TensorProto.FLOAT, [1, 6])],
        [helper.make_tensor_value_info("`id`", TensorProto.FLOAT, [1, 4])], [w1, w2],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_onnx_node_tensor_and_input_names_cannot_inject_c(tmp_path):
    model = intquant.from_onnx(hostile_onnx())
    calib = np.random.default_rng(0).standard_normal((64, 6)).astype(np.float32)
    q = intquant.quantize(model, calib, progress=False)
    assert_c_equals_interpreter(q.graph, tmp_path, trigger_inputs((6,), "int8"))


def rename_everything(graph, names: list[str]) -> None:
    """Give every op and every tensor (input and output included) a hostile name."""
    mapping = {t: f"{names[i % len(names)]}#{i}" for i, t in enumerate(graph.tensors)}
    for t, info in list(graph.tensors.items()):
        info.name = mapping[t]
    graph.tensors = {mapping[t]: info for t, info in graph.tensors.items()}
    for i, op in enumerate(graph.ops):
        op.name = f"{names[(i + 3) % len(names)]}@{i}"
        op.inputs = [mapping[t] for t in op.inputs]
        op.output = mapping[op.output]
    graph.input, graph.output = mapping[graph.input], mapping[graph.output]
    graph.meta = {INJECT: "*/ return 42; /*", "note": "x" * 5000}


def test_iqm_op_and_tensor_names_cannot_inject_c(tmp_path):
    g = conv_graph(np.random.default_rng(3), dims=2, dtype="int8")
    rename_everything(g, CORPUS)
    save(g, tmp_path / "m.iqm")
    g2 = load(tmp_path / "m.iqm")
    assert g2 == g or [op.name for op in g2.ops] == [op.name for op in g.ops]
    shape = g2.tensors[g2.input].shape
    assert_c_equals_interpreter(g2, tmp_path, trigger_inputs(shape, "int8"))


# ----------------------------------------------------------------------------------------------
# Bounded resources
# ----------------------------------------------------------------------------------------------


def _edit_manifest(path: Path, edit) -> None:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    m = json.loads(arrays["__manifest__"].tobytes())
    edit(m)
    arrays["__manifest__"] = np.frombuffer(json.dumps(m).encode(), np.uint8)
    with open(path, "wb") as f:  # (np.savez on a path would append '.npz')
        np.savez(f, **arrays)


def test_huge_declared_tensor_is_refused_before_allocation(tmp_path):
    """A 2.4 KB file whose tensors declare 46341x46341 elements: refused in milliseconds."""
    g = conv_graph(np.random.default_rng(0), dims=2, dtype="int8")
    p = tmp_path / "big.iqm"
    save(g, p)

    def blow_up(m):
        for t in m["tensors"]:
            t["shape"] = [t["shape"][0], 46341, 46341]

    _edit_manifest(p, blow_up)
    assert p.stat().st_size < 10_000
    t0 = time.process_time()
    with pytest.raises(IntGraphError, match="max_tensor_elements"):
        load(p)
    assert time.process_time() - t0 < 5  # generous: no per-element work was done
    with pytest.raises(IntGraphError, match="max_tensor_elements"):
        export_c(g_with_shape(g, (g.tensors[g.input].shape[0], 46341, 46341)), tmp_path / "c")
    assert list(tmp_path.iterdir()) == [p]  # nothing half-written, no hidden temp folder


def g_with_shape(g, shape):
    g.tensors[g.input].shape = shape
    return g


def test_npy_header_larger_than_its_data_is_refused(tmp_path):
    """An array header may not declare more bytes than the member holds (no blind allocation)."""
    g = conv_graph(np.random.default_rng(0), dims=2, dtype="int8")
    p = tmp_path / "m.iqm"
    save(g, p)
    with zipfile.ZipFile(p) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.int8))
    header["shape"] = (2**40,)
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    members["0/weight.npy"] = buf.getvalue() + b"\0" * 16
    with zipfile.ZipFile(p, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(IntGraphError, match="header declares"):
        load(p)


def test_window_attrs_are_bounded_and_checked_in_time_independent_of_size():
    g = max_pool_graph(np.random.default_rng(0), dims=2, dtype="int8")
    op = g.ops[0]
    op.attrs["kernel"] = [1, 10**9]
    with pytest.raises(IntGraphError, match=r"attr 'kernel' entries must be <= 65536"):
        g.validate()


def test_limits_are_overridable():
    g = conv_graph(np.random.default_rng(0), dims=2, dtype="int8")
    g.validate()
    with pytest.raises(IntGraphError, match="max_tensor_elements"):
        g.validate(Limits(max_tensor_elements=4))
    with pytest.raises(IntGraphError, match="max_macs"):
        g.validate(Limits(max_macs=1))


def test_trigger_inputs_really_hit_the_injected_values():
    """The trigger inputs exercise the injected conditions (guards the tests above)."""
    x = trigger_inputs((8,), "int8")
    assert x[0, 0] == 99 and x[1, 0] == 42


# ----------------------------------------------------------------------------------------------
# Untrusted .pt2 files: a crafted archive must not run code when intquant loads it
# ----------------------------------------------------------------------------------------------


def saved_model(tmp_path: Path) -> Path:
    m = torch.nn.Sequential(torch.nn.Linear(4, 2))
    path = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(m, (torch.zeros(1, 4),)), str(path))
    return path


def rewrite(path: Path, edit) -> None:
    with zipfile.ZipFile(path) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    edit(members)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


class Payload:
    """Unpickling this writes a marker file: stands for any code an attacker would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def gadget(marker: Path) -> bytes:
    buf = io.BytesIO()
    torch.save(Payload(marker), buf)
    return buf.getvalue()


def pickled_weight(marker: Path):
    def edit(members):
        key = next(k for k in members if k.endswith("model_weights_config.json"))
        config = json.loads(members[key])
        entry = config["config"]["0.weight"]
        entry["use_pickle"] = True
        members[key] = json.dumps(config).encode()
        members[key.replace("model_weights_config.json", entry["path_name"])] = gadget(marker)

    return edit


def pickled_example_inputs(marker: Path):
    def edit(members):
        key = next(k for k in members if "sample_inputs" in k)
        members[key] = gadget(marker)

    return edit


@pytest.mark.parametrize("attack", [pickled_weight, pickled_example_inputs])
def test_crafted_pt2_is_refused_and_runs_nothing(tmp_path, attack):
    marker = tmp_path / "marker.txt"
    path = saved_model(tmp_path)
    rewrite(path, attack(marker))
    with pytest.raises(UnsafePt2Error, match="refusing to load"):
        load_pt2(path)
    assert not marker.exists()


def test_the_attack_is_real_with_plain_torch_export_load(tmp_path):
    """Guards the test above: the same file does run code through torch.export.load itself."""
    marker = tmp_path / "marker.txt"
    path = saved_model(tmp_path)
    rewrite(path, pickled_weight(marker))
    try:
        torch.export.load(str(path))
    except Exception:
        pass  # the payload returns None, which torch may reject after running it
    assert marker.read_text() == "code ran"


def test_ordinary_pt2_loads(tmp_path):
    ep = load_pt2(saved_model(tmp_path))
    assert isinstance(ep, torch.export.ExportedProgram)


def test_non_archive_gets_one_clear_error(tmp_path):
    p = tmp_path / "x.pt2"
    p.write_bytes(b"not a zip")
    with pytest.raises(UnsafePt2Error, match="not a torch.export .pt2 archive"):
        load_pt2(p)


def test_crafted_pt2_through_quantize_is_refused(tmp_path):
    """The public entry point takes .pt2 paths through the same guarded loader."""
    marker = tmp_path / "marker.txt"
    path = saved_model(tmp_path)
    rewrite(path, pickled_weight(marker))
    with pytest.raises(ValueError, match="refusing to load"):
        intquant.quantize(str(path), np.zeros((4, 4), np.float32), progress=False)
    assert not marker.exists()


def test_onnx_external_data_outside_the_model_folder_is_refused(tmp_path):
    """An initializer whose external data points outside the model's folder is not read."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\x01" * 64)
    w = numpy_helper.from_array(np.zeros((4, 4), np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", "64")):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w],
    )
    (tmp_path / "m").mkdir()
    onnx.save(helper.make_model(graph), str(tmp_path / "m" / "evil.onnx"))
    with pytest.raises(ValueError, match="points outside the directory"):
        intquant.from_onnx(tmp_path / "m" / "evil.onnx")
