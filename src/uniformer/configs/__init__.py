"""The recipes shipped with the package: ``image/``, ``video/`` (the official configurations) and ``demo/``.

``uniformer train CONFIG`` takes a file or one of these by name (``video/k400_uniformer_small_16x4``), so the
recipes work from an installed package, not only from a checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["find_config", "shipped_configs"]

_ROOT = Path(__file__).resolve().parent


def find_config(path: str | os.PathLike[str]) -> Path:
    """``path`` itself when it exists, else the recipe of that name shipped with the package
    (``video/k400_uniformer_small_16x4``, with or without ``configs/`` in front and ``.yaml`` behind)."""
    given = Path(path)
    if given.is_file():
        return given
    relative = given.as_posix().removeprefix("./").removeprefix("configs/")
    shipped = _ROOT / relative
    for candidate in (shipped, shipped.with_name(shipped.name + ".yaml")):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"config file {path} does not exist (nor does a shipped recipe of that name; `uniformer configs` lists them)"
    )


def shipped_configs() -> list[str]:
    """Names of the recipes shipped with the package (``video/k400_uniformer_small_16x4``, ...)."""
    return sorted(p.relative_to(_ROOT).with_suffix("").as_posix() for p in _ROOT.rglob("*.yaml") if p.name[0] != "_")
