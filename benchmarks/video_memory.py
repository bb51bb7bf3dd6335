"""Peak memory of ``uniformer predict VIDEO`` against the video's length: the frames are streamed, not all decoded.

From the repository root, with a detection checkpoint (``uniformer demo detection`` trains one)::

    python -m benchmarks.video_memory CHECKPOINT --seconds 60 600 --fps 2

For each length it writes a generated 1920 x 1080 video (a white square crossing a grey frame) of that many
seconds at ``--fps``, runs ``uniformer predict`` on it with the detection model in a child process, and prints
the child's peak resident size (``wait4``'s ``ru_maxrss``), the frames written and the time taken. A peak that
does not grow with the length is what streaming promises; the peak itself is set by a batch of frames.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from uniformer.data.encode import VideoWriter

MODEL = "uniformer_small_h14_mask_rcnn_coco_1x"


def write_long_video(path: Path, seconds: float, fps: int, width: int = 1920, height: int = 1080) -> int:
    """A square crossing the frame, ``seconds`` long at ``fps``, written frame by frame; returns the frame count."""
    frame = np.full((height, width, 3), 90, np.uint8)
    side = height // 5
    with VideoWriter(path, fps=fps, width=width, height=height) as writer:
        for t in range(round(seconds * fps)):
            x = (8 * t) % (width - side)
            frame[side : 2 * side, x : x + side] = 250
            writer.write(frame)
            frame[side : 2 * side, x : x + side] = 90
    return writer.frames


def peak_of_predict(video: Path, checkpoint: str, out_dir: Path) -> dict[str, float]:
    """Run ``uniformer predict VIDEO`` in a child process; its peak RSS (MB, ``wait4``'s ``ru_maxrss``), the
    frames done and the seconds taken."""
    argv = ["predict", str(video), "--model", MODEL, "--checkpoint", checkpoint, "--out-dir", str(out_dir), "--json"]
    env = {**os.environ, "UNIFORMER_NO_PROGRESS": "1"}
    start = time.perf_counter()
    with open(out_dir.with_suffix(".out"), "w+") as out, open(out_dir.with_suffix(".err"), "w+") as err:
        child = subprocess.Popen([sys.executable, "-m", "uniformer", *argv], stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"uniformer predict failed: {err.read()[-2000:]}")
        out.seek(0)
        (result,) = json.load(out)["videos"]
    return {
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "frames": result["processed"],
        "seconds": time.perf_counter() - start,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a detection checkpoint (the detection demo's)")
    parser.add_argument("--seconds", type=float, nargs="+", default=[60.0, 600.0], help="video lengths")
    parser.add_argument("--fps", type=int, default=2, help="frame rate of the generated videos")
    args = parser.parse_args(argv)
    for seconds in args.seconds:
        with tempfile.TemporaryDirectory() as tmp:
            video = Path(tmp) / "long.mp4"
            frames = write_long_video(video, seconds, args.fps)
            result = peak_of_predict(video, args.checkpoint, Path(tmp) / "out")
        print(
            f"{seconds:.0f} s of 1920x1080 at {args.fps} fps ({frames} frames): peak RSS {result['peak_rss_mb']:.0f} "
            f"MB, {result['frames']} frames predicted in {result['seconds']:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
