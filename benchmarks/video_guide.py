"""The video guide's pictures: ``uniformer predict`` on generated videos with the trained demo models.

Run ``uniformer demo`` first (it writes ``demo_out/<task>``), then, from the repository root::

    python -m benchmarks.video_guide demo_out --figure docs/assets/video

It writes three videos whose content is known: shapes moving on straight paths (a disc, a square and a
triangle; the detection and segmentation demos' classes), a stick figure walking across the frame (the pose
demo's figures) and a long video whose motion changes half way (``moving_right`` then ``rotating_clockwise``, the
classification demo's classes); runs ``uniformer predict`` on each with the demo's last checkpoint, as the guide
shows; and keeps a strip of six frames of each annotated video and the timeline's PNG in the figure folder.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from uniformer.cli import main as uniformer
from uniformer.data import read_frames, render_clip, video_info, write_video
from uniformer.data.shapes import shape_mask
from uniformer.tasks.pose.synth import draw_figure

MODELS = {
    "detection": "uniformer_small_h14_mask_rcnn_coco_1x",
    "segmentation": "uniformer_small_upernet_ade20k",
    "pose": "uniformer_small_topdown_coco_256x192",
    "classification": "uniformer_tiny_motion",
}


def _checkpoint(demo: Path, task: str) -> Path:
    """The demo's last checkpoint (the one it tests)."""
    found = sorted((demo / task / "run" / "checkpoints").glob("checkpoint-*.pt"))
    if not found:
        raise FileNotFoundError(f"{demo}/{task}/run/checkpoints: no checkpoint-*.pt; run `uniformer demo {task}`")
    return found[-1]


def shapes_video(path: Path, frames: int = 36, size: int = 96) -> Path:
    """A disc moving right, a square moving down and a triangle moving up-left over a textured background."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    background = np.array([70.0, 110, 150]) + 25 * np.sin(2 * np.pi * 4 * (0.8 * xx + 0.6 * yy))[..., None]
    paths = [  # shape, colour, (y, x) at the start and at the end, radius
        ("disc", (230, 200, 40), (25, 12), (25, 84), 12),
        ("square", (220, 60, 60), (10, 70), (80, 70), 11),
        ("triangle", (240, 240, 240), (84, 60), (50, 14), 12),
    ]
    video = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        image = background.copy()
        for kind, colour, start, end, radius in paths:
            cy, cx = np.asarray(start) + (np.asarray(end) - np.asarray(start)) * t / (frames - 1)
            image[shape_mask(kind, size, cy, cx, radius)] = colour
        video[t] = np.clip(image, 0, 255)
    write_video(path, video, fps=12)
    return path


def figure_video(path: Path, frames: int = 24, size: int = 128) -> Path:
    """A stick figure drawn once and walking 2 pixels a frame across its (wrapping) background."""
    image, _, _ = draw_figure(np.random.default_rng(7), size)
    shifted = [np.roll(image, 2 * t - frames, axis=1) for t in range(frames)]
    write_video(path, np.stack(shifted), fps=12)
    return path


def changing_video(path: Path, clips: int = 4) -> Path:
    """``clips`` clips of ``moving_right`` then as many of ``rotating_clockwise`` (40 frames each at 25 fps)."""
    rng = np.random.default_rng(3)
    parts = [render_clip(motion, rng) for motion in ("moving_right",) * clips + ("rotating_clockwise",) * clips]
    write_video(path, np.concatenate(parts), fps=25)
    return path


def strip(video: Path, out: Path, count: int = 6, scale: int = 2) -> Path:
    """``count`` evenly spaced frames of ``video``, side by side, ``scale`` times their size, each titled."""
    total = video_info(video).num_frames
    indices = [round(i * (total - 1) / (count - 1)) for i in range(count)]
    frames = [Image.fromarray(f.numpy()) for f in read_frames(video, indices)]
    width, height = frames[0].width * scale, frames[0].height * scale
    sheet = Image.new("RGB", (count * (width + 4) - 4, height + 16), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (index, frame) in enumerate(zip(indices, frames, strict=True)):
        sheet.paste(frame.resize((width, height), Image.Resampling.NEAREST), (k * (width + 4), 16))
        draw.text((k * (width + 4) + 2, 2), f"frame {index}", fill="black")
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def _predict(argv: list[str]) -> None:
    if uniformer(["--no-progress", "predict", *argv]) != 0:
        raise RuntimeError(f"uniformer predict {' '.join(argv)} failed")


def figures(demo: Path, out: Path) -> list[Path]:
    """Every picture of the guide, written to ``out``."""
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shapes, figure = shapes_video(work / "shapes.mp4"), figure_video(work / "figure.mp4")
        for task, video, extra in (
            ("detection", shapes, ["--score-threshold", "0.5"]),
            ("segmentation", shapes, []),
            ("pose", figure, []),
        ):
            model = ["--model", MODELS[task], "--checkpoint", str(_checkpoint(demo, task))]
            _predict([str(video), *model, "--out-dir", str(work / task), *extra])
            written.append(strip(work / task / f"{video.stem}_annotated.mp4", out / f"{task}.strip.png"))
        changing = changing_video(work / "changing.mp4")
        model = ["--model", MODELS["classification"], "--checkpoint", str(_checkpoint(demo, "classification"))]
        _predict([str(changing), *model, "--timeline", "--window", "1.6", "--stride", "0.4", "--out-dir", tmp])
        written.append(out / "changing_timeline.png")
        shutil.copy(work / "changing_timeline.png", written[-1])
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("demo", type=Path, help="the demos' output folder (uniformer demo --out DIR)")
    parser.add_argument("--figure", type=Path, required=True, help="folder for the guide's pictures")
    args = parser.parse_args(argv)
    for path in figures(args.demo, args.figure):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
