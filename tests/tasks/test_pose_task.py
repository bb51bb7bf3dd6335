"""The pose task: crops, targets, decoding, rescoring, OKS-NMS and COCO AP against hand-computed cases."""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from uniformer.cli import main
from uniformer.cli.predict import parse_task_options
from uniformer.engine import evaluate, load_config, train
from uniformer.engine.config import resolve_config
from uniformer.engine.predict import Predictor
from uniformer.models.checkpoint import TRAIN_FORMAT, read_checkpoint
from uniformer.models.detection import UniFormerMaskRCNN
from uniformer.models.factory import create_model
from uniformer.models.pose import build_pose_model
from uniformer.models.zoo.catalog import model_info
from uniformer.runtime import feed
from uniformer.tasks import get_task, task_for_model
from uniformer.tasks.pose import TASK, MSRAHeatmap, PoseTask, evaluate_coco_keypoints, keypoint_mse_loss
from uniformer.tasks.pose.coco import COCO_SIGMAS, read_keypoint_file
from uniformer.tasks.pose.metrics import KeypointAccumulator, oks_iou, oks_nms, rescore
from uniformer.tasks.pose.predict import PERSON_SCORE_THRESHOLD
from uniformer.tasks.pose.synth import write_figures
from uniformer.tasks.pose.transforms import (
    TrainTransform,
    affine_matrix,
    apply_affine,
    box_to_center_scale,
    warp_image,
)

# --------------------------------------------------------------------------------------------- geometry


def test_box_to_center_scale_fixes_the_aspect_ratio_and_pads() -> None:
    center, scale = box_to_center_scale([10, 20, 60, 40], aspect_ratio=192 / 256)  # too wide: height grows
    np.testing.assert_allclose(center, [40, 40])
    np.testing.assert_allclose(scale, [60 / 200 * 1.25, 80 / 200 * 1.25])
    _, scale = box_to_center_scale([0, 0, 30, 80], aspect_ratio=0.75)  # too tall: width grows
    np.testing.assert_allclose(scale, [60 / 200 * 1.25, 80 / 200 * 1.25])


def _mmpose_matrix(center, scale, rot, size) -> np.ndarray:
    """mmpose get_affine_transform's three-point construction, solved by least squares (no OpenCV)."""
    src_w, (dst_w, dst_h) = scale[0] * 200, size
    r = math.radians(rot)
    src_dir = np.array([0 * math.cos(r) + src_w * 0.5 * math.sin(r), -src_w * 0.5 * math.cos(r)])
    third = lambda a, b: b + np.array([-(a - b)[1], (a - b)[0]])  # noqa: E731
    src = [np.asarray(center), np.asarray(center) + src_dir]
    dst = [np.array([dst_w / 2, dst_h / 2]), np.array([dst_w / 2, dst_h / 2 - dst_w / 2])]
    src.append(third(*src))
    dst.append(third(*dst))
    solution, *_ = np.linalg.lstsq(np.c_[np.array(src), np.ones(3)], np.array(dst), rcond=None)
    return solution.T


@pytest.mark.parametrize("rot", [0.0, 30.0, -75.0])
def test_affine_matrix_is_mmposes_three_point_transform(rot: float) -> None:
    center, scale, size = [120.0, 80.0], [0.5, 0.6667], (192, 256)
    np.testing.assert_allclose(
        affine_matrix(center, scale, rot, size), _mmpose_matrix(center, scale, rot, size), atol=1e-9
    )


def test_affine_maps_the_center_to_the_crop_center_and_rotates_counterclockwise() -> None:
    matrix = affine_matrix([50, 50], [0.48, 0.64], 90, (96, 128))  # k = 96 / 96 = 1
    np.testing.assert_allclose(apply_affine(np.array([[50.0, 50.0]]), matrix), [[48, 64]])
    # a point 10 px right of the centre ends 10 px below it in the crop: rotating the box by +90 degrees
    np.testing.assert_allclose(apply_affine(np.array([[60.0, 50.0]]), matrix), [[48, 54]], atol=1e-9)


def test_warp_samples_pixels_at_integer_centres_and_zeros_outside() -> None:
    image = torch.arange(3 * 50 * 60, dtype=torch.float32).reshape(3, 50, 60) / 9000
    matrix = affine_matrix([30, 25], [0.3, 0.4], 0, (60, 80))  # scale 1: the crop is the image shifted by 15 rows
    crop = warp_image(image, matrix, (60, 80))
    torch.testing.assert_close(crop[:, 15:65], image, atol=1e-5, rtol=0)
    assert crop[:, :14].abs().max() == 0 and crop[:, 66:].abs().max() == 0
    half = warp_image(image, affine_matrix([30.5, 25], [0.3, 0.4], 0, (60, 80)), (60, 80))  # half a pixel right
    torch.testing.assert_close(half[:, 15:65, :-1], (image[..., :-1] + image[..., 1:]) / 2, atol=1e-5, rtol=0)


