"""Training-clip throughput of the input pipeline per CPU core, by data source, for the K400 16x4 recipe.

Run from the repository root::

    OMP_NUM_THREADS=1 python -m benchmarks.loader --videos 12 --frames 150 --rounds 5

Videos are synthetic H.264 clips prepared as ``uniformer data prepare resize`` leaves Kinetics (short side 320,
25 fps). Each source yields the recipe's training items (``k400_uniformer_small_16x4.yaml``: 16 frames at stride
4, random resized crop to 224, flip, RandAugment, random erasing) in one process with one thread, seeded per item
as the trainer does, so clips/s is the rate of one core. Sources, interleaved round by round in one run:

* ``files``: one local file per video;
* ``shards``: the same videos in local WebDataset shards, each read by its byte range;
* ``s3 shards`` / ``s3 files``: the same from an S3-compatible server on 127.0.0.1 (moto, in its own process);
* ``files, no RandAugment``: the recipe without RandAugment, the pipeline mmaction2's configs train with (and
  the same with the ``decord`` backend, when it is installed);
* ``mmaction2 decord``: mmaction2's ``DecordInit, SampleFrames(16, 4), DecordDecode, Resize(-1, 256),
  RandomResizedCrop, Resize(224, 224), Flip, FormatShape`` on the same files, when mmaction2 imports here.

The table compares each rate with the model's consumption in training to give the CPU cores one GPU needs.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

RECIPE = (
    Path(__file__).resolve().parents[1] / "src" / "uniformer" / "configs" / "video" / "k400_uniformer_small_16x4.yaml"
)

# The published training rate: the official code trains the 16-frame K400 models on one machine of 8 V100s in
# about 2 days for 110 epochs (Sense-X/UniFormer issue #96, the maintainer's answer). 240,436 K400 training videos
# x 110 epochs / (48 h x 8 GPUs) = 19 clips/s per V100. No A100 rate is published; none was measured here (no GPU).
PUBLISHED_GPU = "V100 (official code: 8 GPUs, ~2 days, 110 epochs of 240,436 videos)"
PUBLISHED_CLIPS_PER_S = 240_436 * 110 / (48 * 3600 * 8)


@dataclass
class Row:
    source: str
    seconds: list[float]  # per round
    clips: int  # per round

    @property
    def clips_per_s(self) -> float:
        return self.clips / statistics.median(self.seconds)


def make_dataset(root: Path, *, videos: int, frames: int, size: tuple[int, int]) -> Path:
    """Synthetic videos at the prepared Kinetics size, a ``path label`` list and classes, and their shards."""
    from uniformer.data import read_video_list, synthesize
    from uniformer.data.shards import write_shards

    classes = 4
    synthesize(
        root,
        num_classes=classes,
        videos_per_class=-(-videos // classes),
        num_frames=frames,
        size=size,
        val_fraction=0.0,
        seed=0,
        workers=os.cpu_count() or 1,
    )
    listing = read_video_list("kinetics", root, list_file=root / "train.txt", labels_file=root / "classes.txt")
    write_shards(listing, root / "shards", max_bytes=64 << 20)
    return root


def recipe_dataset(root: str, list_file: str, fmt: str, *overrides: str) -> torch.utils.data.Dataset:
    """The recipe's training set over ``root`` (the zoo entry's clip, the recipe's transforms)."""
    from uniformer.engine import load_config, resolve_config
    from uniformer.tasks.classification.data import build_dataset

    cfg = resolve_config(
        load_config(
            RECIPE,
            [
                f"data.root={root}",
                f"data.train_list={list_file}",
                f"data.format={fmt}",
                "data.labels_file=null",
                *overrides,
            ],
        )
    )
    return build_dataset(cfg, "train")


def mmaction_pipeline() -> Callable[[str], Any] | str:
    """mmaction2's decord training pipeline as a function of a file, or why it is not available."""
    try:
        from mmaction.datasets.transforms import (
            DecordDecode,
            DecordInit,
            Flip,
            FormatShape,
            RandomResizedCrop,
            Resize,
            SampleFrames,
        )
        from mmengine.dataset import Compose
    except Exception as exc:  # absent, or an incompatible mmcv: the row says so
        return f"{type(exc).__name__}: {exc}"
    import cv2

    cv2.setNumThreads(1)  # one core, as every other source here
    pipeline = Compose(
        [
            DecordInit(num_threads=1),
            SampleFrames(clip_len=16, frame_interval=4, num_clips=1),
            DecordDecode(),
            Resize(scale=(-1, 256)),
            RandomResizedCrop(),
            Resize(scale=(224, 224), keep_ratio=False),
            Flip(flip_ratio=0.5),
            FormatShape(input_format="NCTHW"),
        ]
    )
    return lambda path: pipeline({"filename": path, "label": 0, "start_index": 0, "modality": "RGB"})


