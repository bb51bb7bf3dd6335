"""The detection task: COCO-format reading (crowd, degenerate, empty, unreadable), pycocotools AP, the seam."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from pycocotools import mask as mask_utils
from timm.layers import DropPath

from uniformer.cli import main
from uniformer.cli.predict import parse_task_options
from uniformer.data.images import read_image
from uniformer.engine import evaluate, load_config, resolve_config, train
from uniformer.engine.predict import Predictor
from uniformer.models.detection import UniFormerCascadeMaskRCNN, build_detector
from uniformer.models.zoo.catalog import model_info
from uniformer.runtime import feed
from uniformer.tasks import task_for_model
from uniformer.tasks.detection import TASK, evaluate_coco
from uniformer.tasks.detection.data import CocoDetection, collate_detection
from uniformer.tasks.detection.demo import run_demo
from uniformer.tasks.detection.metrics import CocoAccumulator, write_report
from uniformer.tasks.detection.predict import Prediction, PredictionSetup, draw_detections
from uniformer.tasks.detection.synth import INSTANCE_CLASSES, write_instances

SIZES = {1: (60, 80), 2: (50, 70), 3: (40, 40)}  # image id -> (H, W)


def _square(x: int, y: int, w: int, h: int) -> list[list[float]]:
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def write_coco(root: Path, masks: bool = True, degenerate: bool = True) -> Path:
    """Three images (one without annotations), two categories with non-contiguous ids, a crowd annotation and
    two degenerate ones (zero width; outside the image). The evaluation scores against the file as it is, so
    the AP tests leave the degenerate ones out (pycocotools counts them as objects no box can match)."""
    (root / "images").mkdir(parents=True)
    for image_id, (h, w) in SIZES.items():
        Image.fromarray(np.full((h, w, 3), 40 * image_id, np.uint8)).save(root / "images" / f"{image_id}.png")
    boxes = [  # (id, image, category, x, y, w, h, crowd)
        (1, 1, 7, 10, 10, 20, 30, 0),
        (2, 1, 3, 40, 5, 30, 20, 0),
        (3, 2, 7, 5, 5, 40, 40, 0),
        (4, 2, 3, 0, 0, 70, 50, 1),  # crowd
        (5, 2, 3, 10, 10, 0, 10, 0),  # zero width
        (6, 1, 3, 200, 200, 10, 10, 0),  # no overlap with the image
    ]
    anns = []
    for ann_id, image_id, cat, x, y, w, h, crowd in boxes if degenerate else boxes[:4]:
        ann = {"id": ann_id, "image_id": image_id, "category_id": cat, "bbox": [x, y, w, h], "area": w * h or 1}
        ann["iscrowd"] = crowd
        if masks:
            ann["segmentation"] = _square(x, y, w, h)
        anns.append(ann)
    data = {
        "images": [{"id": i, "file_name": f"{i}.png", "height": h, "width": w} for i, (h, w) in SIZES.items()],
        "annotations": anns,
        "categories": [{"id": 7, "name": "triangle"}, {"id": 3, "name": "circle"}],
    }
    path = root / "instances.json"
    path.write_text(json.dumps(data))
    return path


def test_annotations_are_read_as_mmdet_and_what_is_left_out_is_counted(tmp_path: Path) -> None:
    ann = write_coco(tmp_path)
    train = CocoDetection(ann, tmp_path / "images", train=True, flip=0.0)
    assert train.classes == ["circle", "triangle"] and train.category_ids == [3, 7]  # sorted ids -> labels 1, 2
    r = train.report
    assert (r.images, r.annotations, r.crowd, r.degenerate, r.empty_images_skipped) == (2, 3, 1, 2, 1)
    item = train[0]
    assert item["image"].shape == (3, 60, 80) and item["image"].dtype == torch.float32 and item["image_id"] == 1
    torch.testing.assert_close(item["target"]["boxes"], torch.tensor([[10.0, 10.0, 30.0, 40.0], [40, 5, 70, 25]]))
    assert item["target"]["labels"].tolist() == [2, 1]
    masks = item["target"]["masks"]
    assert masks.shape == (2, 60, 80) and masks.dtype == torch.uint8
    assert masks[0, 10:40, 10:30].all() and masks[0].sum() <= 31 * 21
    test = CocoDetection(ann, tmp_path / "images", train=False)
    assert len(test) == 3 and test.report.empty_images_skipped == 0
    boxes_only = CocoDetection(write_coco(tmp_path / "boxes", masks=False), tmp_path / "boxes/images", train=True)
    assert not boxes_only.has_masks and "masks" not in boxes_only[0]["target"]


def test_flip_moves_boxes_and_masks_with_the_image(tmp_path: Path) -> None:
    flipped = CocoDetection(write_coco(tmp_path), tmp_path / "images", train=True, flip=1.0)[0]
    torch.testing.assert_close(flipped["target"]["boxes"][0], torch.tensor([50.0, 10.0, 70.0, 40.0]))
    assert flipped["target"]["masks"][0, 10:40, 50:70].all()


def test_an_unreadable_image_is_marked_in_evaluation_and_replaced_in_training(tmp_path: Path) -> None:
    ann = write_coco(tmp_path)
    (tmp_path / "images" / "2.png").write_bytes(b"not a png")
    item = CocoDetection(ann, tmp_path / "images", train=False)[1]
    assert not item["valid"] and "unreadable image" in item["error"]
    train = CocoDetection(ann, tmp_path / "images", train=True, flip=0.0)
    replaced = train[1]
    assert replaced["valid"] and replaced["skipped"][0][0].endswith("2.png")
    batch = collate_detection([train[0], replaced])
    assert len(batch["images"]) == 2 and batch["skipped"] == replaced["skipped"]


class _Oracle(nn.Module):
    """Returns given detections for each image, found by its size."""

    def __init__(self, detections: dict[tuple[int, int], dict[str, torch.Tensor]]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.detections = detections

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return [self.detections[tuple(image.shape[-2:])] for image in images]


def _ground_truth(dataset: CocoDetection) -> dict[tuple[int, int], dict[str, torch.Tensor]]:
    out = {}
    for entry in dataset.entries:
        target = dataset.target(entry)
        n = len(target["boxes"])
        out[(entry.height, entry.width)] = {
            "boxes": target["boxes"],
            "labels": target["labels"],
            "scores": torch.ones(n),
            "masks": target["masks"][:, None].float(),
        }
    return out


def test_predictions_equal_to_the_ground_truth_give_ap_one(tmp_path: Path) -> None:
    ann = write_coco(tmp_path, degenerate=False)
    truth = _ground_truth(CocoDetection(ann, tmp_path / "images", train=False))
    metrics = evaluate_coco(_Oracle(truth), ann, tmp_path / "images", tmp_path / "out")
    assert metrics["bbox_AP"] == pytest.approx(1.0) and metrics["bbox_AP50"] == pytest.approx(1.0)
    assert metrics["segm_AP"] == pytest.approx(1.0) and metrics["failed"] == 0
    results = json.loads((tmp_path / "out" / "segm_results.json").read_text())
    assert len(results) == 3 and {r["category_id"] for r in results} == {3, 7}
    assert isinstance(results[0]["segmentation"]["counts"], str)
    box = json.loads((tmp_path / "out" / "bbox_results.json").read_text())
    assert {tuple(r["bbox"]) for r in box} == {(10, 10, 20, 30), (40, 5, 30, 20), (5, 5, 40, 40)}


def test_a_missed_object_gives_pycocotools_recall_limited_ap(tmp_path: Path) -> None:
    """Category 7 has two objects; finding one (score 1) and missing the other gives precision 1 up to recall
    0.5 and none beyond: 51 of the 101 recall points, AP = 51 / 101. Category 3's one object found: AP 1."""
    ann = write_coco(tmp_path, degenerate=False)
    truth = _ground_truth(CocoDetection(ann, tmp_path / "images", train=False))
    truth[(50, 70)] = {k: v[:0] for k, v in truth[(50, 70)].items()}  # image 2's triangle missed
    metrics = evaluate_coco(_Oracle(truth), ann, tmp_path / "images")
    assert metrics["bbox_AP"] == pytest.approx((51 / 101 + 1) / 2)
    assert metrics["bbox_AP50"] == pytest.approx((51 / 101 + 1) / 2)


