"""The recurrent keyword spotters of the zoo (``gru_kws``, ``lstm_kws``: nn.GRU / nn.LSTM as
written, on the synthetic speech commands): float accuracy floor, and the quantized model in C
bit-exact with the interpreter on the host (every test sample), under ASan/UBSan, on the
emulated Cortex-M0 (QEMU micro:bit: 16 KB RAM, 256 KB flash; one sample) and through the
streaming API frame by frame on unicorn's Cortex-M0 (one sample).

Accuracy and SQNR of the quantized models, flash, arena and cycles per frame are measured in
benchmarks/arch_rnn.py (RESULTS.md), not here.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import intquant
import recurrent_models as RM
from intquant import qat, zoo
from intquant.codegen.stream import emulate_stream, reference_frames
from intquant.codegen.toolchain import build_m0, compile_and_run_host, run_on_m0

NAMES = ["gru_kws", "lstm_kws"]
MODES = {"int8": {"weight_bits": 8, "act_bits": 8}, "16x8": {"weight_bits": 8, "act_bits": 16}}


def test_recurrent_zoo_models_are_in_the_architectures_table():
    assert set(NAMES) <= set(zoo.architectures())
    for name in NAMES:
        assert zoo.recipe(name).dataset == "speech_commands"


@pytest.fixture(scope="module")
def quantized(zoo_project):
    return lambda name, mode: zoo_project(name, **MODES[mode])


@pytest.mark.parametrize("name", NAMES)
def test_recurrent_zoo_model_meets_its_float_accuracy_floor(zoo_model, name):
    model, ds = zoo_model(name)
    with torch.no_grad():
        acc = float((model(torch.from_numpy(ds.x_test)).argmax(1).numpy() == ds.y_test).mean())
    assert acc >= zoo.recipe(name).min_test_acc, acc


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name", NAMES)
def test_recurrent_zoo_c_host_bit_exact_every_test_sample(quantized, name, mode):
    q, res, x, ref, *_ = quantized(name, mode)
    assert [op.kind for op in q.graph.ops] == [name.split("_")[0], "fully_connected"]
    np.testing.assert_array_equal(compile_and_run_host(res.out_dir, x, opt="-O2"), ref)
    np.testing.assert_array_equal(
        compile_and_run_host(res.out_dir, x[:20], opt="-O1", sanitize=True), ref[:20])


@pytest.mark.parametrize("name", NAMES)
def test_recurrent_zoo_m0_one_sample_and_stream(quantized, name):
    """W8A8 on QEMU's micro:bit (Cortex-M0, 16 KB RAM) and the stream on unicorn's M0."""
    q, res, x, ref, *_ = quantized(name, "int8")
    build = build_m0(res.out_dir, x[:1])
    assert build.soft_float == [] and build.board == "microbit"
    np.testing.assert_array_equal(run_on_m0(res.out_dir, x[:1], "qemu"), ref[:1])
    cost = emulate_stream(res.out_dir, x[:1])
    frames = reference_frames(q.graph, x[:1])
    np.testing.assert_array_equal(cost.outputs, frames)
    np.testing.assert_array_equal(cost.outputs[:, -1], ref[:1])


def _grid(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 codes and per-row scales of a float32 gate matrix: s = max|row| / 127, round to
    nearest (float32 division and product: correctly rounded on every IEEE machine)."""
    s = np.abs(w).max(axis=1) / np.float32(127)
    return np.clip(np.round(w / s[:, None]), -127, 127), s


def train_three_steps_and_deploy(qm, x: torch.Tensor):
    """Three SGD steps on a fixed 64-sample batch, then (eval-mode output, convert(qm)): what
    the deployed integer model must reproduce is the trained QAT model, not the initial one."""
    opt = torch.optim.SGD(qm.parameters(), lr=0.05)
    target = torch.arange(64) % RM.CLASSES
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(qm(x), target).backward()
        opt.step()
    qm.eval()
    with torch.no_grad():
        y = qm(x).numpy()
    return y, qat.convert(qm)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_recurrent_qat_trains_on_the_deployed_grid(kind, layers):
    """QAT of nn.GRU / nn.LSTM: in training mode the layer computes with its gate matrices on
    their int8 row grid (the float layer with those weights, to float32 evaluation error) and
    passes gradients to the latent weights; after training, eval mode is the converted integer
    model, whose gate matrices are exactly the trained grid's codes."""
    form = "two_layers_h_n_last" if layers == 2 else "batch_first_out_last"
    model = RM.make(kind, form)
    x = RM.sequences(64)
    qm = qat.prepare(model, intquant.Config())
    rnn = qm.get_submodule("rnn")
    gridded = copy.deepcopy(model.rnn)
    with torch.no_grad():
        for name, p in gridded.named_parameters():
            if name.startswith("weight"):
                codes, s = _grid(p.numpy())
                p.copy_(torch.from_numpy(codes * s[:, None]))
    qm.train()
    out, _ = rnn(x)
    with torch.no_grad():  # float32 evaluation error ~1e-7; the int8 grid moves outputs ~1e-3
        ours = out.detach().numpy()
        assert np.abs(ours - gridded(x)[0].numpy()).max() < 1e-5
        assert np.abs(ours - model.rnn(x)[0].numpy()).max() > 1e-4
    out.sum().backward()
    assert rnn.weight_hh_l0.grad is not None and rnn.weight_hh_l0.grad.abs().sum() > 0

    y, deployed = train_three_steps_and_deploy(qm, x)
    op = deployed.graph.ops[0]
    assert [o.kind for o in deployed.graph.ops] == [kind, "fully_connected"]
    for layer in range(layers):
        for key in ("ih", "hh"):
            w = getattr(rnn, f"weight_{key}_l{layer}").detach().numpy()
            np.testing.assert_array_equal(op.consts[f"w_{key}{layer}"], _grid(w)[0])
    np.testing.assert_array_equal(y, deployed.predict(x.numpy()).astype(np.float32))


