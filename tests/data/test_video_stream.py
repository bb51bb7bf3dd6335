"""Streaming a whole video (FrameStream) and writing one (VideoWriter), on small generated videos, odd ones too."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from uniformer.data.decode import FrameStream, read_frames
from uniformer.data.encode import VideoWriter
from uniformer.data.images import DecodeError
from uniformer.data.synth import write_video


def _frames(count: int, height: int = 32, width: int = 48) -> np.ndarray:
    """Frame ``t`` is grey level ``20 t`` with a white square at ``x = 2 t``: frames tell their index apart."""
    frames = np.zeros((count, height, width, 3), np.uint8)
    for t in range(count):
        frames[t] = 20 * t % 256
        frames[t, 8:16, 2 * t : 2 * t + 8] = 255
    return frames


def _decoded(path: Path) -> tuple[int, Fraction, tuple[int, int]]:
    """Frames a sequential decode yields, the stream's average rate and (width, height)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for _ in container.decode(stream)), stream.average_rate, (stream.width, stream.height)


def _with_damaged_packet(path: Path, damaged: int, count: int = 12) -> Path:
    """An MPEG-4 video whose packet ``damaged`` is replaced by random bytes (the decoder refuses it)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        packets = [p for frame in _frames(count) for p in stream.encode(av.VideoFrame.from_ndarray(frame))]
        packets += stream.encode()
        for n, packet in enumerate(packets):
            if n == damaged:
                noise = av.Packet(np.random.default_rng(0).integers(0, 256, packet.size, dtype=np.uint8).tobytes())
                noise.pts, noise.dts, noise.time_base, noise.stream = packet.pts, packet.dts, packet.time_base, stream
                packet = noise
            container.mux(packet)
    return path


def test_the_stream_hands_out_the_frames_read_frames_reads_in_batches(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    write_video(path, _frames(11), fps=10, keyint=4)
    stream = FrameStream(path, every=3, batch_size=2)
    batches = list(stream)
    assert [b.indices for b in batches] == [[0, 3], [6, 9]] and stream.num_wanted == 4 and stream.skipped == []
    assert [b.times for b in batches] == [[0.0, 0.3], [0.6, 0.9]]
    assert torch.equal(torch.cat([b.frames for b in batches]), read_frames(path, [0, 3, 6, 9]))


def test_a_frame_folder_streams_through_read_frames_without_times(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for t, frame in enumerate(_frames(5)):
        Image.fromarray(frame).save(folder / f"{t + 1:05d}.png")
    batches = list(FrameStream(folder, every=2, batch_size=2))
    assert [(b.indices, b.times) for b in batches] == [([0, 2], [None, None]), ([4], [None])]
    assert torch.equal(batches[0].frames, torch.from_numpy(_frames(5)[[0, 2]]))


def test_a_damaged_packet_is_a_skipped_frame_and_the_rest_still_come(tmp_path: Path) -> None:
    path = _with_damaged_packet(tmp_path / "damaged.mp4", damaged=5)
    stream = FrameStream(path, batch_size=4)
    indices = [i for batch in stream for i in batch.indices]
    assert stream.skipped == [5] and indices == [i for i in range(12) if i != 5]


def test_variable_frame_rate_times_come_from_the_timestamps(tmp_path: Path) -> None:
    path, stamps = tmp_path / "vfr.mp4", [0, 40, 80, 200, 240, 400]  # milliseconds
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for stamp, pixels in zip(stamps, _frames(len(stamps)), strict=True):
            frame = av.VideoFrame.from_ndarray(pixels)
            frame.pts, frame.time_base = stamp, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    times = [t for batch in FrameStream(path, batch_size=4) for t in batch.times]
    assert times == pytest.approx([s / 1000 for s in stamps])


def test_rotation_metadata_is_reported_and_frames_stay_as_stored(tmp_path: Path) -> None:
    path = tmp_path / "phone.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        stream.set_display_rotation(90)
        for pixels in _frames(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels)))
        container.mux(stream.encode())
    stream = FrameStream(path)
    (batch,) = list(stream)
    assert stream.rotation == 90 and batch.frames.shape == (3, 32, 48, 3)


def test_audio_only_and_frameless_files_are_refused_naming_the_file(tmp_path: Path) -> None:
    audio, frameless = tmp_path / "audio.mp4", tmp_path / "frameless.mkv"
    for path, with_video in ((audio, False), (frameless, True)):
        with av.open(str(path), "w") as container:
            if with_video:  # a video stream that never gets a packet
                video = container.add_stream("mpeg4", rate=25)
                video.width, video.height, video.pix_fmt = 48, 32, "yuv420p"
            sound = container.add_stream("aac", rate=16000)
            for k in range(4):
                chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 16000, 1024 * k
                container.mux(sound.encode(chunk))
            container.mux(sound.encode())
    with pytest.raises(DecodeError, match="audio.mp4: has no video stream"):
        FrameStream(audio)
    with pytest.raises(DecodeError, match="frameless.mkv: video stream holds no frames"):
        FrameStream(frameless)


def test_the_writer_keeps_size_rate_and_count_and_leaves_a_whole_file_when_stopped(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt), VideoWriter(path, fps=12.5, width=48, height=32) as writer:
        for n, frame in enumerate(_frames(10)):
            if n == 7:
                raise KeyboardInterrupt
            writer.write(frame)
    assert writer.codec == "libx264" and _decoded(path) == (7, Fraction(25, 2), (48, 32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]  # the partial file was moved into place
    assert np.abs(read_frames(path, [6])[0].numpy().astype(int) - _frames(7)[6]).mean() < 3
    with VideoWriter(tmp_path / "odd.mp4", fps=25, width=47, height=31) as writer:  # odd sizes: yuv444p
        writer.write(_frames(1, 31, 47)[0])
        with pytest.raises(ValueError, match=r"frame 1 is uint8 \(32, 48, 3\), expected uint8 \(31, 47, 3\)"):
            writer.write(_frames(1)[0])
    assert _decoded(tmp_path / "odd.mp4") == (1, Fraction(25), (47, 31))
    with VideoWriter(tmp_path / "none.mp4", fps=25, width=48, height=32):
        pass
    assert not (tmp_path / "none.mp4").exists()