def test_heatmap_targets_are_the_msra_gaussians_with_weights() -> None:
    keypoints = np.array([[10.0, 6.0], [-40.0, 5.0], [20.0, 20.0]])
    target, weight = MSRAHeatmap((32, 32), (8, 8), sigma=1.0).encode(keypoints, np.array([1, 1, 0]))
    # stride 4: mu = (int(2.5 + 0.5), int(1.5 + 0.5)) = (3, 2); cut at 3 sigma
    assert target[0, 2, 3] == 1 and target[0].argmax() == 2 * 8 + 3
    assert float(target[0, 2, 4]) == pytest.approx(math.exp(-0.5)) and float(target[0, 3, 4]) == pytest.approx(
        math.exp(-1)
    )
    assert float(target[0, 2, 7]) == 0 and float(target[0, 2, 6]) == pytest.approx(math.exp(-4.5))
    assert weight.tolist() == [1, 0, 0]  # off the map (its Gaussian does not reach it) and unlabelled
    assert target[1].abs().sum() == 0 and target[2].abs().sum() == 0


def test_train_transform_without_augmentation_puts_each_target_peak_on_its_keypoint() -> None:
    image = torch.zeros(3, 100, 100, dtype=torch.uint8)
    keypoints = np.zeros((17, 3))
    keypoints[:, 0], keypoints[:, 1], keypoints[:, 2] = np.linspace(30, 70, 17), np.linspace(20, 80, 17), 1
    keypoints[3, 2] = 0
    off = dict(flip=False, half_body_prob=0, scale_factor=0, rotation_prob=0, center_shift_prob=0)
    transform = TrainTransform(
        (48, 64), [0.5] * 3, [0.25] * 3, codec=MSRAHeatmap((48, 64), sigma=2, flip_pairs=[(1, 2)]), **off
    )
    crop = transform(image, [25, 15, 50, 70], keypoints)
    assert crop.image.shape == (3, 64, 48) and crop.target.shape == (17, 16, 12)
    in_crop = apply_affine(keypoints[:, :2], affine_matrix(crop.center, crop.scale, 0, (48, 64)))
    for k in (0, 8, 16):
        y, x = divmod(int(crop.target[k].argmax()), 12)
        assert (x, y) == (int(in_crop[k, 0] / 4 + 0.5), int(in_crop[k, 1] / 4 + 0.5))
    assert crop.target_weight[3] == 0 and crop.target[3].sum() == 0 and crop.target_weight.sum() == 16


# --------------------------------------------------------------------------------------------- decoding


def test_decode_takes_the_argmax_steps_a_quarter_toward_the_higher_neighbour_and_maps_back() -> None:
    heatmaps = torch.zeros(1, 3, 6, 8)
    heatmaps[0, 0, 2, 3], heatmaps[0, 0, 2, 4], heatmaps[0, 0, 3, 3] = 1.0, 0.5, 0.4  # right and below higher
    heatmaps[0, 0, 2, 2], heatmaps[0, 0, 1, 3] = 0.1, 0.1
    heatmaps[0, 1, 1, 5], heatmaps[0, 1, 1, 6] = 0.8, 0.7  # y = 1 is on the border band: no step at all
    # keypoint 2: all zero -> (-1, -1) before the mapping
    center, scale = torch.tensor([[100.0, 50.0]]), torch.tensor([[0.4, 0.6]])  # 80 x 120 px: x*10+60, y*20-10
    points, scores = MSRAHeatmap((32, 32)).decode(heatmaps, center, scale)
    torch.testing.assert_close(points[0], torch.tensor([[92.5, 35.0], [110.0, 10.0], [50.0, -30.0]]))
    torch.testing.assert_close(scores[0], torch.tensor([1.0, 0.8, 0.0]))


def test_decode_does_not_step_on_a_tie_and_steps_left_up_toward_higher_neighbours() -> None:
    heatmaps = torch.zeros(1, 1, 6, 8)
    heatmaps[0, 0, 3, 4], heatmaps[0, 0, 3, 3], heatmaps[0, 0, 3, 5] = 1.0, 0.3, 0.3  # tie in x
    heatmaps[0, 0, 2, 4] = 0.2  # above higher than below (0)
    points, _ = MSRAHeatmap((32, 32)).decode(
        heatmaps, np.array([[4.0, 3.0]]), np.array([[8 / 200, 6 / 200]])
    )  # identity map
    torch.testing.assert_close(points[0, 0], torch.tensor([4.0, 2.75]))