class _Gather:
    """Two processes' accumulators seen from one: all_gather_object returns both parts."""

    def __init__(self, parts: list) -> None:
        self.parts = parts

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def all_gather_object(self, obj):
        return self.parts


def test_results_are_gathered_across_processes_before_evaluation(tmp_path: Path) -> None:
    ann = write_coco(tmp_path, degenerate=False)
    dataset = CocoDetection(ann, tmp_path / "images", train=False)
    truth = _ground_truth(dataset)
    ids = [e.image_id for e in dataset.entries]
    accumulators = [CocoAccumulator(dataset.coco, ids, dataset.category_ids, masks=True) for _ in range(2)]
    for rank, acc in enumerate(accumulators):
        for index in acc.indices(rank, 2):
            batch = collate_detection([dataset[index]])
            acc.update(_Oracle(truth)(batch["images"]), batch)
    parts = [(acc.results, acc.failed) for acc in accumulators]
    metrics = accumulators[0].compute(_Gather(parts))
    assert metrics.values["bbox_AP"] == pytest.approx(1.0) and metrics.primary == pytest.approx(100.0)  # in %
    assert metrics.values["bbox_APl"] == -1  # pycocotools' "no object of that size", which the report shows as -
    line = write_report(tmp_path / "report", metrics.detail)
    assert line.startswith("box AP 100.0 AP50 100.0 AP75 100.0 (s/m/l ") and "-100" not in line
    assert TASK.metric_label == "box AP (%)"
    alone = accumulators[0].compute(_Gather(parts[:1]))  # rank 0's share only: image 2's objects unmatched
    assert alone.values["bbox_AP"] < 1.0


