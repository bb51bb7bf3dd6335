"""A synthetic video classification set whose classes exist only in motion.

Each video shows a random polygon filled with a random blocky texture (random shape, colours, size, position and
speed) over a dark background, sometimes with a static distractor shape. The class is the direction of its
motion: moving right / left / down / up, rotating clockwise / anticlockwise, approaching (growing) / receding
(shrinking). Any single frame is consistent with every class of its family, so a model must compare frames to
classify, and shuffling the frames in time destroys the signal: the demo uses exactly that to show a video model
uses time.

Videos are real H.264 mp4 files from PyAV's bundled FFmpeg (mpeg4 if libx264 is missing), with Kinetics-style
``train.txt`` / ``val.txt`` (``path label``) and ``classes.txt``, all determined by the seed.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

MOTIONS: tuple[str, ...] = (
    "moving_right",
    "moving_left",
    "moving_down",
    "moving_up",
    "rotating_clockwise",
    "rotating_anticlockwise",
    "approaching",
    "receding",
)


@dataclass(frozen=True)
class SynthResult:
    """Where :func:`synthesize` wrote things and how."""

    root: str
    train_list: str
    val_list: str
    classes_file: str
    num_train: int
    num_val: int
    codec: str


def video_codec() -> str:
    """``"libx264"`` when PyAV's FFmpeg has it (the PyPI wheels do), else ``"mpeg4"`` (always built in)."""
    import av

    try:
        av.codec.Codec("libx264", "w")
        return "libx264"
    except (av.error.FFmpegError, ValueError):
        return "mpeg4"


def write_video(
    path: str | os.PathLike[str], frames: np.ndarray, fps: int = 25, codec: str | None = None, keyint: int | None = None
) -> None:
    """Encode ``(T, H, W, 3)`` uint8 RGB frames (even H and W) to a video file; the container follows the suffix.

    ``keyint`` sets the keyframe interval (the encoder's default otherwise: 250 for libx264, 12 for mpeg4)."""
    import av

    codec = codec or video_codec()
    _, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"frame size must be even for yuv420p, got {height}x{width}")
    with av.open(os.fspath(path), "w") as container:
        options = {"preset": "veryfast", "crf": "18"} if codec == "libx264" else {}
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if keyint is not None:
            stream.codec_context.gop_size = keyint
        if codec != "libx264":
            stream.bit_rate = 2_000_000
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def _polygon(rng: np.random.Generator) -> np.ndarray:
    """Unit-radius irregular polygon (vertex offsets), irregular so that its rotation is visible."""
    count = int(rng.integers(5, 9))
    angles = np.sort(rng.uniform(0, 2 * math.pi, count))
    radii = rng.uniform(0.6, 1.0, count)
    radii[0] = 1.0  # one clear tip
    return np.stack([np.cos(angles) * radii, np.sin(angles) * radii], axis=1)


def _colour(rng: np.random.Generator, avoid: np.ndarray | None = None) -> tuple[int, int, int]:
    while True:
        colour = rng.integers(0, 256, 3)
        if avoid is None or np.abs(colour - avoid).sum() > 200:
            return tuple(int(c) for c in colour)  # type: ignore[return-value]


def _sprite(rng: np.random.Generator, radius: float, background: np.ndarray) -> Image.Image:
    """An RGBA polygon of the given radius filled with a blocky random texture.

    The texture matters: a flat-coloured shape shows its motion only along its thin outline, a textured one
    over its whole area, which is what makes the set learnable from scratch in minutes at 64 px.
    """
    side = max(4, int(math.ceil(2 * radius)) + 2)
    cells = int(rng.integers(3, 6))
    palette = np.array([_colour(rng, background) for _ in range(cells * cells)], np.uint8).reshape(cells, cells, 3)
    texture = Image.fromarray(palette).resize((side, side), Image.NEAREST)
    mask = Image.new("L", (side, side), 0)
    outline = _polygon(rng) * radius + side / 2
    ImageDraw.Draw(mask).polygon([tuple(p) for p in outline], fill=255)
    texture.putalpha(mask)
    return texture


def render_clip(
    motion: str, rng: np.random.Generator, num_frames: int = 40, size: tuple[int, int] = (128, 128)
) -> np.ndarray:
    """Frames ``(T, H, W, 3)`` uint8 of one video of class ``motion``; all randomness from ``rng``."""
    return render_scene(motion, rng, num_frames, size)[0]