def test_loss_is_mmposes_target_weighted_mse() -> None:
    heatmaps, target = torch.zeros(2, 2, 1, 2), torch.zeros(2, 2, 1, 2)
    heatmaps[0, 0] = torch.tensor([[1.0, 3.0]])
    heatmaps[1, 1] = torch.tensor([[2.0, 0.0]])
    weight = torch.tensor([[1.0, 1.0], [1.0, 0.5]])
    # mean over 8 values of (w (h - t))^2: (1 + 9 + (0.5 * 2)^2) / 8
    assert float(keypoint_mse_loss(heatmaps, target, weight)) == pytest.approx(11 / 8)


# --------------------------------------------------------------------------------------------- scoring


def test_rescore_is_the_box_score_times_the_mean_confident_keypoint_score() -> None:
    assert rescore(np.array([0.9, 0.1, 0.5, 0.2]), 0.8) == pytest.approx(0.8 * 0.7)
    assert rescore(np.array([0.1, 0.2]), 0.8) == 0.0


def test_oks_nms_drops_a_near_duplicate_and_keeps_a_distinct_person() -> None:
    base = np.random.default_rng(0).uniform(0, 100, (17, 2))
    people = np.stack([base, base + 0.5, base + 40])
    assert oks_iou(base, people[1:2], 5000.0, np.array([5000.0]))[0] > 0.9
    keep = oks_nms(people, np.array([0.5, 0.9, 0.7]), np.array([5000.0] * 3), threshold=0.9)
    assert keep == [1, 2]  # the best first; the first person (OKS > 0.9 with it) is suppressed


def _gt_file(tmp_path: Path, people: list[np.ndarray], area: float = 4000.0) -> Path:
    names = [f"k{i}" for i in range(17)]
    images = [{"id": i + 1, "file_name": f"{i}.png", "width": 200, "height": 200} for i in range(len(people))]
    anns = []
    for i, kp in enumerate(people):
        flat = np.c_[kp, np.full(17, 2)].reshape(-1).tolist()
        anns.append(
            dict(id=i + 1, image_id=i + 1, category_id=1, bbox=[10, 10, 80, 50], area=area, iscrowd=0,
                 num_keypoints=17, keypoints=flat)
        )  # fmt: skip
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "keypoints": names}]}))
    return path


def _result(image_id: int, keypoints: np.ndarray, score: float) -> dict:
    return {
        "image_id": image_id,
        "category_id": 1,
        "keypoints": np.c_[keypoints, np.ones(17)].reshape(-1).tolist(),
        "score": score,
    }