TINY = [
    "model.overrides.depth=[1,1,1,1]",
    "model.overrides.embed_dim=[16,32,64,128]",
    "model.overrides.head_dim=16",
    "detector.min_size=[64]",
    "detector.max_size=64",
    "detector.fpn_channels=16",
    "detector.representation_size=32",
    "detector.mask_channels=16",
    "trainer.batch_size=4",
    "trainer.max_steps=2",
    "trainer.max_epochs=1",
    "trainer.val_batch_size=4",
    "eval.batch_size=4",
]


def test_tiny_run_trains_and_evaluates_through_the_engine(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert task_for_model("uniformer_small_h14_mask_rcnn_coco_1x") is TASK
    root = write_instances(tmp_path / "shapes", {"train": 8, "val": 3}, size=64, seed=1)
    run = tmp_path / "run"
    overrides = [f"data.root={root}", f"output_dir={run}", *TINY]
    result = train(load_config("demo/shapes_detection_tiny", overrides))
    assert result.steps == 2 and result.metric == "bbox_AP" and 0 <= result.best_metric <= 100
    final = run / "checkpoints" / "best.pt"
    report = evaluate(load_config("demo/shapes_detection_tiny", [*overrides, f"eval.checkpoint={final}"]))
    assert report.metrics.primary == pytest.approx(result.best_metric)  # the validation of the same weights
    assert "segm_AP" in report.metrics.values and report.summary.startswith("box AP ")
    assert json.loads((run / "eval" / "metrics.json").read_text())["num_images"] == 3
    assert (run / "eval" / "segm_results.json").is_file()
    # the weights rebuild their detector (the run's detector options travel in the checkpoint) and predict
    predictor = Predictor("uniformer_small_h14_mask_rcnn_coco_1x", final)
    assert predictor.model.backbone.out_channels == 16 and predictor.setup.labels == list(INSTANCE_CLASSES)
    assert predictor.model.rpn.anchor_generator.sizes == ((16,), (32,), (64,), (128,), (256,))  # anchor_scale 4
    (prediction,) = predictor.predict([root / "images" / "val" / "00000.png"])
    assert prediction.error is None and all(s > 0.3 for s in prediction.scores)
    # the command line: pictures and JSON in --out-dir, the threshold applied, one JSON document on stdout
    image = str(root / "images" / "val" / "00001.png")
    argv = ["predict", image, "--model", "uniformer_small_h14_mask_rcnn_coco_1x", "--checkpoint", str(final)]
    assert main([*argv, "--out-dir", str(tmp_path / "pred"), "--score-threshold", "0", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["files"] == [str(tmp_path / "pred" / f"00001_detections.{ext}") for ext in ("png", "json")]
    assert Image.open(tmp_path / "pred" / "00001_detections.png").size == (64, 64)
    (listed,) = document["predictions"]
    assert json.loads((tmp_path / "pred" / "00001_detections.json").read_text())["detections"] == listed["detections"]
    assert listed["detections"] and all(d["score"] > 0 and "mask" in d for d in listed["detections"])


def test_predictions_are_named_thresholded_and_drawn(tmp_path: Path) -> None:
    ann = write_coco(tmp_path, degenerate=False)
    truth = _ground_truth(CocoDetection(ann, tmp_path / "images", train=False))
    truth[(60, 80)]["scores"] = torch.tensor([0.9, 0.2])  # the second one falls below the threshold
    setup = PredictionSetup(["circle", "triangle"], score_threshold=0.3)
    run = partial(feed, collate=TASK.collate, inputs=TASK.model_inputs, batch_size=2)
    paths = [str(tmp_path / "images" / "1.png"), str(tmp_path / "images" / "3.png")]
    (first, second) = TASK.predict(_Oracle(truth), paths, setup, run, topk=5)
    assert first.labels == [2] and first.names == ["triangle"] and first.scores == pytest.approx([0.9])
    assert first.masks.shape == (1, 60, 80) and first.to_dict()["detections"][0]["box"] == [10, 10, 30, 40]
    assert second.labels == [] and second.error is None
    picture = draw_detections(paths[0], first, tmp_path / "drawn.png")
    drawn = np.asarray(Image.open(picture))
    assert drawn.shape == (60, 80, 3) and (drawn != np.asarray(Image.open(paths[0]))).any()
    with pytest.raises(FileNotFoundError, match="missing.png"):
        TASK.predict(_Oracle(truth), [str(tmp_path / "missing.png")], setup, run, topk=5)


def test_the_score_threshold_keeps_exactly_the_detections_above_it_and_the_files_hold_them(tmp_path: Path) -> None:
    ann = write_coco(tmp_path, degenerate=False)
    truth = _ground_truth(CocoDetection(ann, tmp_path / "images", train=False))
    box = torch.tensor([[5.0, 6.0, 25.0, 36.0]])
    masks = torch.zeros(4, 1, 60, 80)
    masks[:, 0, 6:36, 5:25] = 0.9
    truth[(60, 80)] = {  # four detections of one image: scores above, at and below the threshold
        "boxes": box.repeat(4, 1) + torch.arange(4.0)[:, None],
        "labels": torch.tensor([1, 2, 1, 2]),
        "scores": torch.tensor([0.95, 0.6, 0.5, 0.2]),
        "masks": masks,
    }
    run = partial(feed, collate=TASK.collate, inputs=TASK.model_inputs, batch_size=2)
    setup = TASK.prediction_options(
        PredictionSetup(["circle", "triangle"]), parse_task_options(TASK, ["--score-threshold", "0.5"])
    )
    assert setup.score_threshold == 0.5 and PredictionSetup(["a"]).score_threshold == 0.3  # the default
    path = str(tmp_path / "images" / "1.png")
    (kept,) = TASK.predict(_Oracle(truth), [path], setup, run, topk=5)
    assert kept.scores == pytest.approx([0.95, 0.6]) and kept.names == ["circle", "triangle"]  # 0.5 is not above
    assert kept.boxes.tolist() == [[5, 6, 25, 36], [6, 7, 26, 37]] and kept.masks.shape == (2, 60, 80)
    (everything,) = TASK.predict(
        _Oracle(truth),
        [path],
        TASK.prediction_options(setup, parse_task_options(TASK, ["--score-threshold=0"])),
        run,
        5,
    )
    assert len(everything.scores) == 4

    written = TASK.write_predictions([kept], setup, tmp_path / "out")
    assert [p.name for p in written] == ["1_detections.png", "1_detections.json"]
    assert Image.open(written[0]).size == (80, 60)  # the input's width and height
    record = json.loads(written[1].read_text())
    assert record["path"] == path and (record["width"], record["height"]) == (80, 60)
    assert record["score_threshold"] == 0.5 and record["error"] is None
    first = record["detections"][0]
    assert {k: first[k] for k in ("label", "name", "box")} == {"label": 1, "name": "circle", "box": [5, 6, 25, 36]}
    assert first["score"] == pytest.approx(0.95)
    mask = mask_utils.decode({**first["mask"], "counts": first["mask"]["counts"].encode()})
    assert mask.shape == (60, 80) and mask.sum() == 30 * 20 and mask[6:36, 5:25].all()


def test_a_zoo_detector_sees_a_photo_at_its_test_scale_and_only_the_kept_masks_are_pasted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    backbone = dict(depth=(1, 1, 1, 1), embed_dim=(16, 32, 48, 64), head_dim=16, window_size=2)
    model = build_detector("mask_rcnn", 2, backbone, min_size=(48,), max_size=64, fpn_channels=16, mask_channels=16)
    model.eval()
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(photo)
    resized = F.interpolate(read_image(photo)[None], size=(48, 64), mode="bilinear", align_corners=False)
    with torch.no_grad():  # the model on the photo resized as mmdet resizes it (uint8, rounded size)
        reference = model([resized[0].float() / 255], score_thresh=0.0)[0]
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0][0].shape[-2:])))

    def refuse(*args: object) -> None:
        raise AssertionError("every candidate's mask pasted at the photo's size")

    monkeypatch.setattr("torchvision.models.detection.transform.paste_masks_in_image", refuse)
    run = partial(feed, collate=TASK.collate, inputs=TASK.model_inputs, batch_size=1)
    (found,) = TASK.predict(model, [str(photo)], PredictionSetup(["a", "b"], score_threshold=0.0), run, topk=1)
    assert seen == [(48, 64)] and len(found.scores) == len(reference["scores"]) > 0
    torch.testing.assert_close(torch.from_numpy(found.boxes), reference["boxes"] * 10)  # mapped back to the photo
    assert found.masks.shape == (len(found.scores), 480, 640) and found.masks.any()
    for mask, (x1, y1, x2, y2) in zip(found.masks, found.boxes.tolist(), strict=True):
        rows, cols = np.nonzero(mask)  # each mask lies within its box (grown by the paste's padding)
        assert not len(rows) or (cols.min() >= x1 - 25 and cols.max() <= x2 + 25 and rows.max() <= y2 + 25)


