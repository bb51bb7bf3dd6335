"""The dense pages take a short video and show it back annotated, as ``uniformer predict VIDEO`` writes it."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

gr = pytest.importorskip("gradio", reason="needs the app extra: pip install 'uniformer[app]'")

from uniformer.data.synth import write_video  # noqa: E402
from uniformer.deploy.app import MAX_VIDEO_SECONDS, build_app, dense_video  # noqa: E402
from uniformer.engine.predict import Predictor  # noqa: E402

TINY = dict(depth=(1, 1, 1, 1), embed_dim=(16, 32, 64, 128), head_dim=16)
DET = "uniformer_small_h14_mask_rcnn_coco_1x"
DETECTOR = dict(window_size=2, min_size=(64,), max_size=64, fpn_channels=16, representation_size=32, mask=False)


def test_a_detector_page_annotates_a_short_video_at_its_own_threshold(tmp_path: Path) -> None:
    frames = np.full((4, 48, 64, 3), 90, np.uint8)
    frames[:, 10:30, 20:40] = 240
    write_video(tmp_path / "clip.mp4", frames, fps=8)
    predictor = Predictor(DET, overrides={**TINY, **DETECTOR, "num_classes": 2}, labels=["cat", "dog"])
    page = build_app(predictor)
    assert any(isinstance(b, gr.Video) for b in page.blocks.values())
    video, note = dense_video(predictor, str(tmp_path / "clip.mp4"), tmp_path / "out", score_threshold=0.0)
    assert note.startswith("4 frames in ") and predictor.setup.score_threshold == 0.3  # the shared one is kept
    with av.open(str(video)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 4
    lines = [json.loads(line) for line in (tmp_path / "out" / "clip_frames.jsonl").read_text().splitlines()]
    assert all(line["detections"] for line in lines)  # everything above 0: the request's threshold was used
    long = np.zeros((int(MAX_VIDEO_SECONDS) + 2, 32, 32, 3), np.uint8)
    write_video(tmp_path / "long.mp4", long, fps=1)
    with pytest.raises(ValueError, match=r"long.mp4: 32 s is longer than the page's 30 s"):
        dense_video(predictor, str(tmp_path / "long.mp4"), tmp_path / "out")