def test_predictions_equal_to_the_ground_truth_score_ap_one(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    people = [rng.uniform(20, 180, (17, 2)) for _ in range(3)]
    gt = _gt_file(tmp_path, people)
    results = tmp_path / "results.json"
    results.write_text(json.dumps([_result(i + 1, kp, 1.0) for i, kp in enumerate(people)]))
    metrics = evaluate_coco_keypoints(gt, results)
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AR"] == pytest.approx(1.0)
    assert metrics["AP50"] == pytest.approx(1.0) and metrics["AP75"] == pytest.approx(1.0)
    assert evaluate_coco_keypoints(gt, [])["AP"] == 0.0


def test_coco_ap_of_a_known_answer_set(tmp_path: Path) -> None:
    """Two people; one predicted exactly (score 0.9), the other shifted by d pixels (score 0.8) so that its
    OKS is known: it matches at the thresholds not above its OKS. COCO's 101-point AP is then 1 at those
    thresholds and 51/101 (recall 0.5 at precision 1, nothing beyond) at the others."""
    rng = np.random.default_rng(2)
    people = [rng.uniform(20, 180, (17, 2)) for _ in range(2)]
    area, d = 4000.0, 3.0
    oks = float(np.mean(np.exp(-(d**2) / (2 * area * (2 * COCO_SIGMAS) ** 2))))
    thresholds = np.linspace(0.5, 0.95, 10)
    assert np.min(np.abs(thresholds - oks)) > 0.01  # not on a threshold
    expected = np.mean([1.0 if oks >= t else 51 / 101 for t in thresholds])
    gt = _gt_file(tmp_path, people, area)
    results = [_result(1, people[0], 0.9), _result(2, people[1] + [d, 0.0], 0.8)]
    metrics = evaluate_coco_keypoints(gt, results)
    assert metrics["AP"] == pytest.approx(expected, abs=1e-6)
    assert metrics["AP50"] == pytest.approx(1.0) and metrics["AR"] == pytest.approx(
        np.mean(np.where(oks >= thresholds, 1.0, 0.5))
    )


class _TwoRanks:
    """Collectives of a world of two, played by two accumulators in one process."""

    def __init__(self, accumulators: list[KeypointAccumulator]) -> None:
        self.accumulators = accumulators

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the keypoint metric gathers, it does not sum")

    def all_gather_object(self, obj):
        name = next(
            n
            for n in ("persons", "failed")
            if obj is getattr(self.accumulators[0], n) or obj is getattr(self.accumulators[1], n)
        )
        return [getattr(a, name) for a in self.accumulators]


def test_accumulator_gathers_every_process_and_matches_one_process(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    people = [rng.uniform(20, 180, (17, 2)) for _ in range(4)]
    gt = _gt_file(tmp_path, people)
    heatmaps = torch.rand(4, 17, 8, 6)
    batch = {
        "center": torch.tensor([[100.0, 100.0]] * 4, dtype=torch.float64),
        "scale": torch.tensor([[0.9, 1.2]] * 4, dtype=torch.float64),
        "score": torch.ones(4, dtype=torch.float64),
        "image_id": torch.arange(1, 5),
        "index": torch.arange(4),
        "valid": torch.tensor([True, True, True, False]),
        "path": [f"{i}.png" for i in range(4)],
        "error": ["", "", "", "unreadable image 3.png"],
    }
    single = KeypointAccumulator(4, gt, MSRAHeatmap((48, 64)))
    single.update(heatmaps, batch)
    expected = single.compute(_TwoRanks([single, KeypointAccumulator(4, gt, MSRAHeatmap((48, 64)))]))
    ranks = [KeypointAccumulator(4, gt, MSRAHeatmap((48, 64))), KeypointAccumulator(4, gt, MSRAHeatmap((48, 64)))]
    for rank, acc in enumerate(ranks):
        mine = acc.indices(rank, 2)
        acc.update(
            heatmaps[mine],
            {k: (v[mine] if isinstance(v, torch.Tensor) else [v[i] for i in mine]) for k, v in batch.items()},
        )
    got = ranks[0].compute(_TwoRanks(ranks))
    assert got.values == expected.values and got.detail.results == expected.detail.results
    assert got.detail.failed == {"3.png": "unreadable image 3.png"} and got.detail.num_scored == 3


# --------------------------------------------------------------------------------------------- the task


TINY = [
    "model.overrides.depth=[1,1,1,1]",
    "model.overrides.embed_dim=[16,32,48,64]",
    "model.overrides.head_dim=16",
    "head.channels=16",
    "data.input_size=[64,64]",
    "trainer.max_epochs=1",
    "trainer.batch_size=4",
    "trainer.val_batch_size=4",
    "trainer.progress=false",
    "trainer.tensorboard=false",
    "eval.batch_size=4",
    "data.num_workers=0",
]


def test_pose_task_serves_the_pose_zoo_models() -> None:
    assert isinstance(get_task("pose"), PoseTask)
    assert task_for_model("uniformer_base_topdown_coco_384x288") is TASK


def test_recipes_default_the_crop_and_sigma_from_the_zoo(tmp_path: Path) -> None:
    cfg = resolve_config(
        load_config(None, ["model.name=uniformer_small_topdown_coco_384x288", f"data.root={tmp_path}"])
    )
    assert cfg.data.input_size == [384, 288] and cfg.data.sigma == 3.0 and cfg.model.num_classes == 17
    cfg = resolve_config(
        load_config(None, ["model.name=uniformer_small_topdown_coco_256x192", f"data.root={tmp_path}"])
    )
    assert cfg.data.input_size == [256, 192] and cfg.data.sigma == 2.0 and cfg.eval.flip_test is True
    with pytest.raises(ValueError, match="data.input_size must be"):
        resolve_config(
            load_config(
                None,
                ["model.name=uniformer_small_topdown_coco_256x192", f"data.root={tmp_path}", "data.input_size=[30,30]"],
            )
        )


def test_annotation_problems_are_named_and_unusable_persons_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(ValueError, match=r"bad.json: no 'categories' list"):
        read_keypoint_file(tmp_path / "bad.json", tmp_path)
    gt = json.loads(_gt_file(tmp_path, [np.full((17, 2), 50.0)] * 2).read_text())
    gt["annotations"][1]["keypoints"] = [1, 2, 3]
    gt["annotations"].append({**gt["annotations"][0], "id": 9, "iscrowd": 1})
    (tmp_path / "gt2.json").write_text(json.dumps(gt))
    with caplog.at_level("WARNING"):
        file = read_keypoint_file(tmp_path / "gt2.json", tmp_path)
    assert len(file.instances) == 1 and file.instances[0].box == (10.0, 10.0, 79.0, 49.0)  # mmpose's clean box
    assert "1 unusable annotation(s) skipped: annotation 2" in caplog.text


def test_dry_run_counts_the_keypoints(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = write_figures(tmp_path / "figures", {"train": 2, "val": 1}, size=64, seed=1)
    assert main(["train", "demo/pose_tiny", "--dry-run", f"data.root={root}", *TINY]) == 0
    assert "parameters, 17 keypoints\n" in capsys.readouterr().out


def test_tiny_run_trains_evaluates_and_predicts_skeletons(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = write_figures(tmp_path / "figures", {"train": 8, "val": 3}, size=64, seed=1)
    (root / "val" / "00002.png").write_bytes(b"not a png")
    run = tmp_path / "run"
    overrides = [f"data.root={root}", f"output_dir={run}", *TINY]
    result = train(load_config("demo/pose_tiny", overrides))
    assert result.steps == 2 and result.metric == "ap" and 0 <= result.best_metric <= 100
    final = run / "checkpoints" / "best.pt"
    report = evaluate(load_config("demo/pose_tiny", [*overrides, f"eval.checkpoint={final}"]))
    assert report.metrics.primary == pytest.approx(result.best_metric)
    assert report.summary.startswith("AP ") and "1 unreadable image(s) not scored" in report.summary
    results = json.loads((run / "eval" / "result_keypoints.json").read_text())
    assert len(results) == 2 and len(results[0]["keypoints"]) == 51
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["num_scored"] == 2 and list(metrics["failed"]) == [str(root / "val" / "00002.png")]
    # the public evaluation of the written results gives what eval printed (no rescoring or NMS inside)
    again = evaluate_coco_keypoints(
        root / "annotations" / "person_keypoints_val.json", run / "eval" / "result_keypoints.json"
    )
    assert 100 * again["AP"] == pytest.approx(report.metrics.primary)

    cfg = resolve_config(load_config("demo/pose_tiny", overrides))
    model = TASK.build_model(cfg, 17)
    model.load_state_dict(torch.load(final, map_location="cpu", weights_only=False)["model"])
    setup = TASK.prediction_setup(model_info(cfg.model.name), model, read_checkpoint(final), None)
    assert setup.input_size == [64, 64] and setup.keypoints[9] == "left_wrist"
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"00000.png": [[5, 5, 40, 50, 0.9], [10, 10, 30, 30]]}))
    setup = TASK.prediction_options(
        setup, parse_task_options(TASK, ["--boxes", str(boxes), "--out", str(tmp_path / "drawn")])
    )
    with pytest.raises(ValueError, match="unknown option"):
        TASK.prediction_options(setup, parse_task_options(TASK, ["--frobnicate", "x"]))
    run_loop = partial(feed, collate=TASK.collate, inputs=TASK.model_inputs, batch_size=2)
    image = str(root / "val" / "00000.png")
    (two,) = TASK.predict(model, [image], setup, run_loop, topk=5)
    assert len(two.persons) == 2 and len(two.persons[0]["keypoints"]) == 17 and two.error is None
    assert two.persons[0]["score"] >= two.persons[1]["score"] and len(two.ranked()) == 2
    assert (tmp_path / "drawn" / "00000_pose.png").stat().st_size > 0
    assert json.loads((tmp_path / "drawn" / "00000_keypoints.json").read_text())["persons"] == two.persons
    whole = TASK.prediction_options(
        TASK.prediction_setup(model_info(cfg.model.name), model, None, None), parse_task_options(TASK, [])
    )
    (one,) = TASK.predict(model, [image], whole, run_loop, topk=5)
    assert [p["box"] for p in one.persons] == [[0.0, 0.0, 64.0, 64.0]]

    # the command line: the task's options after the inputs, the architecture and head width from the checkpoint
    cli = ["predict", image, "--model", cfg.model.name, "--checkpoint", str(final), "--json", "--boxes", str(boxes)]
    assert main(cli) == 0
    printed = json.loads(capsys.readouterr().out)["predictions"][0]
    assert [p["box"] for p in printed["persons"]] == [p["box"] for p in two.persons]
    assert main([*cli, "--frobnicate"]) == 2 and "unknown option(s) for pose models" in capsys.readouterr().err


DETECTOR = "uniformer_small_h14_mask_rcnn_coco_1x"
TINY_DETECTOR = dict(min_size=(64,), max_size=64, mask=False, fpn_channels=16, representation_size=32)


def _detector_checkpoint(path: Path) -> Path:
    """A tiny two-class detector ("ball", then "person") saved as ``uniformer train`` saves it, so that the
    weights bring their architecture and class names."""
    overrides = dict(depth=[1, 1, 1, 1], embed_dim=[16, 32, 48, 64], head_dim=16, window_size=2)
    model = create_model(DETECTOR, num_classes=2, **overrides, **TINY_DETECTOR)
    config = {"model": {"name": DETECTOR, "overrides": overrides}, "detector": {**TINY_DETECTOR, "min_size": [64]}}
    torch.save(
        {"format": TRAIN_FORMAT, "model": model.state_dict(), "config": config, "classes": ["ball", "person"]}, path
    )
    return path


POSE = "uniformer_small_topdown_coco_256x192"
TINY_POSE = dict(depth=[1, 1, 1, 1], embed_dim=[16, 32, 48, 64], head_dim=16)


def _pose_checkpoint(path: Path) -> Path:
    """A tiny pose model (16-wide head, 64 x 48 crops) saved as ``uniformer train`` saves it."""
    model = build_pose_model(17, {**model_info(POSE).model_args, **TINY_POSE}, channels=16)
    config = {
        "model": {"name": POSE, "overrides": TINY_POSE},
        "head": {"channels": 16},
        "data": {"input_size": [64, 48]},
    }
    torch.save({"format": TRAIN_FORMAT, "model": model.state_dict(), "config": config}, path)
    return path


def _detections(monkeypatch: pytest.MonkeyPatch, found: dict[str, torch.Tensor]) -> list[tuple[int, int]]:
    """Make every detector return ``found`` for each image; returns the (H, W) of the images it was given."""
    seen = []

    def forward(self, images: list[torch.Tensor], **options: object) -> list[dict[str, torch.Tensor]]:
        seen.extend(tuple(image.shape[-2:]) for image in images)
        return [dict(found) for _ in images]

    monkeypatch.setattr(UniFormerMaskRCNN, "forward", forward)
    return seen


def test_detector_person_boxes_above_the_threshold_are_what_the_pose_model_crops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_figures(tmp_path / "figures", {"val": 2}, size=64, seed=3)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    seen = _detections(
        monkeypatch,
        {  # labels: 1 ball, 2 person (the checkpoint's class names)
            "boxes": torch.tensor(
                [[4.0, 6.0, 20.0, 40.0], [1.0, 1.0, 9.0, 9.0], [10.0, 10.0, 30.0, 30.0], [30, 2, 60, 50]]
            ),
            "labels": torch.tensor([2, 1, 2, 2]),
            "scores": torch.tensor([0.9, 0.95, 0.4, 0.6]),
        },
    )
    options = ["--detector", DETECTOR, "--detector-checkpoint", str(_detector_checkpoint(tmp_path / "det.pt"))]
    options += ["--person-score-threshold", "0.5", "--out", str(tmp_path / "o")]
    predictor = Predictor(
        POSE, _pose_checkpoint(tmp_path / "pose.pt"), task_options=parse_task_options(TASK, options)
    )  # the engine's detector
    model, setup = predictor.model, predictor.setup
    assert setup.detector.label == 2 and setup.detector.predictor.setup.score_threshold == 0.5 and setup.boxes is None
    assert setup.detector_request is None and setup.detector.predictor.task.name == "detection"
    cropped = []

    def run(model, dataset, accumulator, options) -> None:
        cropped.append([(Path(inst.image).name, inst.box, inst.score) for inst in dataset.instances])
        feed(model, dataset, accumulator, collate=TASK.collate, inputs=TASK.model_inputs, batch_size=4, options=options)

    images = [str(root / "val" / "00000.png"), str(broken), str(root / "val" / "00001.png")]
    first, bad, second = TASK.predict(model.eval(), images, setup, run, topk=5)
    assert seen[0] == seen[-1] == (64, 64)  # the images at their own size
    person = [((4.0, 6.0, 16.0, 34.0), pytest.approx(0.9)), ((30.0, 2.0, 30.0, 48.0), pytest.approx(0.6))]
    assert cropped == [[(name, box, score) for name in ("00000.png", "00001.png") for box, score in person]]
    assert bad.error.startswith("unreadable image") and bad.persons == []
    assert sorted(p["box"] for p in first.persons) == [[4.0, 6.0, 16.0, 34.0], [30.0, 2.0, 30.0, 48.0]]
    written = json.loads((tmp_path / "o" / "00000_keypoints.json").read_text())
    assert written["persons"] == first.persons and len(written["persons"][0]["keypoints"]) == 17
    assert (tmp_path / "o" / "00001_pose.png").stat().st_size > 0


def test_predict_command_finds_people_with_a_detector_and_refuses_what_is_not_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    root = write_figures(tmp_path / "figures", {"val": 1}, size=64, seed=4)
    _detections(
        monkeypatch,
        {"boxes": torch.tensor([[8.0, 4.0, 40.0, 60.0]]), "labels": torch.tensor([2]), "scores": torch.tensor([0.31])},
    )
    checkpoint = str(_detector_checkpoint(tmp_path / "det.pt"))
    image, pose = str(root / "val" / "00000.png"), str(_pose_checkpoint(tmp_path / "pose.pt"))
    cli = ["predict", image, "--model", POSE, "--checkpoint", pose, "--json", "--detector", DETECTOR]
    cli += ["--detector-checkpoint", checkpoint]
    assert main([*cli, "--out", str(tmp_path / "o")]) == 0
    (printed,) = json.loads(capsys.readouterr().out)["predictions"]
    assert PERSON_SCORE_THRESHOLD == 0.3 and [p["box"] for p in printed["persons"]] == [[8.0, 4.0, 32.0, 56.0]]
    assert json.loads((tmp_path / "o" / "00000_keypoints.json").read_text())["persons"] == printed["persons"]
    assert main([*cli, "--person-score-threshold", "0.5"]) == 0  # the one person scores 0.31
    assert json.loads(capsys.readouterr().out)["predictions"][0]["persons"] == []
    assert main([*cli[:7], "--detector", POSE]) == 2
    assert f"--detector {POSE}: a pose model, not a detection model" in capsys.readouterr().err
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"00000.png": [[0, 0, 10, 10]]}))
    assert main([*cli, "--boxes", str(boxes)]) == 2 and "not both" in capsys.readouterr().err
    assert main([*cli[:7], "--person-score-threshold", "0.5"]) == 2 and "need --detector" in capsys.readouterr().err