def start_s3(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """moto's S3 server in its own process on 127.0.0.1 with ``folder`` uploaded to bucket ``bench``."""
    import socket

    import boto3

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
    )
    client = boto3.client("s3", endpoint_url=endpoint)
    for _ in range(100):
        try:
            client.create_bucket(Bucket="bench")
            break
        except Exception:  # the server is still starting
            time.sleep(0.1)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), "bench", path.relative_to(folder).as_posix())
    return server, "s3://bench"


def run(
    *,
    videos: int = 12,
    frames: int = 150,
    size: tuple[int, int] = (320, 428),
    rounds: int = 5,
    clips: int | None = None,
    s3: bool = True,
    log: Callable[[str], None] = print,
) -> list[Row | tuple[str, str]]:
    """Measure every source; returns a :class:`Row` per source, or ``(source, reason)`` where one cannot run."""
    from uniformer.data import backend_status
    from uniformer.engine.loader import SeededItems

    torch.set_num_threads(1)
    clips = clips or videos
    with tempfile.TemporaryDirectory() as tmp:
        root = make_dataset(Path(tmp), videos=videos, frames=frames, size=size)
        log(f"made {videos} videos of {frames} frames at {size[1]}x{size[0]} in {root}")
        sources: dict[str, Callable[[int], Any]] = {}

        def items(dataset: torch.utils.data.Dataset) -> Callable[[int], Any]:
            seeded = SeededItems(dataset, 0)
            return lambda i: seeded[(i % len(dataset), 0, i)]

        sources["files"] = items(recipe_dataset(str(root), "train.txt", "kinetics"))
        sources["shards"] = items(recipe_dataset(str(root / "shards"), "index.json", "webdataset"))
        sources["files, no RandAugment"] = items(
            recipe_dataset(str(root), "train.txt", "kinetics", "data.rand_augment=null")
        )
        missing: list[tuple[str, str]] = []
        reason = backend_status("decord")
        if reason is None:
            sources["files, no RandAugment, decord"] = items(
                recipe_dataset(str(root), "train.txt", "kinetics", "data.rand_augment=null", "data.backend=decord")
            )
        else:
            missing.append(("files, no RandAugment, decord", reason))
        server = None
        if s3:
            server, bucket = start_s3(root)
            sources["s3 shards"] = items(recipe_dataset(f"{bucket}/shards", "index.json", "webdataset"))
            sources["s3 files"] = items(recipe_dataset(bucket, "train.txt", "kinetics"))
        mmaction = mmaction_pipeline()
        if callable(mmaction):
            paths = [line.split()[0] for line in (root / "train.txt").read_text().splitlines()]
            sources["mmaction2 decord"] = lambda i: mmaction(str(root / paths[i % len(paths)]))
        else:
            missing.append(("mmaction2 decord", mmaction))
        try:
            for fetch in sources.values():  # warm-up: imports, index caches, connections
                fetch(0)
            seconds: dict[str, list[float]] = {name: [] for name in sources}
            for r in range(rounds):
                for name, fetch in sources.items():
                    started = time.perf_counter()
                    for i in range(clips):
                        fetch(r * clips + i)
                    seconds[name].append(time.perf_counter() - started)
                log(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {clips / s[-1]:.2f}" for n, s in seconds.items()))
        finally:
            if server is not None:
                server.terminate()
                server.wait()
    return [Row(name, seconds[name], clips) for name in sources] + missing


def table(rows: list[Row | tuple[str, str]]) -> str:
    """Markdown: clips/s per core, and cores per GPU at the published training rate."""
    lines = [
        f"| source | clips/s per core (median of rounds) | spread | cores per GPU at {PUBLISHED_CLIPS_PER_S:.1f} clips/s |",
        "|---|---|---|---|",
    ]
    for row in rows:
        if isinstance(row, tuple):
            lines.append(f"| {row[0]} | not run: {row[1]} | | |")
            continue
        rates = sorted(row.clips / s for s in row.seconds)
        lines.append(
            f"| {row.source} | {row.clips_per_s:.2f} | {rates[0]:.2f}-{rates[-1]:.2f} | "
            f"{PUBLISHED_CLIPS_PER_S / row.clips_per_s:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-s3", action="store_true")
    args = parser.parse_args()
    rows = run(
        videos=args.videos,
        frames=args.frames,
        rounds=args.rounds,
        s3=not args.no_s3,
        log=lambda m: print(m, file=sys.stderr),
    )
    print(
        f"Python {platform.python_version()}, torch {torch.__version__}, one thread per source;"
        f" model consumption: {PUBLISHED_CLIPS_PER_S:.1f} clips/s per {PUBLISHED_GPU}\n"
    )
    print(table(rows))


if __name__ == "__main__":
    main()
