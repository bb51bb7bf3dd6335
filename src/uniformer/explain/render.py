"""Pictures of an explanation a person looks at, and the JSON beside them.

* an image: one PNG with the input, the map and the overlay side by side, titled with the class and its score;
* a video: a PNG strip of 8 frames (the frames over their overlays) and, where asked, an animated GIF and/or an
  MP4 of every clip frame beside its overlay;
* ``features``: one PNG grid, a row per stage and a column per time step (the official ``show_fea.ipynb``
  layout: the negated channel mean on a diverging scale centred at the map's mean);
* always a JSON with the target class, its score and the map's statistics.

The overlay is the official one: the map through the jet colour map, averaged half and half with the frame,
inside the model's view only (a white box marks the view when it is not the whole frame). Files are written
atomically, named ``<input name>.<method>.<ext>``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after choosing the non-interactive backend)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import CenteredNorm  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from uniformer._fileio import atomic_write, atomic_write_text  # noqa: E402
from uniformer.data.synth import write_video  # noqa: E402
from uniformer.explain.explain import Explanation  # noqa: E402

__all__ = ["VIDEO_FORMATS", "overlay", "write_explanation"]

VIDEO_FORMATS: tuple[str, ...] = ("gif", "mp4")
STRIP_FRAMES = 8
MAX_SIDE = 480  # pictures larger than this (on their long side) are drawn smaller


def overlay(frame: np.ndarray, heat: np.ndarray, box: Sequence[float] | None = None) -> np.ndarray:
    """``frame`` (H, W, 3) uint8 with ``heat`` (H, W) in [0, 1] through the jet colour map, half and half
    inside ``box`` = (top, left, bottom, right); the frame alone outside it, with the box outlined."""
    colours = (matplotlib.colormaps["jet"](heat)[..., :3] * 255).astype(np.uint8)
    blended = colours // 2 + frame // 2
    if box is None:
        return blended
    height, width = heat.shape
    top, left, bottom, right = (int(round(v)) for v in box)
    out = frame.copy()
    out[top:bottom, left:right] = blended[top:bottom, left:right]
    if (top, left, bottom, right) != (0, 0, height, width):
        image = Image.fromarray(out)
        ImageDraw.Draw(image).rectangle((left, top, right - 1, bottom - 1), outline=(255, 255, 255))
        out = np.asarray(image)
    return out


def _shrink(frames: np.ndarray, heat: np.ndarray, box: Sequence[float]) -> tuple[np.ndarray, np.ndarray, list]:
    """Frames, maps and box scaled so the long side is at most :data:`MAX_SIDE` (even sizes, for video codecs)."""
    height, width = frames.shape[1:3]
    scale = min(1.0, MAX_SIDE / max(height, width))
    size = (max(2, int(height * scale) // 2 * 2), max(2, int(width * scale) // 2 * 2))
    if size == (height, width):
        return frames, heat, list(box)
    clip = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    small = torch.nn.functional.interpolate(clip, size=size, mode="bilinear", antialias=True, align_corners=False)
    maps = torch.nn.functional.interpolate(torch.from_numpy(heat)[:, None], size=size, mode="bilinear")[:, 0]
    sy, sx = size[0] / height, size[1] / width
    scaled = [box[0] * sy, box[1] * sx, box[2] * sy, box[3] * sx]
    return small.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy(), maps.clamp(0, 1).numpy(), scaled


def _title(e: Explanation) -> str:
    stage = f", stage {e.stage}" if e.stage is not None and e.method != "cam" else ""
    return f"{e.method}{stage}: {e.label} ({100 * e.score:.1f}%)"


def _save_figure(fig: plt.Figure, path: Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def _image_panel(e: Explanation, frames: np.ndarray, heat: np.ndarray, box: list, path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(9.6, 3.6))
    axes[0].imshow(frames[0])
    axes[0].set_title("input", fontsize=9)
    shown = axes[1].imshow(heat[0], cmap="jet", vmin=0, vmax=1)
    axes[1].set_title("map", fontsize=9)
    fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.03)
    axes[2].imshow(overlay(frames[0], heat[0], box))
    axes[2].set_title("overlay", fontsize=9)
    for axis in axes:
        axis.set_axis_off()
    fig.suptitle(_title(e), fontsize=11)
    _save_figure(fig, path)


def _strip(e: Explanation, frames: np.ndarray, overlays: np.ndarray, path: Path) -> None:
    count = len(frames)
    chosen = sorted({round(i * (count - 1) / max(STRIP_FRAMES - 1, 1)) for i in range(min(STRIP_FRAMES, count))})
    fig, axes = plt.subplots(2, len(chosen), figsize=(1.6 * len(chosen), 3.8), squeeze=False)
    for column, t in enumerate(chosen):
        axes[0, column].imshow(frames[t])
        axes[1, column].imshow(overlays[t])
        label = f"frame {e.indices[t]}" if e.indices is not None else f"{t}"
        axes[1, column].set_xlabel(label, fontsize=7)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    fig.suptitle(_title(e), fontsize=10)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.08, top=0.86, wspace=0.04, hspace=0.04)
    _save_figure(fig, path)


def _write_gif(frames: np.ndarray, path: Path, fps: float) -> None:
    images = [Image.fromarray(f) for f in frames]
    duration = int(round(1000 / fps))

    def save(tmp: str) -> None:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)

    atomic_write(path, save)


def _write_mp4(frames: np.ndarray, path: Path, fps: float) -> None:
    def save(tmp: str) -> None:
        named = tmp + ".mp4"  # the container follows the suffix
        try:
            write_video(named, frames, fps=max(1, int(round(fps))))
            os.replace(named, tmp)
        finally:
            Path(named).unlink(missing_ok=True)

    atomic_write(path, save)


def _show_feature(axis: plt.Axes, stage_map: torch.Tensor) -> None:
    """The official notebook's picture of a channel mean: negated, on a scale centred at its mean."""
    shown = -stage_map.numpy()
    axis.imshow(shown, norm=CenteredNorm(vcenter=float(shown.mean())))


