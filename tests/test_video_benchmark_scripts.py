"""The video guide's scripts (``benchmarks/video_guide.py``, ``benchmarks/video_memory.py``) on tiny inputs."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from benchmarks.video_guide import shapes_video, strip
from benchmarks.video_memory import peak_of_predict, write_long_video
from tests.tasks.test_pose_task import _detector_checkpoint
from uniformer.data import video_info


def test_the_guide_strip_shows_evenly_spaced_frames_of_the_shapes_video(tmp_path: Path) -> None:
    video = shapes_video(tmp_path / "shapes.mp4", frames=11, size=32)
    assert (video_info(video).num_frames, video_info(video).width) == (11, 32)
    picture = Image.open(strip(video, tmp_path / "strip.png", count=3, scale=2))
    assert picture.size == (3 * 64 + 2 * 4, 64 + 16)


def test_the_memory_script_measures_the_predict_child_and_counts_its_frames(tmp_path: Path) -> None:
    assert write_long_video(tmp_path / "long.mp4", seconds=1.5, fps=2, width=64, height=48) == 3
    result = peak_of_predict(tmp_path / "long.mp4", str(_detector_checkpoint(tmp_path / "det.pt")), tmp_path / "out")
    assert result["frames"] == 3 and result["peak_rss_mb"] > 100  # a Python process with torch, measured
