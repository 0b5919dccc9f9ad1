"""A crafted .pt2 must not run code when intquant loads it (torch.export.load alone would)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
import torch

from intquant.graph.pt2 import UnsafePt2Error, load_pt2


class Payload:
    """Unpickling this writes a marker file: stands for any code an attacker would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


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
