"""Loading ``.pt2`` files (torch.export archives) without running code hidden in them.

``torch.export.load`` (torch 2.13) unpickles parts of the archive with full pickle: weights and
tensor constants marked ``use_pickle`` go through ``torch.load(..., weights_only=False)``,
example inputs fall back to ``weights_only=False`` when the safe load fails, and custom-object
constants go through ``pickle.loads`` / ``torch._C._pickle_load_obj``. A crafted ``.pt2`` can
therefore run arbitrary Python on load. :func:`load_pt2` calls ``torch.export.load`` with those
paths closed: every ``torch.load`` is forced to ``weights_only=True`` (plain tensors and
containers only) and raw unpickling is refused, so such a file is rejected with one clear error
instead of being executed. Custom objects (TorchBind ScriptObjects) are not supported anyway.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock


class UnsafePt2Error(ValueError):
    """The .pt2 file holds pickled objects other than plain tensors (loading them could run
    code), or is not a readable torch.export archive."""


def _refuse_pickle(*args: Any, **kwargs: Any) -> Any:
    raise UnsafePt2Error(
        "it holds pickled Python objects (custom objects), which could run code when loaded"
    )


@contextmanager
def _tensors_only() -> Iterator[None]:
    """Inside: torch.load accepts only plain tensors and containers; raw unpickling raises."""
    import torch
    from torch.export.pt2_archive import _package

    real_load = torch.load

    def strict_load(f: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        try:
            return real_load(f, *args, **kwargs)
        except Exception as e:
            raise UnsafePt2Error(
                f"a pickled part is not a plain tensor or container ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:200] if str(e) else ''}); loading it could run code"
            ) from None

    with (
        mock.patch.object(torch, "load", strict_load),
        mock.patch.object(_package, "pickle", SimpleNamespace(loads=_refuse_pickle)),
        mock.patch.object(torch._C, "_pickle_load_obj", _refuse_pickle),
    ):
        yield


def load_pt2(path: str | os.PathLike) -> Any:
    """``torch.export.load(path)`` with every code-running unpickling path refused.

    Raises UnsafePt2Error (a ValueError) naming the file and what was wrong.
    """
    import torch

    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise UnsafePt2Error(f"{path}: not a torch.export .pt2 archive (not a zip file)")
    try:
        with _tensors_only():
            return torch.export.load(str(path))
    except UnsafePt2Error as e:
        raise UnsafePt2Error(f"{path}: refusing to load: {e}") from None
    except Exception as e:  # torch's own parse errors: one line, no traceback
        first = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
        raise UnsafePt2Error(f"{path}: not a readable torch.export .pt2 file: {first}") from None