POSE_RECIPES = sorted((Path(__file__).resolve().parents[2] / "src/uniformer/configs/pose").glob("[!_]*"))
OFFICIAL = {  # exp/top_down_*/config.py: lr, drop_path_rate, samples_per_gpu x 8 GPUs
    "small_coco_256x192": (2e-3, 0.2, 1024),
    "small_coco_384x288": (2e-3, 0.2, 1024),
    "small_coco_448x320": (1e-3, 0.2, 512),
    "base_coco_256x192": (2e-3, 0.4, 1024),
    "base_coco_384x288": (5e-4, 0.5, 256),
    "base_coco_448x320": (5e-4, 0.55, 256),
}


@pytest.mark.parametrize("path", POSE_RECIPES, ids=lambda p: p.stem)
def test_pose_recipes_follow_the_official_configs(path: Path, tmp_path: Path) -> None:
    cfg = resolve_config(load_config(path, [f"data.root={tmp_path}"]))
    lr, drop_path, batch = OFFICIAL[path.stem.removeprefix("topdown_uniformer_")]
    info = model_info(cfg.model.name)
    assert (cfg.optimizer.lr, cfg.model.drop_path_rate, cfg.trainer.batch_size) == (lr, drop_path, batch)
    assert cfg.optimizer.name == "adamw" and cfg.optimizer.weight_decay == 0.01 and cfg.trainer.max_epochs == 210
    assert (cfg.scheduler.name, list(cfg.scheduler.milestones), cfg.scheduler.warmup_steps) == ("step", [170, 200], 500)
    assert cfg.scheduler.warmup_lr == pytest.approx(lr * 1e-3) and cfg.scheduler.decay_rate == 0.1
    assert cfg.model.pretrained == cfg.model.name.split("_topdown")[0]  # uniformer_{small,base}_in1k.pth
    assert tuple(cfg.data.input_size) == info.release().input_hw
    assert cfg.data.sigma == (2.0 if cfg.data.input_size[0] == 256 else 3.0)
    assert cfg.reproduces.endswith(f"top_down_{path.stem[-7:]}_global_{path.stem.split('_')[2]}/config.py")
    assert cfg.data.val_boxes.endswith("COCO_val2017_detections_AP_H_56_person.json") and cfg.eval.flip_test
    with torch.device("meta"):
        model = TASK.build_model(cfg, cfg.model.num_classes)
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(info.params_m, abs=0.05)