def test_score_threshold_options_are_checked_and_a_low_one_reaches_the_detector(tmp_path: Path) -> None:
    setup = PredictionSetup(["circle"])
    with pytest.raises(ValueError, match="must be in \\[0, 1\\]; got 1.5"):
        TASK.prediction_options(setup, parse_task_options(TASK, ["--score-threshold", "1.5"]))
    with pytest.raises(ValueError, match="unknown option\\(s\\) for detection models: --boxes"):
        TASK.prediction_options(setup, parse_task_options(TASK, ["--boxes", "b.json"]))
    with pytest.raises(ValueError, match="detection options: argument --score-threshold"):
        TASK.prediction_options(setup, parse_task_options(TASK, ["--score-threshold", "high"]))
    ann = write_coco(tmp_path, degenerate=False)
    seen = []

    class Detector(_Oracle):  # a torchvision R-CNN's own test threshold; the one each call runs with, recorded
        roi_heads = type("Heads", (), {"score_thresh": 0.05})()

        def forward(
            self, images: list[torch.Tensor], score_thresh: float | None = None
        ) -> list[dict[str, torch.Tensor]]:
            seen.append(self.roi_heads.score_thresh if score_thresh is None else score_thresh)
            return super().forward(images)

    model = Detector(_ground_truth(CocoDetection(ann, tmp_path / "images", train=False)))
    run = partial(feed, collate=TASK.collate, inputs=TASK.model_inputs, batch_size=1)
    path = [str(tmp_path / "images" / "3.png")]
    TASK.predict(model, path, PredictionSetup(["circle", "triangle"], score_threshold=0.01), run, topk=1)
    TASK.predict(model, path, PredictionSetup(["circle", "triangle"], score_threshold=0.3), run, topk=1)
    assert seen == [0.01, 0.05] and model.roi_heads.score_thresh == 0.05  # lowered for the call, the model's kept


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("detector.rpn_pre_nms_top_n=[500]", "detector.rpn_pre_nms_top_n must be two positive counts .* got \\[500\\]"),
        ("detector.rpn_post_nms_top_n=[0,100]", "detector.rpn_post_nms_top_n must be two positive counts"),
        ("detector.anchor_scale=0", "detector.anchor_scale must be positive; got 0"),
    ],
)
def test_bad_detector_sampling_settings_are_refused_naming_the_field(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_config(load_config("demo/shapes_detection_tiny", ["data.root=/nonexistent", override]))


RECIPES = sorted((Path(__file__).resolve().parents[2] / "src/uniformer/configs/detection").glob("[!_]*"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_detection_recipe_names_the_official_config_and_builds_the_published_model(path: Path) -> None:
    cfg = resolve_config(load_config(path, ["data.root=/nonexistent"]))
    light = "/exp_light/" in cfg.reproduces
    assert cfg.reproduces.startswith(f"Sense-X/UniFormer object_detection/{'exp_light' if light else 'exp'}/")
    info = model_info(cfg.model.name)
    with torch.device("meta"):
        model = TASK.build_model(cfg, 80)
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(info.params_m, rel=0.03)
    deepest = max((m.drop_prob for m in model.modules() if isinstance(m, DropPath)), default=0.0)
    assert deepest == pytest.approx(cfg.model.drop_path_rate)
    assert model.transform.min_size[-1] == 800 and model.transform.max_size == 1333
    milestones = [8, 11] if cfg.trainer.max_epochs == 12 else [27, 33]  # mmdet step=[8, 11] / [27, 33]
    assert (cfg.scheduler.name, list(cfg.scheduler.milestones), cfg.scheduler.warmup_steps) == ("step", milestones, 500)
    # uniformer_{small,base}_in1k.pth; the light ImageNet files are on Google Drive only (model.checkpoint)
    assert cfg.model.pretrained == (None if light else cfg.model.name.split("_h14")[0])
    assert (cfg.trainer.precision == "fp32") == light  # the light configs turn mixed precision off
    cascade = info.detector == "cascade_mask_rcnn"
    assert isinstance(model, UniFormerCascadeMaskRCNN) == cascade == ("/cascade_mask_rcnn_3x_" in cfg.reproduces)
    assert model.rpn._post_nms_top_n["training"] == (2000 if cascade else 1000)  # rpn_proposal.max_per_img
    assert len(RECIPES) == 6 + 2  # and the light XXS / XS


def test_tiny_demo_writes_its_report_and_consistent_numbers(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    tiny = (*TINY, "trainer.tensorboard=false")
    result = run_demo(out, train_images=8, val_images=2, size=64, overrides=tiny)
    metrics = json.loads((out / "eval" / "metrics.json").read_text())["values"]
    assert result["metric"] == "bbox_AP50" and result["value"] == metrics["bbox_AP50"]
    assert json.loads((out / "result.json").read_text()) == result
    report = (out / "report.md").read_text()
    assert f"| bbox_AP50 | {100 * metrics['bbox_AP50']:.1f} |" in report
    assert "![prediction_00000.png](prediction_00000.png)" in report
    assert Image.open(out / "prediction_00001.png").size == (64, 64)


def test_a_boxes_only_set_trains_a_detector_without_a_mask_branch(tmp_path: Path) -> None:
    root = tmp_path / "boxes"
    write_coco(root, masks=False)
    overrides = [f"data.root={root}", "data.train_ann=instances.json", "data.train_images=images", *TINY]
    cfg = resolve_config(load_config("demo/shapes_detection_tiny", overrides))
    train_set = TASK.build_dataset(cfg, "train")
    assert TASK.num_outputs(cfg, train_set) == 2 and cfg.detector.mask is False  # settled from the annotations
    model = TASK.build_model(cfg, 2)
    assert not model.roi_heads.has_mask()
    objective = TASK.objective(cfg, 2, 2)
    inputs, targets = objective.prepare(TASK.collate([train_set[0], train_set[1]]), torch.device("cpu"))
    output = objective.forward(model.train(), inputs)
    assert "loss_mask" not in output and set(output) >= {"loss_classifier", "loss_box_reg"}
    assert objective.loss(output, targets).item() == pytest.approx(sum(v.item() for v in output.values()), rel=1e-6)
    cfg.detector.mask = True
    with pytest.raises(ValueError, match="detector.mask=true but .* has no segmentation annotations"):
        TASK.num_outputs(cfg, train_set)


def test_a_detection_prediction_prints_its_detections_best_first_under_its_path() -> None:
    found = Prediction("a.png", np.zeros((2, 4)), [1, 2], ["cat", "dog"], [0.9, 0.4])
    assert found.ranked() == [("cat", 0.9), ("dog", 0.4)]
    assert found.lines(1) == ["a.png", f"  1. {'cat':<40s}  90.00%"]
    assert Prediction("b.png", error="unreadable").lines(5) == ["b.png", "  could not be read: unreadable"]