@pytest.mark.parametrize("stacked", [False, True])
@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_cell_loop_qat_trains_on_the_deployed_grid(kind, stacked):
    """QAT of GRUCell / LSTMCell loops (a fixed number of steps: torch.fx traces the loop): in
    training mode each cell computes with its gate matrices on their int8 row grid (the float
    cell with those weights, to float32 evaluation error) and passes gradients to the latent
    weights; after training, eval mode is the converted integer model, one recurrent op whose
    gate matrices (every stacked loop's, merged into one two-layer op) are exactly the trained
    grid's codes."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = RM.CellLoop(kind, stacked=stacked, steps_by="fixed").eval()
    x = RM.sequences(64)
    qm = qat.prepare(model, intquant.Config())
    names = ["cell", "cell2"][:1 + stacked]
    cell = qm.get_submodule("cell")
    gridded = copy.deepcopy(model.cell)
    with torch.no_grad():
        for name, p in gridded.named_parameters():
            if name.startswith("weight"):
                codes, s = _grid(p.numpy())
                p.copy_(torch.from_numpy(codes * s[:, None]))
    qm.train()
    state = cell(x[:, 0], cell(x[:, 1]))
    h = state[0] if kind == "lstm" else state
    with torch.no_grad():  # float32 evaluation error ~1e-7; the int8 grid moves outputs ~1e-3
        ref = gridded(x[:, 0], gridded(x[:, 1]))
        plain = model.cell(x[:, 0], model.cell(x[:, 1]))
        ref, plain = (r[0] if kind == "lstm" else r for r in (ref, plain))
        assert np.abs(h.numpy() - ref.numpy()).max() < 1e-5
        assert np.abs(h.numpy() - plain.numpy()).max() > 1e-4
    h.sum().backward()
    assert cell.weight_hh.grad is not None and cell.weight_hh.grad.abs().sum() > 0

    y, deployed = train_three_steps_and_deploy(qm, x)
    op = deployed.graph.ops[0]
    assert [o.kind for o in deployed.graph.ops] == [kind, "fully_connected"]
    assert op.attrs["layers"] == len(names)
    for layer, name in enumerate(names):
        for key in ("ih", "hh"):
            w = getattr(qm.get_submodule(name), f"weight_{key}").detach().numpy()
            np.testing.assert_array_equal(op.consts[f"w_{key}{layer}"], _grid(w)[0])
    np.testing.assert_array_equal(y, deployed.predict(x.numpy()).astype(np.float32))


def test_cell_loop_qat_over_the_input_length_says_to_fix_the_step_count():
    """torch.fx cannot unroll range(x.shape[1]): prepare says what to write instead."""
    with pytest.raises(ValueError, match=r"needs a fixed number of steps \(for t in "
                                         r"range\(self.steps\)"):
        qat.prepare(RM.make("gru", "cell_loop_select"), intquant.Config())


class _TwoGRUs(torch.nn.Module):
    """Two nn.GRU modules in a row: captured as one two-layer gru op."""

    def __init__(self):
        super().__init__()
        self.rnn1 = torch.nn.GRU(RM.FEATURES, 8, batch_first=True)
        self.rnn2 = torch.nn.GRU(8, 8, batch_first=True)
        self.fc = torch.nn.Linear(8, RM.CLASSES)

    def forward(self, x):
        y, _ = self.rnn1(x)
        y, _ = self.rnn2(y)
        return self.fc(y[:, -1])


def test_qat_of_two_stacked_gru_modules_keeps_each_modules_trained_grid():
    """The two modules are merged into one op of two layers; each layer's codes are its own
    module's trained grid (convert gives PTQ the row scales per module name)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = _TwoGRUs().eval()
    x = RM.sequences(32)
    qm = qat.prepare(model, intquant.Config())
    qm.train()
    qm(x)
    qm.eval()
    op = qat.convert(qm).graph.ops[0]
    assert (op.kind, op.attrs["layers"]) == ("gru", 2)
    for layer, name in enumerate(("rnn1", "rnn2")):
        for key in ("ih", "hh"):
            w = getattr(qm.get_submodule(name), f"weight_{key}_l0").detach().numpy()
            np.testing.assert_array_equal(op.consts[f"w_{key}{layer}"], _grid(w)[0])