def test_mean_pose_chance_is_low_and_the_tiny_demo_writes_its_report(tmp_path: Path) -> None:
    from uniformer.tasks.pose.demo import run_demo

    out = tmp_path / "demo"
    result = run_demo(out, train_images=8, val_images=3, overrides=tuple(TINY))
    assert result["metric"] == "AP" and 0 <= result["value"] <= 1 and 0 <= result["chance"] < 0.2
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert result["value"] == metrics["AP"] / 100 and json.loads((out / "result.json").read_text()) == result
    report = (out / "report.md").read_text()
    assert f"AP {metrics['AP']:.1f}%" in report and "skeletons_00000.png" in report
    assert (out / "skeletons_00000.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("box", "problem"),
    [("[5, 5, NaN, 10]", "not finite"), ("[5, 5, Infinity, 10]", "not finite"), ("[5, 5, true, 10]", "expected a")],
)
def test_boxes_that_are_not_finite_numbers_are_refused_naming_file_image_and_box(
    tmp_path: Path, box: str, problem: str
) -> None:
    boxes = tmp_path / "boxes.json"
    boxes.write_text('{"a.png": [[1, 1, 4, 4], ' + box + "]}")  # Python's json reads NaN and Infinity
    with pytest.raises(ValueError, match=rf"--boxes .*boxes\.json: 'a\.png': .*{problem}"):
        TASK.prediction_options(
            TASK.prediction_setup(model_info(POSE), build_pose_model(17, {}, channels=16), None, None),
            {"boxes": str(boxes)},
        )


