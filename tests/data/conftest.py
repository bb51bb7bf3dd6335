"""Shared fixtures: small real videos made once per session in a temporary folder, and real servers on 127.0.0.1
(an HTTP file server, moto's S3-compatible server) for the remote-root tests.

Test videos carry their own frame number: bit ``b`` of the index is a white 16x16 block at a fixed place, which
survives lossy compression, so a test can read back which frame a decoder returned (fixture ``frame_number``).
"""

from __future__ import annotations

import functools
import http.server
import io
import os
import threading
from collections.abc import Callable, Iterator
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


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """The standard library's file server plus HTTP range requests (as any web server or CDN answers them), which
    a seeking decoder needs."""

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass

    def send_head(self):  # type: ignore[no-untyped-def]
        spec = self.headers.get("Range")
        if not spec:
            return super().send_head()
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(404)
            return None
        size = os.path.getsize(path)
        first, _, last = spec.removeprefix("bytes=").partition("-")
        start = int(first) if first else size - int(last)
        end = min(int(last), size - 1) if first and last else size - 1
        handle = open(path, "rb")
        handle.seek(start)
        data = handle.read(end - start + 1)
        handle.close()
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        return io.BytesIO(data)


@pytest.fixture(scope="session")
def http_server() -> Iterator[Callable[[Path], str]]:
    """``serve(folder) -> base URL``: a real HTTP server on 127.0.0.1 serving ``folder`` (one per folder)."""
    servers = []

    def serve(folder: Path) -> str:
        handler = functools.partial(_RangeHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[Callable[[Path, str], str]]:
    """``upload(folder, bucket) -> s3://bucket``: moto's S3-compatible server on 127.0.0.1, reached through the
    ``AWS_*`` environment (as a real deployment configures its endpoint), with ``folder`` uploaded."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"])

    def upload(folder: Path, bucket: str) -> str:
        client.create_bucket(Bucket=bucket)
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                client.upload_file(str(path), bucket, path.relative_to(folder).as_posix())
        return f"s3://{bucket}"

    try:
        yield upload
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


DEMO_CONFIG = Path(__file__).resolve().parents[2] / "src" / "uniformer" / "configs" / "demo" / "motion_tiny.yaml"
TINY_MODEL = [
    "model.overrides.depth=[1,1,1,1]",
    "model.overrides.embed_dim=[16,32,64,128]",
    "model.overrides.head_dim=16",
    "data.num_frames=4",
    "data.stride=2",
    "data.crop_size=32",
    "trainer.progress=false",
    "trainer.tensorboard=false",
    "trainer.log_every_steps=1",
]


@pytest.fixture(scope="session")
def tiny_run() -> Callable[..., list[dict]]:
    """``tiny_run(output_dir, *overrides)``: train the demo recipe shrunk to a 16-128 channel model on 4 frames of
    32 px, one record per step; returns the step and epoch records of ``metrics.jsonl`` without their timings."""
    import json

    from uniformer.engine import load_config, train

    timing = {"clips_per_s", "data_wait", "epoch_seconds", "train_seconds", "peak_memory_bytes", "time"}

    def run(out: Path, *overrides: str) -> list[dict]:
        train(load_config(DEMO_CONFIG, [f"output_dir={out}", *TINY_MODEL, *overrides]))
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in timing} for r in records if r["kind"] in ("step", "epoch")]

    return run
