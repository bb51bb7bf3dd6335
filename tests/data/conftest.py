"""Shared fixtures: small real videos made once per session in a temporary folder.

Test videos carry their own frame number: bit ``b`` of the index is a white 16x16 block at a fixed place, which
survives lossy compression, so a test can read back which frame a decoder returned (fixture ``frame_number``).
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

BITS = 10


def indexed_frame(i: int, height: int = 64, width: int = 96) -> np.ndarray:
    """Frame ``i``: its index in binary blocks on a mid-grey background."""
    image = np.full((height, width, 3), 40, np.uint8)
    for b in range(BITS):
        if (i >> b) & 1:
            top, left = (b // 5) * 16, (b % 5) * 16
            image[top : top + 16, left : left + 16] = 255
    return image


def read_frame_number(frame: torch.Tensor | np.ndarray) -> int:
    """Read back the index written by :func:`indexed_frame` from a decoded ``(H, W, 3)`` frame."""
    frame = torch.as_tensor(frame).float()
    value = 0
    for b in range(BITS):
        top, left = (b // 5) * 16, (b % 5) * 16
        if frame[top + 4 : top + 12, left + 4 : left + 12].mean() > 128:
            value |= 1 << b
    return value


def write_indexed_video(path: Path, count: int, codec: str, keyint: int | None = None) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=30)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        if keyint:
            stream.codec_context.gop_size = keyint
        for i in range(count):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(indexed_frame(i), format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="session")
def frame_number():
    """The decoder of frame numbers, as a fixture (test modules cannot import conftest in importlib mode)."""
    return read_frame_number


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Index-carrying videos in several codecs/containers, a frame folder, and broken files."""
    root = tmp_path_factory.mktemp("media")
    files = {
        # libx264 defaults use B-frames: presentation order differs from decode order.
        "h264": write_indexed_video(root / "h264.mp4", 120, "libx264", keyint=12),
        "vp9": write_indexed_video(root / "vp9.webm", 40, "libvpx-vp9"),
        "mpeg4": write_indexed_video(root / "mpeg4.avi", 40, "mpeg4"),
    }
    frames = root / "frames"
    frames.mkdir()
    for i in range(12):  # Something-Something V1 style: 1-based, zero-padded JPEG names
        Image.fromarray(indexed_frame(i)).save(frames / f"{i + 1:05d}.jpg", quality=95)
    files["frames"] = frames
    good = files["h264"].read_bytes()
    files["truncated"] = root / "truncated.mp4"
    files["truncated"].write_bytes(good[: len(good) // 3])
    files["garbage"] = root / "garbage.mp4"
    files["garbage"].write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    files["empty"] = root / "empty.mp4"
    files["empty"].write_bytes(b"")
    files["missing"] = root / "missing.mp4"
    return files


@pytest.fixture(scope="session")
def synth_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic motion dataset: 8 classes x 4 videos of 24 frames at 64x64 (3 train + 1 val each)."""
    from uniformer.data import synthesize

    root = tmp_path_factory.mktemp("synth")
    synthesize(root, num_classes=8, videos_per_class=4, num_frames=24, size=64, val_fraction=0.25, seed=3, workers=2)
    return root
