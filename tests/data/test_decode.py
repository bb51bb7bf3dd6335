"""Decoding returns exactly the requested frames, for every backend, and fails with the file named."""

from __future__ import annotations

import os
import random

import av
import numpy as np
import pytest
import torch

from uniformer.data import BACKENDS, DecodeError, backend_status, read_frames, video_info
from uniformer.data import decode as decode_module


def decode_all(path: str | os.PathLike[str]) -> torch.Tensor:
    """Every frame of a short video by plain sequential PyAV decoding (no seeking): the reference seeking is
    compared against."""
    with av.open(os.fspath(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]
    return torch.from_numpy(np.stack(frames))


def usable(backend: str) -> str:
    reason = backend_status(backend)
    if reason is not None:
        pytest.skip(reason)
    return backend


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["h264", "vp9", "mpeg4"])
def test_every_backend_returns_the_frames_a_sequential_decode_gives(
    media, frame_number, backend: str, kind: str
) -> None:
    backend = usable(backend)
    path = media[kind]
    reference = decode_all(path)
    assert [frame_number(f) for f in reference] == list(range(len(reference)))
    rng = random.Random(7)
    requests = [
        [0],
        [len(reference) - 1],
        list(range(len(reference))),
        sorted(rng.sample(range(len(reference)), 8)),
        [rng.randrange(len(reference)) for _ in range(10)],  # unsorted, with repeats
    ]
    for indices in requests:
        frames = read_frames(path, indices, backend=backend)
        assert frames.dtype == torch.uint8 and frames.shape == (len(indices), 64, 96, 3)
        assert [frame_number(f) for f in frames] == indices
        # Same frame; pixels may differ slightly between libraries' YUV->RGB conversions.
        assert (frames.float() - reference[indices].float()).abs().mean() < 3.0


def test_pyav_seeks_instead_of_decoding_from_the_start(media, frame_number, monkeypatch) -> None:
    decoded = 0
    original = decode_module._frame_pts

    def counting(frame):
        nonlocal decoded
        decoded += 1
        return original(frame)

    monkeypatch.setattr(decode_module, "_frame_pts", counting)
    frames = read_frames(media["h264"], [100, 104, 108])  # keyframe every 12 frames: the one at 96 suffices
    assert [frame_number(f) for f in frames] == [100, 104, 108]
    assert decoded <= 2 * 12 + 3, f"decoded {decoded} frames to read 3 frames near the end of a 120-frame video"


def test_frame_folder_maps_index_zero_to_the_first_file(media, frame_number) -> None:
    folder = media["frames"]
    frames = read_frames(folder, [0, 11, 5, 5])
    assert [frame_number(f) for f in frames] == [0, 11, 5, 5]
    info = video_info(folder)
    assert (info.num_frames, info.width, info.height) == (12, 96, 64)


def test_video_info_counts_frames_and_reads_geometry(media) -> None:
    info = video_info(media["h264"])
    assert (info.num_frames, info.width, info.height, info.codec) == (120, 96, 64, "h264")
    assert info.fps == pytest.approx(30.0)
    assert info.header_frames == 120 and not info.count_mismatch
    webm = video_info(media["vp9"])
    assert webm.num_frames == 40 and webm.header_frames is None and not webm.count_mismatch  # webm stores no count


@pytest.mark.parametrize(
    ("kind", "error", "message"),
    [
        ("missing", FileNotFoundError, "no such video file"),
        ("empty", DecodeError, "empty file"),
        ("garbage", DecodeError, "cannot open"),
        ("truncated", DecodeError, "truncated.mp4"),
    ],
)
def test_bad_files_raise_errors_naming_the_file(media, kind: str, error: type, message: str) -> None:
    with pytest.raises(error, match=message) as caught:
        read_frames(media[kind], [0, 1])
    assert str(media[kind]) in str(caught.value)


def test_out_of_range_index_is_an_error(media) -> None:
    with pytest.raises(DecodeError, match=r"has 120 frames.*\[120\]"):
        read_frames(media["h264"], [3, 120])
    with pytest.raises(DecodeError, match="has 12 frames"):
        read_frames(media["frames"], [12])


def test_unknown_backend_is_rejected(media) -> None:
    with pytest.raises(ValueError, match="unknown backend 'ffmpeg'"):
        read_frames(media["h264"], [0], backend="ffmpeg")
