"""Progress bars, one rule for every command: drawn on a terminal only, never into a log file or CI output."""

from __future__ import annotations

import os
import sys
from typing import Any

from tqdm.auto import tqdm

__all__ = ["progress_bar", "progress_enabled"]


def progress_enabled(requested: bool = True) -> bool:
    """Progress bars are drawn only when asked for, on a terminal, and not switched off with
    ``uniformer --no-progress`` (``UNIFORMER_NO_PROGRESS=1``): a log file or CI gets the per-epoch lines instead
    of every refresh of a bar."""
    return requested and os.environ.get("UNIFORMER_NO_PROGRESS", "") in ("", "0") and sys.stderr.isatty()


def progress_bar(total: int, *, initial: int = 0, desc: str = "", enabled: bool = True, unit: str = "step") -> Any:
    """A tqdm bar (rate, ETA) when :func:`progress_enabled`, or an inert one."""
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        dynamic_ncols=True,
        disable=not progress_enabled(enabled),
        leave=False,
    )
