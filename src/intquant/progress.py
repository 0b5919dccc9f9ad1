"""Progress bars only where a person waits: work that lasts longer than a couple of seconds.

Library calls must not print "calibrating 0/1" into users' logs, so every bar of intquant goes
through :func:`bar`: it stays invisible for ``DELAY_SECONDS`` (tqdm's ``delay``) and appears
only if the work is still running then. ``progress=False`` on a call, or ``INTQUANT_PROGRESS=0``
in the environment, silences bars altogether.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

DELAY_SECONDS = 2.0


def enabled(progress: bool = True) -> bool:
    """Whether bars may be shown: the call allows it and the environment does not forbid it."""
    return bool(progress) and os.environ.get("INTQUANT_PROGRESS", "1").strip() not in (
        "0", "false", "no", "off")


def bar(iterable: Iterable[Any], desc: str, progress: bool = True, **kw: Any):
    """A tqdm bar over ``iterable`` on stderr, shown only after ``DELAY_SECONDS`` of work."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, disable=not enabled(progress), leave=False,
                delay=DELAY_SECONDS, file=sys.stderr, **kw)
