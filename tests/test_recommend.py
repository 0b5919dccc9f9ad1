"""intquant.recommend and ``intquant recommend``: every option it prints is what ``quantize`` gives
with the printed settings, the table is the Pareto front, the choice obeys the budgets.

One recommendation of the MNIST-1D MLP (the fastest zoo model; 2 methods, mixes, KURE
fine-tuning for one epoch) is computed once per module and checked against independent
re-quantizations; the CLI runs once with its own files.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import intquant
from intquant import Config
from intquant.analysis.recommend import (
    Option,
    choose,
    m0_available,
    measure_m0,
    recommendation_blocks,
)
from intquant.analysis.report import render_html, render_markdown

MAX_DROP_PP = 1.0


@pytest.fixture(scope="module")
def setting(zoo_model):
    model, ds = zoo_model("mnist1d_mlp")
    calib = ds.x_train[:256]
    data = (ds.x_test[:300], ds.y_test[:300])
    search = (ds.x_train[-300:], ds.y_train[-300:])
    rec = intquant.recommend(model, calib, data, max_drop_pp=MAX_DROP_PP, search_data=search,
                             finetune=(ds.x_train[:1000], ds.y_train[:1000]), finetune_epochs=1,
                             cycles=False, progress=False)
    return model, calib, data, rec


def printed_settings(markdown: str) -> dict[int, dict]:
    """The '#i: {json}' lines of the printed recommendation."""
    found = re.findall(r"^#(\d+): (\{.*?\})(?:   \(the KURE fine-tuned model: finetuned.pt2\))?$",
                       markdown, flags=re.M)
    return {int(i): json.loads(s) for i, s in found}


def integer_accuracy(qmodel, data) -> float:
    x, y = data
    logits = qmodel.run(qmodel.quantize_input(x)).reshape(len(x), -1)
    return float(np.mean(logits.argmax(1) == y))


def test_options_cover_methods_widths_mixes_and_kure(setting):
    *_, rec = setting
    names = {(o.name, o.method) for o in rec.options}
    assert {("W8A8", "fast"), ("W8A8", "nearest"), ("W4A8", "fast"), ("W4A8", "nearest"),
            ("W8A16", "fast")} <= names
    assert any(o.name.startswith("mixed W") for o in rec.options)
    kure = [o for o in rec.options if o.name.startswith("KURE")]
    assert kure and all(o.model is not None for o in kure)
    # a mix really mixes widths, with the packed byte count below all-int8
    w8 = next(o for o in rec.options if o.name == "W8A8" and o.method == "fast")
    mixed = [o for o in rec.options if o.name.startswith("mixed")]
    assert any(len({v.get("weight_bits") for v in o.config.overrides.values()} - {None}) >= 1
               and o.weight_bytes < w8.weight_bytes for o in mixed)


def test_every_printed_option_is_reproduced_by_quantize(setting):
    model, calib, data, rec = setting
    printed = printed_settings(rec.markdown())
    assert set(printed) == {i for i, o in enumerate(rec.options) if o.pareto}
    for i, settings in printed.items():
        o = rec.options[i]
        q = intquant.quantize(o.model if o.model is not None else model, calib,
                              Config.from_dict(settings), progress=False)
        assert q.weight_bytes() == o.flash_bytes, o.name
        for op, ref in zip(q.graph.ops, o.qmodel.graph.ops, strict=True):
            assert op.consts.keys() == ref.consts.keys()
            for k in op.consts:
                assert np.array_equal(op.consts[k], ref.consts[k]), (o.name, op.name, k)
        assert integer_accuracy(q, data) == o.accuracy, o.name


def test_the_table_is_the_pareto_front(setting):
    *_, rec = setting

    def no_worse(a: Option, b: Option) -> bool:
        return (a.accuracy >= b.accuracy and a.logit_error <= b.logit_error
                and a.flash_bytes <= b.flash_bytes and a.ram_bytes <= b.ram_bytes)

    for o in rec.options:
        beaten = any(no_worse(p, o) and not no_worse(o, p) for p in rec.options if p is not o)
        assert o.pareto == (not beaten), o.name
    rows = [r for r in rec.markdown().splitlines() if re.match(r"\| \d+ \|", r)]
    assert len(rows) == sum(o.pareto for o in rec.options) >= 2


def test_the_recommendation_is_the_least_flash_within_the_drop(setting):
    *_, rec = setting
    ok = [o for o in rec.options if 100 * (rec.float_accuracy - o.accuracy) <= MAX_DROP_PP]
    assert rec.best is not None and rec.best.pareto
    assert rec.best.flash_bytes == min(o.flash_bytes for o in ok)
    assert "Recommended: " + rec.reason in rec.markdown()


def test_budgets_are_respected_or_refused_with_a_message(setting):
    *_, rec = setting
    w8 = next(o for o in rec.options if o.name == "W8A8" and o.method == "fast")
    flash = w8.flash_bytes - 1  # int8 no longer fits
    index, reason = choose(rec.options, rec.float_accuracy, MAX_DROP_PP, flash, None)
    assert index is not None and rec.options[index].flash_bytes <= flash
    assert not w8.fits and f"flash ≤ {flash} B" in reason
    smallest = min(o.flash_bytes for o in rec.options)
    index, reason = choose(rec.options, rec.float_accuracy, MAX_DROP_PP, smallest - 1, None)
    assert index is None
    assert reason.startswith(f"no option fits flash ≤ {smallest - 1} B") and str(smallest) in reason
    # nothing within the drop: the most accurate option that fits, said so
    index, reason = choose(rec.options, 2.0, MAX_DROP_PP, None, None)
    assert rec.options[index].accuracy == max(o.accuracy for o in rec.options)
    assert reason.startswith("no option is within")


def test_report_section_escapes_layer_names(setting):
    *_, rec = setting
    hostile = "<script>x</script>|`` ```"
    o = rec.options[0]
    evil = Option(name=o.name, method=o.method, accuracy=o.accuracy, logit_error=o.logit_error,
                  flash_bytes=1, weight_bytes=1, ram_bytes=1, pareto=True,
                  config=Config(overrides={hostile: {"weight_bits": 4}}))
    rec2 = type(rec)(**{**rec.__dict__, "options": [evil], "recommended": 0})
    blocks = recommendation_blocks(rec2)
    assert "<script>" not in render_html(blocks)
    md = render_markdown(blocks)
    fence = re.search(r"^(`{3,})$", md, flags=re.M).group(1)
    assert len(fence) > 3 and hostile.replace('"', '\\"') in md  # longer than any run inside


@pytest.mark.skipif(not m0_available(), reason="ARM toolchain not installed")
def test_m0_cost_is_that_of_the_reproduced_model(setting, tmp_path):
    from intquant.codegen.cost import cost_report

    model, calib, _, rec = setting
    o = rec.best
    measure_m0(o)
    q = intquant.quantize(model, calib, Config.from_dict(o.settings()), progress=False)
    q.export_c(tmp_path / "c")
    assert o.m0 == cost_report(tmp_path / "c", write=False)["cycles_per_inference"] > 0
    assert o.m0_counter == "cycles"


def test_cli_recommend(zoo_model, tmp_path):
    _, ds = zoo_model("mnist1d_mlp")
    np.savez(tmp_path / "calib.npz", x=ds.x_train[:256])
    np.savez(tmp_path / "test.npz", x=ds.x_test[:300], y=ds.y_test[:300])

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "intquant.cli", "recommend",
                               "zoo:mnist1d_mlp", "--calib", "calib.npz", "--data", "test.npz",
                               "--methods", "fast", "--no-cycles", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=600,
                              env={**os.environ, "INTQUANT_PROGRESS": "0",
                                   "PYTHONWARNINGS": "ignore"})

    r = cli("--out", "rec")
    assert r.returncode == 0, r.stderr
    assert "Recommended: " in r.stdout
    chosen = int(re.search(r"^\| (\d+) \|.*◀ recommended", r.stdout, flags=re.M).group(1))
    cfg = Config.load(tmp_path / "rec" / f"config-{chosen}.json")
    assert Config.from_dict(printed_settings(r.stdout)[chosen]).to_json() == cfg.to_json()
    saved = json.loads((tmp_path / "rec" / "recommend.json").read_text())
    assert saved["recommended"] == chosen
    assert "Recommendation" in (tmp_path / "rec" / "report.html").read_text()

    r = cli("--flash-budget", "10", "--out", "none")  # below anything: table, one error line
    assert r.returncode == 2 and "Recommendation" in r.stdout
    assert not (tmp_path / "none").exists()
    assert r.stderr.strip().splitlines()[-1].startswith(
        "intquant recommend: error: no option fits flash ≤ 10 B")
    for bad, needle in ((("--methods", "fast,magic"), "--methods 'fast,magic'"),
                        (("--max-drop", "-1"), "--max-drop -1"),
                        (("--data", "calib.npz"), "has no labels")):
        r = cli(*bad)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert needle in r.stderr and "Traceback" not in r.stderr
