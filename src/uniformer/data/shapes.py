"""Synthetic shapes (disc, square, triangle, ring, cross): the regions the segmentation and detection demos draw.

Shared media of two tasks' demo data, so that neither task's package imports the other's.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SHAPE_CLASSES", "shape_mask"]

SHAPE_CLASSES = ("background", "disc", "square", "triangle", "ring", "cross")


def shape_mask(kind: str, size: int, cy: float, cx: float, r: float) -> np.ndarray:
    """The (size, size) boolean region of one shape of radius ``r`` centred at (cy, cx)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    dist = np.hypot(dy, dx)
    if kind == "disc":
        return dist <= r
    if kind == "square":
        return (np.abs(dy) <= 0.8 * r) & (np.abs(dx) <= 0.8 * r)
    if kind == "triangle":  # apex up
        return (dy >= -r) & (dy <= 0.7 * r) & (np.abs(dx) <= 0.6 * (dy + r))
    if kind == "ring":
        return (dist <= r) & (dist >= 0.55 * r)
    if kind == "cross":
        return ((np.abs(dx) <= 0.3 * r) & (np.abs(dy) <= r)) | ((np.abs(dy) <= 0.3 * r) & (np.abs(dx) <= r))
    raise ValueError(f"unknown shape {kind!r}")