def render_scene(
    motion: str, rng: np.random.Generator, num_frames: int = 40, size: tuple[int, int] = (128, 128)
) -> tuple[np.ndarray, np.ndarray]:
    """The frames of :func:`render_clip` (the same for the same ``rng``) and where the moving object is in each:
    ``(T, H, W)`` bool masks, true where its sprite is opaque (what a localisation check scores against)."""
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}; expected one of {', '.join(MOTIONS)}")
    height, width = size
    unit = min(height, width) / 128.0
    # A dark grey background of random level. Saturated random background colours (tried first) shift every
    # token of a clip by a large per-video offset that drowns the motion of the object: a small UniFormer
    # trained from scratch stayed at chance on them, and learnt within 25 steps on dark backgrounds.
    background = np.full(3, int(rng.integers(0, 48)))
    base = Image.new("RGB", (width, height), tuple(int(c) for c in background))
    for _ in range(int(rng.integers(0, 2))):  # a static distractor: present in every frame, carries no motion
        distractor = _sprite(rng, rng.uniform(8, 14) * unit, background)
        corner = rng.uniform([0, 0], [max(1, width - distractor.width), max(1, height - distractor.height)])
        base.paste(distractor, tuple(int(c) for c in corner), distractor)
    steps = np.arange(num_frames, dtype=np.float64)
    if motion.startswith("moving"):
        horizontal = motion in ("moving_right", "moving_left")
        along_size, across_size = (width, height) if horizontal else (height, width)
        radius = rng.uniform(18, 26) * unit
        travel = min(rng.uniform(1.8, 2.8) * unit * (num_frames - 1), along_size - 2 * radius - 2)
        start = rng.uniform(radius, along_size - radius - travel)
        along = start + travel * steps / max(num_frames - 1, 1)
        if motion in ("moving_left", "moving_up"):
            along = along[::-1]
        across = np.full(num_frames, rng.uniform(radius, across_size - radius))
        xs, ys = (along, across) if horizontal else (across, along)
        radii, angles = np.full(num_frames, radius), np.zeros(num_frames)
    elif motion.startswith("rotating"):
        radius = rng.uniform(26, 36) * unit
        degrees = rng.uniform(5, 8) * (-1 if motion == "rotating_clockwise" else 1)  # PIL turns anticlockwise
        xs = np.full(num_frames, rng.uniform(radius, width - radius))
        ys = np.full(num_frames, rng.uniform(radius, height - radius))
        radii, angles = np.full(num_frames, radius), degrees * steps
    else:
        small, large = rng.uniform(10, 14) * unit, rng.uniform(34, 44) * unit
        radii = small * (large / small) ** (steps / max(num_frames - 1, 1))
        if motion == "receding":
            radii = radii[::-1]
        xs = np.full(num_frames, rng.uniform(large, width - large))
        ys = np.full(num_frames, rng.uniform(large, height - large))
        angles = np.zeros(num_frames)
    sprite = _sprite(rng, float(radii.max()), background)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    masks = np.empty((num_frames, height, width), bool)
    for t in range(num_frames):
        image = base.copy()
        scaled = max(2, int(round(sprite.width * radii[t] / radii.max())))
        moving = sprite.rotate(angles[t], resample=Image.BICUBIC) if angles[t] else sprite
        if scaled != sprite.width:
            moving = moving.resize((scaled, scaled), Image.BILINEAR)
        corner = (int(round(xs[t] - scaled / 2)), int(round(ys[t] - scaled / 2)))
        image.paste(moving, corner, moving)
        frames[t] = np.asarray(image)
        mask = Image.new("L", (width, height), 0)
        mask.paste(moving.getchannel("A"), corner)
        masks[t] = np.asarray(mask) > 0
    return frames, masks


def _write_one(job: tuple[str, str, int, int, int, int, tuple[int, int], int, str]) -> None:
    path, motion, seed, label, index, num_frames, size, fps, codec = job
    rng = np.random.default_rng([seed, label, index])
    write_video(path, render_clip(motion, rng, num_frames, size), fps, codec)


def synthesize(
    out_dir: str | os.PathLike[str],
    *,
    num_classes: int = 8,
    videos_per_class: int = 25,
    num_frames: int = 40,
    size: int | tuple[int, int] = 128,
    fps: int = 25,
    val_fraction: float = 0.2,
    seed: int = 0,
    workers: int = 1,
) -> SynthResult:
    """Write the synthetic set to ``out_dir``: ``videos/<class>/<class>_NNNN.mp4``, ``train.txt``, ``val.txt``,
    ``classes.txt``. The first ``num_classes`` motions of :data:`MOTIONS` are used; the last
    ``round(videos_per_class * val_fraction)`` videos of each class go to validation. Identical output for the
    same arguments (the encoder is deterministic with a fixed thread count per process)."""
    if not 2 <= num_classes <= len(MOTIONS):
        raise ValueError(f"--classes must be between 2 and {len(MOTIONS)}, got {num_classes}")
    if videos_per_class < 1 or num_frames < 2:
        raise ValueError(f"need videos_per_class >= 1 and num_frames >= 2, got {videos_per_class}, {num_frames}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    height, width = (size, size) if isinstance(size, int) else size
    if height < 32 or width < 32 or height % 2 or width % 2:
        raise ValueError(f"frame size must be even and at least 32, got {height}x{width}")
    root = Path(out_dir)
    codec = video_codec()
    num_val = round(videos_per_class * val_fraction)
    jobs, train_lines, val_lines = [], [], []
    for label, motion in enumerate(MOTIONS[:num_classes]):
        (root / "videos" / motion).mkdir(parents=True, exist_ok=True)
        for i in range(videos_per_class):
            relative = f"videos/{motion}/{motion}_{i:04d}.mp4"
            jobs.append((str(root / relative), motion, seed, label, i, num_frames, (height, width), fps, codec))
            (val_lines if i >= videos_per_class - num_val else train_lines).append(f"{relative} {label}\n")
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_one, jobs, chunksize=4))
    else:
        for job in jobs:
            _write_one(job)
    (root / "train.txt").write_text("".join(train_lines))
    (root / "val.txt").write_text("".join(val_lines))
    (root / "classes.txt").write_text("".join(f"{m}\n" for m in MOTIONS[:num_classes]))
    return SynthResult(
        str(root),
        str(root / "train.txt"),
        str(root / "val.txt"),
        str(root / "classes.txt"),
        len(train_lines),
        len(val_lines),
        codec,
    )
