"""Throughput of the video input pipeline (``uniformer benchmark data``).

Two questions, answered on synthetic H.264 videos so the numbers can be reproduced anywhere:

1. How many training clips per second does a DataLoader deliver per decoder backend, with the full UniFormer
   train transform (random resized crop to ``crop_size``, flip, RandAugment, normalise, erasing)? Compare with the
   model's training step rate to see whether the input keeps up.
2. How much does seeking save? One ``num_frames x stride`` clip is read from a long video by
   :func:`uniformer.data.read_frames` (seek to the keyframe before the clip, decode forward) and by a plain
   sequential decode from the first frame (converting only the wanted frames, the best case for that approach).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class DataBenchmarkResult:
    """Numbers from :func:`run_data_benchmark`."""

    clip: str
    batch_size: int
    workers: int
    rand_augment: bool
    clips_per_s: dict[str, float] = field(default_factory=dict)
    not_timed: dict[str, str] = field(default_factory=dict)
    long_video: dict[str, Any] = field(default_factory=dict)

    def format(self) -> str:
        """Human-readable table."""
        lines = [
            f"training clips ({self.clip}, batch {self.batch_size}, {self.workers} workers, "
            f"RandAugment {'on' if self.rand_augment else 'off'}):"
        ]
        lines += [f"  {name:<11} {rate:8.1f} clips/s" for name, rate in self.clips_per_s.items()]
        lines += [f"  {name:<11} not timed: {reason}" for name, reason in self.not_timed.items()]
        if self.long_video:
            lv = self.long_video
            lines += [
                f"long video ({lv['frames']} frames {lv['size']}, {lv['codec']}), one {lv['clip']} clip at its middle:",
                f"  seek (pyav, index cached)   {lv['seek_s'] * 1000:8.1f} ms",
                f"  seek (pyav, first read)     {lv['seek_cold_s'] * 1000:8.1f} ms   (includes demuxing the index)",
                f"  sequential decode           {lv['sequential_s'] * 1000:8.1f} ms",
                f"  sequential / seek           {lv['ratio']:8.1f}x",
            ]
        return "\n".join(lines)

    def write_json(self, path: str) -> None:
        """Write the numbers as JSON."""
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")


def _time_loader(dataset: Any, batch_size: int, workers: int, batches: int) -> float:
    import torch

    from uniformer.data import collate_videos

    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        collate_fn=collate_videos,
        drop_last=True,
        persistent_workers=workers > 0,
    )
    iterator = iter(loader)

    def next_batch() -> None:
        nonlocal iterator
        try:
            next(iterator)
        except StopIteration:
            iterator = iter(loader)
            next(iterator)

    next_batch()  # warm-up: worker start, first decodes
    start = time.perf_counter()
    for _ in range(batches):
        next_batch()
    return batches * batch_size / (time.perf_counter() - start)


def _sequential_read(path: str, indices: Sequence[int]) -> np.ndarray:
    """Decode from the first frame, keep the wanted ones: what a reader without seeking has to do."""
    import av

    wanted, out = set(indices), {}
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                out[i] = frame.to_ndarray(format="rgb24")
            if i >= max(indices):
                break
    return np.stack([out[i] for i in indices])


def _long_video_test(directory: Path, frames: int, num_frames: int, stride: int, repeats: int = 3) -> dict[str, Any]:
    from uniformer.data import clip_indices, read_frames, render_clip, video_info, write_video
    from uniformer.data import decode as decode_module
    from uniformer.data.synth import video_codec

    path = str(directory / "long.mp4")
    # A keyframe every 2 s, as typical web video (and Kinetics' YouTube sources) has.
    write_video(path, render_clip("moving_right", np.random.default_rng(0), frames, (240, 320)), fps=30, keyint=60)
    info = video_info(path)
    indices = clip_indices(info.num_frames, num_frames=num_frames, stride=stride, num_clips=1)
    decode_module._packet_index.cache_clear()
    start = time.perf_counter()
    seek_frames = read_frames(path, indices)
    seek_cold = time.perf_counter() - start
    seek = min(_timed(lambda: read_frames(path, indices)) for _ in range(repeats))
    sequential = min(_timed(lambda: _sequential_read(path, indices)) for _ in range(repeats))
    if not np.array_equal(seek_frames.numpy(), _sequential_read(path, indices)):
        raise RuntimeError("seek and sequential decoding returned different frames; please report this bug")
    return {
        "frames": info.num_frames,
        "size": f"{info.width}x{info.height}",
        "codec": f"{video_codec()} (keyframe every {_gop(path)} frames)",
        "clip": f"{num_frames}x{stride}",
        "seek_s": seek,
        "seek_cold_s": seek_cold,
        "sequential_s": sequential,
        "ratio": sequential / seek,
    }


def _gop(path: str) -> int:
    from uniformer.data import decode as decode_module

    index = decode_module._index_for(path)
    keys = [index.pts.index(k) for k in index.keyframe_pts]
    return int(np.median(np.diff(keys))) if len(keys) > 1 else len(index.pts)


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_data_benchmark(
    *,
    root: str | None = None,
    backends: Sequence[str] | None = None,
    num_frames: int = 16,
    stride: int = 4,
    crop_size: int = 224,
    batch_size: int = 8,
    workers: int = 2,
    batches: int = 8,
    rand_augment: bool = True,
    long_frames: int = 1800,
    log: Callable[[str], None] = lambda _: None,
) -> DataBenchmarkResult:
    """Time training-clip throughput per backend and seek-vs-sequential decoding; see the module docstring.

    Without ``root`` a synthetic set (48 videos of ``num_frames * stride + 16`` frames at 256x320, so a 224 crop
    is a real crop) is written to a temporary folder first.
    """
    from uniformer.data import DEFAULT_RAND_AUGMENT, available_backends, backend_status, build_video_dataset, synthesize
    from uniformer.models.zoo.datasets import VIDEO_MEAN, VIDEO_STD

    result = DataBenchmarkResult(f"{num_frames}x{stride} @{crop_size}", batch_size, workers, rand_augment)
    with tempfile.TemporaryDirectory(prefix="uniformer-bench-") as tmp:
        if root is None:
            start = time.perf_counter()
            synthesize(
                tmp,
                num_classes=8,
                videos_per_class=6,
                num_frames=num_frames * stride + 16,
                size=(256, 320),
                val_fraction=0.0,
                workers=max(workers, 1),
            )
            root = tmp
            log(f"synthesised 48 videos in {time.perf_counter() - start:.1f} s")
        for name in backends or available_backends():
            reason = backend_status(name)
            if reason is not None:
                result.not_timed[name] = reason
                continue
            dataset = build_video_dataset(
                "kinetics",
                root,
                list_file=str(Path(root) / "train.txt"),
                num_frames=num_frames,
                stride=stride,
                crop_size=crop_size,
                rand_augment=DEFAULT_RAND_AUGMENT if rand_augment else None,
                backend=name,
                mean=VIDEO_MEAN,
                std=VIDEO_STD,
            )
            result.clips_per_s[name] = _time_loader(dataset, batch_size, workers, batches)
            log(f"{name}: {result.clips_per_s[name]:.1f} clips/s")
        if long_frames > 0:
            result.long_video = _long_video_test(Path(tmp), long_frames, num_frames, stride)
    return result
