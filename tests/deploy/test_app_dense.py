"""What the page of each dense task shows for a tiny model: the task's picture at the right size, the table."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

gr = pytest.importorskip("gradio", reason="needs the app extra: pip install 'uniformer[app]'")

from uniformer.deploy.app import build_app, dense_view  # noqa: E402
from uniformer.engine.predict import Predictor  # noqa: E402

TINY = dict(depth=(1, 1, 1, 1), embed_dim=(16, 32, 64, 128), head_dim=16)
SEG, POSE = "uniformer_small_fpn_ade20k", "uniformer_small_topdown_coco_256x192"
DET = "uniformer_small_h14_mask_rcnn_coco_1x"
DETECTOR = dict(window_size=2, min_size=(64,), max_size=64, fpn_channels=32, representation_size=64, mask_channels=16)


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)  # random weights: the tests check the page against what the model computes


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> str:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("app_dense") / "street.png"
    Image.fromarray(pixels).save(path)
    return str(path)


def test_segmentation_page_shows_the_overlay_legend_and_class_shares(image):
    predictor = Predictor(SEG, overrides={**TINY, "num_classes": 3}, labels=["sky", "road", "car"])
    predictor.setup = dataclasses.replace(predictor.setup, scale=[80, 48])  # the image's size, not ADE20K's 2048 x 512
    (prediction,) = predictor.predict([image], topk=3)  # what `uniformer predict` computes
    view = dense_view(predictor, image)
    label_map = prediction.label_map
    assert label_map.shape == (48, 80)
    # the image blended half and half with the class colours, the legend to its right
    pixels = np.asarray(Image.open(image), dtype=np.float32)
    colours = np.asarray(predictor.setup.palette, dtype=np.float32)[label_map]
    assert view.picture.dtype == np.uint8 and view.picture.shape[0] == 48 and view.picture.shape[1] > 80
    assert np.array_equal(view.picture[:, :80], (0.5 * pixels + 0.5 * colours).round().astype(np.uint8))
    counts = np.bincount(label_map.ravel(), minlength=3)
    present = [c for c in np.argsort(-counts, kind="stable") if counts[c]]
    names = ["sky", "road", "car"]
    assert view.rows == [[names[c], f"{100 * counts[c] / label_map.size:.1f}%"] for c in present]
    assert view.timing.endswith(" ms")


def test_pose_page_draws_the_skeleton_of_the_whole_image(image):
    predictor = Predictor(POSE, overrides=TINY)
    # random weights are unsure of every keypoint: show them all (the page draws those above vis_thr)
    predictor.setup = dataclasses.replace(predictor.setup, vis_thr=-1.0)
    view = dense_view(predictor, image)
    assert view.picture.shape == (48, 80, 3)
    ((person, score),) = view.rows  # one person: the whole image as its box
    assert person == "person 0 (box 0, 0, 80, 48)" and 0 <= float(score) <= 1
    (prediction,) = predictor.predict([image])
    ((_, best),) = prediction.ranked()
    assert f"{best:.3f}" == score
    inside = [(round(x), round(y)) for x, y, _ in prediction.persons[0]["keypoints"] if 0 <= x < 79.5 and 0 <= y < 47.5]
    shown = [view.picture[y, x].tolist() for x, y in inside]  # red dots, where no white limb crosses them
    assert [255, 0, 0] in shown and all(colour in ([255, 0, 0], [255, 255, 255]) for colour in shown)


def test_detection_page_filters_by_the_score_threshold(image):
    predictor = Predictor(DET, overrides={**TINY, **DETECTOR, "num_classes": 2}, labels=["cat", "dog"])
    page = build_app(predictor)  # a detector's page has the slider, at the setup's threshold
    sliders = [b for b in page.blocks.values() if isinstance(b, gr.Slider)]
    assert len(sliders) == 1 and sliders[0].value == predictor.setup.score_threshold == 0.3
    everything = dense_view(predictor, image, score_threshold=0.0)
    assert everything.picture.shape == (48, 80, 3)
    assert everything.rows and all(name in ("cat", "dog") for name, _ in everything.rows)
    # the page's threshold holds for its request only: the shared predictor keeps its own
    assert predictor.setup.score_threshold == 0.3
    exact = predictor.predict([image], topk=100, setup=dataclasses.replace(predictor.setup, score_threshold=0.0))[
        0
    ].scores
    assert [score for _, score in everything.rows] == [f"{s:.3f}" for s in exact]
    cut = sorted(exact)[len(exact) // 2]
    kept = dense_view(predictor, image, score_threshold=cut).rows
    assert len(kept) == sum(s > cut for s in exact) and kept == everything.rows[: len(kept)]  # strictly above
    nothing = dense_view(predictor, image, score_threshold=1.0)
    assert nothing.rows == [] and np.array_equal(nothing.picture, np.asarray(Image.open(image)))


def test_a_broken_image_is_reported(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    predictor = Predictor(SEG, overrides={**TINY, "num_classes": 3})
    with pytest.raises(ValueError, match="broken.png could not be read"):
        dense_view(predictor, str(broken))


def test_pose_page_takes_typed_person_boxes_and_names_a_wrong_one(image):
    from uniformer.deploy.app import page_boxes

    predictor = Predictor(POSE, overrides=TINY)
    assert page_boxes(" \n") is None and page_boxes("10, 5, 30 30\n1 2 3 4 0.5") == [[10, 5, 30, 30], [1, 2, 3, 4, 0.5]]
    with pytest.raises(ValueError, match=r"person boxes, line 2 \('1, 2, x'\): expected x, y, w, h"):
        page_boxes("10, 5, 30, 30\n1, 2, x")
    view = dense_view(predictor, image, boxes=[[10, 5, 30, 30], [40, 10, 20, 30]])
    assert sorted(name for name, _ in view.rows) == ["person 0 (box 10, 5, 30, 30)", "person 1 (box 40, 10, 20, 30)"]
    assert predictor.setup.boxes is None  # the typed boxes were this request's only
    with pytest.raises(ValueError, match=r"person boxes: 'street.png': box 0 \[100, 5, 30, 30\] lies outside"):
        dense_view(predictor, image, boxes=[[100, 5, 30, 30]])
    page = build_app(predictor)
    assert [b.label for b in page.blocks.values() if isinstance(b, gr.Textbox) and b.elem_id == "boxes"]


def test_a_page_names_the_zoo_dataset_only_for_its_classes_and_no_toolbar_covers_the_picture(image):
    from uniformer.deploy.app import page_title

    own = Predictor(SEG, overrides={**TINY, "num_classes": 6})
    assert page_title(own) == f"{SEG} trained on 6 classes of its own"
    page = build_app(own, max_upload_mb=7)
    text = " ".join(b.value for b in page.blocks.values() if isinstance(b, gr.Markdown))
    assert "ADE20K" not in text and page_title(own) in text
    assert [b.label for b in page.blocks.values() if isinstance(b, gr.File)] == [
        "an image (at most 7 MB)",
        "a short video (up to 30 s, at most 7 MB)",
    ]
    (picture,) = [b for b in page.blocks.values() if isinstance(b, gr.Image)]
    assert picture.buttons == []  # the download / fullscreen toolbar would sit over the legend
    zoo = Predictor(SEG, overrides=TINY)
    assert page_title(zoo) == zoo.info.title and "ADE20K" in zoo.info.title


def test_the_server_refuses_an_upload_above_its_limit(tmp_path):
    import socket

    import httpx

    from uniformer.deploy.app import serve

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    page = serve(SEG, port=port, block=False, max_upload_mb=1)
    try:
        url = f"http://127.0.0.1:{port}/gradio_api/upload"
        small = httpx.post(url, files={"files": ("small.png", b"x" * 1000)})
        big = httpx.post(url, files={"files": ("big.png", b"x" * 2_000_000)})
    finally:
        page.close()
    assert small.status_code == 200
    assert big.status_code == 413 and "maximum allowed size of 1048576 bytes" in big.text
    with pytest.raises(ValueError, match="max_upload_mb must be positive"):
        serve(SEG, port=port, block=False, max_upload_mb=0)


def test_app_passes_the_task_options_and_the_upload_limit_to_the_page(monkeypatch):
    from uniformer.cli import main

    calls = []
    monkeypatch.setattr("uniformer.deploy.app.serve", lambda *args, **kwargs: calls.append((args, kwargs)))
    assert main(["app", "--model", POSE, "--detector", DET, "--max-upload-mb", "5"]) == 0
    ((args, kwargs),) = calls
    assert args == (POSE, None) and kwargs["task_options"] == {"detector": DET} and kwargs["max_upload_mb"] == 5
    assert main(["app", "--model", SEG, "--detector", DET]) == 2  # refused before any model is built