def test_a_box_off_the_image_fails_that_image_only_and_unmatched_names_are_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    images = []
    for name in ("on.png", "off.png"):
        images.append(str(tmp_path / name))
        Image.fromarray(np.full((40, 30, 3), 128, np.uint8)).save(images[-1])
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"on.png": [[2, 2, 20, 30]], "off.png": [[30, 5, 10, 10]], "of.png": [[1, 1, 5, 5]]}))
    predictor = Predictor(POSE, _pose_checkpoint(tmp_path / "pose.pt"), task_options={"boxes": str(boxes)})
    with caplog.at_level("WARNING", logger="uniformer.tasks"):
        on, off = predictor.predict(images)
    assert on.error is None and len(on.persons) == 1
    assert off.error == f"--boxes {boxes}: 'off.png': box 0 [30, 5, 10, 10] lies outside the 30x40 image"
    assert off.persons == [] and "no input is named of.png" in caplog.text


def test_a_huge_box_and_an_input_the_boxes_file_does_not_name_fail_that_input_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    images = []
    for name in ("huge.png", "photo.png", "empty.png"):
        images.append(str(tmp_path / name))
        Image.fromarray(np.full((40, 30, 3), 128, np.uint8)).save(images[-1])
    boxes = tmp_path / "boxes.json"
    entries = {"huge.png": [[2, 2, 20, 30], [0, 0, 1e9, 1e9]], "phot.png": [[1, 1, 5, 5]], "empty.png": []}
    boxes.write_text(json.dumps(entries))
    checkpoint = _pose_checkpoint(tmp_path / "pose.pt")
    predictor = Predictor(POSE, checkpoint, task_options={"boxes": str(boxes)})
    huge, misspelt, empty = predictor.predict(images)
    assert huge.error == (
        f"--boxes {boxes}: 'huge.png': box 1 [0, 0, 1000000000.0, 1000000000.0] reaches past the 30x40 image by more "
        "than its size (a box may extend past the image by at most its width and height)"
    )
    assert misspelt.error == (
        f"--boxes {boxes}: no entry for photo.png (an image without people needs 'photo.png': []); "
        "did you mean 'phot.png'?"
    )
    assert empty.error is None and empty.persons == [] and empty.lines(5) == [images[2], "  no person found"]
    assert main(["predict", images[2], "--model", POSE, "--checkpoint", str(checkpoint), "--boxes", str(boxes)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "  no person found"


def test_pose_output_folders_are_checked_before_the_model_is_built_or_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model must not be built or run for options that are refused")

    image = tmp_path / "a.png"
    Image.fromarray(np.full((40, 30, 3), 128, np.uint8)).save(image)
    (tmp_path / "taken").write_text("a file")
    monkeypatch.setattr("uniformer.engine.predict.create_model", never)
    assert main(["predict", str(image), "--model", POSE, "--out-dir", str(tmp_path / "out")]) == 2
    assert "pose models write their skeleton PNGs and keypoints JSON with --out DIR, not --out-dir" in (
        capsys.readouterr().err
    )
    monkeypatch.undo()
    monkeypatch.setattr("uniformer.engine.predict.feed", never)  # the task's own options: before the model runs
    assert main(["predict", str(image), "--model", POSE, "--out", str(tmp_path / "taken")]) == 2
    assert f"--out {tmp_path / 'taken'}: exists and is not a folder" in capsys.readouterr().err


def test_null_keypoints_are_reported_by_id_once_at_load_and_a_non_object_annotation_is_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gt = json.loads(_gt_file(tmp_path, [np.full((17, 2), 50.0)] * 2).read_text())
    gt["annotations"][1]["keypoints"] = None
    (tmp_path / "null.json").write_text(json.dumps(gt))
    with caplog.at_level("WARNING"):
        file = read_keypoint_file(tmp_path / "null.json", tmp_path)
    assert len(file.instances) == 1
    assert "1 unusable annotation(s) skipped: annotation 2" in caplog.text
    assert "'keypoints' is null, not a list of x, y, v values" in caplog.text
    gt["annotations"].append([1, 2, 3])
    (tmp_path / "list.json").write_text(json.dumps(gt))
    with pytest.raises(ValueError, match=r"list.json: annotations\[2\] is a list, not an object"):
        read_keypoint_file(tmp_path / "list.json", tmp_path)