def _features_grid(e: Explanation, frames: np.ndarray, path: Path) -> None:
    """A row per stage under a row of frames, a column per feature time step (at most 8); an image's input and
    its four stages in one row."""
    maps = [m if m.ndim == 3 else m[None] for m in e.raw]  # (T', h, w) per stage
    top, left, bottom, right = (int(round(v)) for v in e.box)
    frames = frames[:, top:bottom, left:right]  # the view the maps are of
    steps = min(maps[0].shape[0], STRIP_FRAMES)
    per_step = max(1, len(frames) // maps[0].shape[0])  # clip frames per feature time step (2: the stem)
    if steps == 1:
        fig, axes = plt.subplots(1, len(maps) + 1, figsize=(1.8 * (len(maps) + 1), 2.4), squeeze=False)
        axes[0, 0].imshow(frames[0])
        axes[0, 0].set_title("input", fontsize=8)
        for s, stage_map in enumerate(maps):
            _show_feature(axes[0, s + 1], stage_map[0])
            axes[0, s + 1].set_title(f"stage {s + 1}", fontsize=8)
    else:
        fig, axes = plt.subplots(len(maps) + 1, steps, figsize=(1.5 * steps, 1.5 * (len(maps) + 1)), squeeze=False)
        for t in range(steps):
            axes[0, t].imshow(frames[min(t * per_step, len(frames) - 1)])
            axes[0, t].set_title(f"t={t}", fontsize=7)
            for s, stage_map in enumerate(maps):
                _show_feature(axes[s + 1, t], stage_map[t])
        for s in range(len(maps)):
            axes[s + 1, 0].set_ylabel(f"stage {s + 1}", fontsize=8)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    fig.suptitle(f"features: channel means (top-1 {e.label}, {100 * e.score:.1f}%)", fontsize=10)
    _save_figure(fig, path)


def write_explanation(
    e: Explanation, out_dir: str | os.PathLike[str], stem: str, video_formats: Sequence[str] = ("gif",), fps: float = 8
) -> list[Path]:
    """Write the pictures and JSON of ``e`` into ``out_dir`` as ``<stem>.<method>.*``; returns the paths.
    ``video_formats``: any of ``gif``, ``mp4`` for a video's animation (none: the strip only)."""
    unknown = [f for f in video_formats if f not in VIDEO_FORMATS]
    if unknown:
        raise ValueError(f"video formats are {', '.join(VIDEO_FORMATS)}; got {', '.join(unknown)}")
    out = Path(out_dir)
    base = out / f"{stem}.{e.method}"
    written: list[Path] = []
    if e.error is None and e.frames is not None:
        frames = e.frames.numpy()
        if e.method == "features":
            _features_grid(e, frames, Path(f"{base}.png"))
            written.append(Path(f"{base}.png"))
        else:
            heat = e.map.numpy()
            frames, heat, box = _shrink(frames, heat, e.box)
            if len(frames) == 1:
                _image_panel(e, frames, heat, box, Path(f"{base}.png"))
                written.append(Path(f"{base}.png"))
            else:
                overlays = np.stack([overlay(f, h, box) for f, h in zip(frames, heat, strict=True)])
                _strip(e, frames, overlays, Path(f"{base}.strip.png"))
                written.append(Path(f"{base}.strip.png"))
                side_by_side = np.concatenate([frames, overlays], axis=2)
                for fmt in video_formats:
                    target = Path(f"{base}.{fmt}")
                    (_write_gif if fmt == "gif" else _write_mp4)(side_by_side, target, fps)
                    written.append(target)
    document = {**e.to_dict(), "files": [os.fspath(p) for p in written]}
    json_path = Path(f"{base}.json")
    atomic_write_text(json_path, json.dumps(document, indent=2) + "\n")
    return [*written, json_path]
