"""The segmentation task: metric, loss, data checks and a tiny train -> eval -> predict run on synthetic shapes."""

from __future__ import annotations

import json
import logging
import math
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from tests.data.test_images import write_png_bomb
from uniformer.cli import main
from uniformer.data.shapes import SHAPE_CLASSES
from uniformer.data.transforms import rescale_size
from uniformer.engine import load_config
from uniformer.engine.config import resolve_config
from uniformer.engine.evaluate import evaluate
from uniformer.engine.train import train
from uniformer.models.checkpoint import read_checkpoint
from uniformer.models.segmentor import InferenceConfig, build_segmentor
from uniformer.models.zoo.catalog import model_info
from uniformer.runtime import feed
from uniformer.tasks import get_task, task_for_model
from uniformer.tasks.segmentation import TASK, SegmentationTask, segmentation_loss
from uniformer.tasks.segmentation.data import TrainTransform, collate_pairs
from uniformer.tasks.segmentation.demo import background_miou, run_demo
from uniformer.tasks.segmentation.metrics import IoUAccumulator
from uniformer.tasks.segmentation.predict import (
    PredictionSetup,
    overlay_image,
    palette_for,
    resized_label_map,
    write_overlay,
)
from uniformer.tasks.segmentation.synth import write_shapes

TINY = [
    "model.overrides.depth=[1,1,1,1]",
    "model.overrides.embed_dim=[16,32,64,128]",
    "model.overrides.head_dim=16",
    "head.channels=16",
    "head.aux_channels=16",
    "data.scale=[32,32]",
    "data.crop_size=32",
    "trainer.batch_size=4",
    "trainer.max_epochs=1",
    "trainer.max_steps=2",
    "trainer.progress=false",
    "trainer.tensorboard=false",
    "trainer.log_every_steps=1",
    "eval.batch_size=3",
]


class _TwoProcesses:
    """Collectives of a world of two whose other process holds ``other``'s sums."""

    def __init__(self, other: IoUAccumulator) -> None:
        self.other = other

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor + self.other.sums

    def all_gather_object(self, obj: Any) -> list[Any]:
        return [obj, self.other.failed]


def _batch(pred: list[list[int]], label: list[list[int]], classes: int, path: str = "a.png") -> tuple:
    """Logits whose arg-max is ``pred`` and the collated batch of ``label``."""
    p, y = torch.tensor(pred), torch.tensor(label)
    logits = torch.nn.functional.one_hot(p, classes).permute(2, 0, 1)[None].float()
    batch = {
        "mask": y[None],
        "resized": torch.tensor([p.shape]),
        "size": torch.tensor([y.shape]),
        "valid": torch.tensor([True]),
        "path": [path],
        "error": [""],
    }
    return logits, batch


def test_metric_matches_a_hand_computed_confusion_example() -> None:
    # valid (label, pred) pairs: (0,0) (0,1) (1,1) (1,1) (1,2) (2,2) (2,2) (2,0); the ignored pixel predicts 3
    # intersect 1 2 2 0, pred area 2 3 3 0, label area 2 3 3 0, union 3 4 4 0 -> IoU 1/3 1/2 1/2 NaN
    names = ["a", "b", "c", "d"]
    first, second = IoUAccumulator(2, names), IoUAccumulator(2, names)
    first.update(*_batch([[0, 1, 1], [1, 2, 3]], [[0, 0, 1], [1, 1, 255]], 4))  # image 1 on "process 0"
    second.update(*_batch([[2, 2, 0]], [[2, 2, 2]], 4, path="b.png"))  # image 2 on "process 1"
    metrics = first.compute(_TwoProcesses(second))
    result = metrics.detail
    assert [row["intersection"] for row in result.per_class] == [1, 2, 2, 0]
    assert [row["union"] for row in result.per_class] == [3, 4, 4, 0]
    assert [row["pred_area"] for row in result.per_class] == [2, 3, 3, 0]
    assert [row["label_area"] for row in result.per_class] == [2, 3, 3, 0]
    assert result.per_class[0]["iou"] == pytest.approx(100 / 3)
    assert math.isnan(result.per_class[3]["iou"])  # absent from prediction and truth: left out of the mean
    assert metrics.primary == pytest.approx(100 * 4 / 9)  # mean of 1/3, 1/2, 1/2
    assert metrics.values == {
        "miou": pytest.approx(100 * 4 / 9),
        "aacc": pytest.approx(100 * 5 / 8),
        "macc": pytest.approx(100 * 11 / 18),  # mean of 1/2, 2/3, 2/3
        "failed": 0,
    }


def test_predictions_are_resized_back_to_the_mask_and_padding_is_cropped() -> None:
    # the logits of a 2x2 resized image padded to 2x3: the padded column must not reach the 4x4 mask
    logits = torch.zeros(1, 2, 2, 3)
    logits[0, 1, :, :2] = 1.0  # class 1 over the image, class 0 on the padding column
    batch = {
        "mask": torch.ones(1, 4, 4, dtype=torch.long),
        "resized": torch.tensor([[2, 2]]),
        "size": torch.tensor([[4, 4]]),
        "valid": torch.tensor([True]),
        "path": ["x.png"],
        "error": [""],
    }
    acc = IoUAccumulator(1, ["bg", "fg"])
    acc.update(logits, batch)
    assert acc.sums[:, 1].tolist() == [16, 16, 16, 16]  # every one of the 16 mask pixels predicted class 1


def test_loss_is_cross_entropy_on_out_plus_aux_weight_times_aux() -> None:
    mask = torch.tensor([[[0, 255]]])  # one labelled pixel, one ignored
    out = torch.zeros(1, 2, 1, 2)  # CE ln 2 on the labelled pixel
    aux = torch.tensor([[[[0.0, 0.0]], [[math.log(3), 0.0]]]])  # softmax(0, ln 3): p(class 0) = 1/4
    # mmseg 0.x averages over all pixels, the ignored one counting zero
    assert segmentation_loss(out, mask, 255).item() == pytest.approx(math.log(2) / 2)
    objective = TASK.objective(_cfg_stub(0.4), 2, 1)
    expected = math.log(2) / 2 + 0.4 * math.log(4) / 2
    assert objective.loss({"out": out, "aux": aux}, mask).item() == pytest.approx(expected)
    assert objective.loss({"out": out}, mask).item() == pytest.approx(math.log(2) / 2)  # no auxiliary head
    assert TASK.objective(_cfg_stub(0.0), 2, 1).loss({"out": out, "aux": aux}, mask).item() == pytest.approx(
        math.log(2) / 2
    )
    with pytest.raises(ValueError, match="'out'"):
        objective.loss(out, mask)


def _cfg_stub(aux_weight: float, class_weight: list[float] | None = None) -> Any:
    loss = {"aux_weight": aux_weight, "class_weight": class_weight}
    return OmegaConf.create({"loss": loss, "data": {"ignore_index": 255}})


def test_class_weights_scale_each_pixel_loss_by_its_true_class(tmp_path: Path) -> None:
    mask = torch.tensor([[[0, 255, 2]]])  # classes 0 and 2 labelled, one pixel ignored
    out = torch.zeros(1, 3, 1, 3)  # uniform: CE ln 3 on each labelled pixel
    # mmseg 0.x: (1 * ln 3 + 0 + 3 * ln 3) / 3 pixels, the weights not in the denominator
    objective = TASK.objective(_cfg_stub(0.0, [1.0, 5.0, 3.0]), 3, 1)
    assert objective.loss({"out": out}, mask).item() == pytest.approx(4 * math.log(3) / 3)
    with pytest.raises(ValueError, match="loss.class_weight needs 6 weights >= 0"):
        (tmp_path / "classes.txt").write_text("\n".join(SHAPE_CLASSES) + "\n")
        resolve_config(load_config("demo/shapes_tiny", [f"data.root={tmp_path}", "loss.class_weight=[1,2]"]))


def test_rescale_keeps_the_ratio_within_long_and_short_bounds() -> None:
    assert rescale_size(512, 683, (2048, 512)) == (512, 683)
    assert rescale_size(1000, 500, (2048, 512)) == (1024, 512)  # short side bound: factor 1.024
    assert rescale_size(100, 1000, (2048, 512)) == (205, 2048)  # long side bound: factor 2.048


def test_train_transform_crops_flips_and_pads_with_ignore() -> None:
    transform = TrainTransform(
        scale=[20, 20],
        ratio_range=[1.0, 1.0],
        crop_size=32,
        cat_max_ratio=0.75,
        flip=True,
        color_jitter=0.0,
        ignore_index=255,
        mean=[0.5] * 3,
        std=[0.25] * 3,
    )
    image = torch.full((3, 10, 20), 128, dtype=torch.uint8)
    mask = torch.zeros(10, 20, dtype=torch.uint8)
    mask[:, 10:] = 1
    out_image, out_mask = transform(image, mask)
    # resized to 10x20 (within 20x20), padded to 32x32: image 0 -> (0 - 0.5) / 0.25, mask 255
    assert out_image.shape == (3, 32, 32) and out_mask.shape == (32, 32) and out_mask.dtype == torch.long
    assert (out_mask[10:] == 255).all() and (out_mask[:, 20:] == 255).all()
    assert out_image[:, 10:].eq(-2.0).all()
    assert out_image[:, :10, :20].allclose(torch.full((3, 10, 20), (128 / 255 - 0.5) / 0.25), atol=1e-6)
    assert sorted(out_mask[:10, :20].unique().tolist()) == [0, 1]
    assert (out_mask[:10, :20] == 1).sum() == 100


def _write_pair(root: Path, split: str, stem: str, image: np.ndarray, mask: np.ndarray | None) -> None:
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "masks" / split).mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / "images" / split / f"{stem}.png")
    if mask is not None:
        Image.fromarray(mask).save(root / "masks" / split / f"{stem}.png")


@pytest.fixture()
def broken_set(tmp_path: Path) -> Path:
    """Folder layout, 3 classes: one good pair and four bad ones."""
    image = np.full((8, 8, 3), 100, np.uint8)
    _write_pair(tmp_path, "val", "0_good", image, np.ones((8, 8), np.uint8))
    _write_pair(tmp_path, "val", "1_no_mask", image, None)
    _write_pair(tmp_path, "val", "2_small_mask", image, np.ones((4, 8), np.uint8))
    _write_pair(tmp_path, "val", "3_out_of_range", image, np.full((8, 8), 7, np.uint8))
    _write_pair(tmp_path, "val", "4_rgb_mask", image, np.ones((8, 8, 3), np.uint8))
    (tmp_path / "classes.txt").write_text("a\nb\nc\n")
    return tmp_path


def _folder_cfg(root: Path, *extra: str) -> Any:
    overrides = [f"data.root={root}", "data.val_split=val", "loss.class_weight=null", *TINY, *extra]  # 3 classes
    return resolve_config(load_config("demo/shapes_tiny", overrides))


def test_bad_pairs_are_reported_by_file_in_eval_and_counted(broken_set: Path, tmp_path: Path) -> None:
    cfg = _folder_cfg(broken_set)
    dataset = TASK.build_dataset(cfg, "test")
    items = [dataset[i] for i in range(len(dataset))]
    assert [item["valid"] for item in items] == [True, False, False, False, False]
    assert items[1]["error"] == "no mask"
    assert items[2]["error"] == "mask is 8x4 but the image is 8x8"
    assert items[3]["error"].startswith("labels out of range: [7] with 3 classes")
    assert items[4]["error"].startswith("mask has 3 channels")
    accumulator = TASK.metric(cfg, dataset)
    batch = collate_pairs(items)
    logits = torch.zeros(5, 3, *batch["image"].shape[-2:])
    logits[:, 1] = 1.0
    accumulator.update(logits, batch)
    metrics = accumulator.compute(_TwoProcesses(IoUAccumulator(5, dataset.classes)))
    assert metrics.values["failed"] == 4 and metrics.values["miou"] == 100.0
    summary = TASK.write_report(tmp_path / "report", metrics, cfg)
    assert (
        summary == "mIoU 100.00%, aAcc 100.00%, mAcc 100.00% over 1 images; 4 unusable pair(s) not scored, listed in "
        "metrics.json"
    )
    written = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert written["failed"][str(broken_set / "images" / "val" / "1_no_mask.png")] == "no mask"


def test_bad_pairs_are_replaced_and_logged_in_training(broken_set: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = _folder_cfg(broken_set, "data.train_split=val")
    dataset = TASK.build_dataset(cfg, "train")
    with caplog.at_level(logging.WARNING, logger="uniformer.data"):
        items = [dataset[i] for i in range(len(dataset))]
    assert all(item["valid"] for item in items) and all(item["mask"].shape == (32, 32) for item in items)
    assert items[0]["skipped"] == []
    bad = str(broken_set / "images" / "val" / "1_no_mask.png")
    assert items[1]["skipped"][0] == (bad, "no mask")
    assert f"skipping image/mask pair {bad} (no mask)" in caplog.text
    # every replacement chain ends at the one good pair: its mask (class 1, padded with 255) comes back
    assert all(set(item["mask"].unique().tolist()) <= {1, 255} for item in items)


def test_a_training_run_reports_its_skipped_pairs_as_image_mask_pairs(
    broken_set: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = _folder_cfg(broken_set, "data.train_split=val", f"output_dir={tmp_path / 'run'}")
    with caplog.at_level(logging.WARNING, logger="uniformer.engine"):
        result = train(cfg)
    assert "unreadable input(s) replaced" in result.summary and result.skipped_videos
    assert f"{len(result.skipped_videos)} unreadable image/mask pair(s) skipped:" in caplog.text
    assert "video" not in caplog.text


def test_ade20k_layout_reduces_the_zero_label(tmp_path: Path) -> None:
    for split in ("training", "validation"):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "annotations" / split).mkdir(parents=True)
        Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "images" / split / "ADE_1.jpg")
        Image.fromarray(np.array([[0, 1], [150, 255]], np.uint8)).save(tmp_path / "annotations" / split / "ADE_1.png")
    cfg = resolve_config(
        load_config(
            None,
            [
                "model.name=uniformer_small_upernet_ade20k",
                "data.format=ade20k",
                f"data.root={tmp_path}",
                "data.train_split=training",
                "data.val_split=validation",
            ],
        )
    )
    assert cfg.data.reduce_zero_label is True and cfg.model.num_classes == 150
    assert cfg.data.mean == pytest.approx([0.485, 0.456, 0.406])
    dataset = TASK.build_dataset(cfg, "test")
    assert dataset[0]["mask"].tolist() == [[255, 0], [149, 255]]
    assert dataset.classes[0] == "wall" and TASK.has_validation(cfg)


def test_segmentation_task_is_registered_for_segmentation_zoo_models() -> None:
    assert isinstance(get_task("segmentation"), SegmentationTask)
    assert task_for_model("uniformer_small_upernet_ade20k") is TASK


def test_tiny_run_trains_evaluates_and_predicts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = write_shapes(tmp_path / "shapes", {"train": 8, "val": 3}, size=32, seed=1)
    run = tmp_path / "run"
    overrides = [f"data.root={root}", f"output_dir={run}", *TINY]
    result = train(load_config("demo/shapes_tiny", overrides))
    assert result.steps == 2 and result.metric == "miou" and 0 <= result.best_metric <= 100
    final = run / "checkpoints" / "best.pt"
    report = evaluate(load_config("demo/shapes_tiny", [*overrides, f"eval.checkpoint={final}"]))
    # the evaluation of the saved weights is the validation the run did on the same 3 images
    assert report.metrics.primary == pytest.approx(result.best_metric)
    assert report.summary.startswith(f"mIoU {result.best_metric:.2f}%, aAcc ")
    rows = (run / "eval" / "per_class.csv").read_text().splitlines()
    assert rows[0].startswith("index,class,iou,acc") and [r.split(",")[1] for r in rows[1:]] == list(SHAPE_CLASSES)
    assert json.loads((run / "eval" / "metrics.json").read_text())["num_scored"] == 3

    # prediction: the task's setup and predict, fed by the engine's loop, at the image's own size
    cfg = resolve_config(load_config("demo/shapes_tiny", overrides))
    model = TASK.build_model(cfg, 6)
    state = torch.load(final, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    setup = TASK.prediction_setup(model_info(cfg.model.name), model, read_checkpoint(final), None)
    assert setup.labels == list(SHAPE_CLASSES) and setup.scale == [32, 32] and len(setup.palette) == 6
    image = root / "images" / "val" / "00000.png"
    run_loop = partial(feed, collate=TASK.collate, inputs=TASK.model_inputs, batch_size=2)
    missing = str(tmp_path / "missing.png")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        TASK.predict(model, [missing], setup, run_loop, topk=3)
    (prediction,) = TASK.predict(model, [str(image)], setup, run_loop, topk=3)
    assert prediction.label_map.shape == (32, 32) and prediction.error is None
    assert 0 < len(prediction.top) <= 3 and sum(s for _, _, s in prediction.top) <= 1 + 1e-9
    counts = np.bincount(prediction.label_map.ravel(), minlength=6) / 1024
    assert prediction.top[0][2] == pytest.approx(counts.max())
    overlay = write_overlay(image, prediction.label_map, setup.palette, tmp_path / "overlay.png", alpha=1.0)
    colours = np.asarray(Image.open(overlay))
    assert (colours == np.asarray(setup.palette, np.uint8)[prediction.label_map]).all()

    # the command line, from the zoo name and the run's checkpoint (reduced backbone and head widths)
    out = tmp_path / "predicted"
    assert (
        main(
            [
                "predict",
                str(image),
                "--model",
                cfg.model.name,
                "--checkpoint",
                str(final),
                "--out-dir",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    document = json.loads(capsys.readouterr().out)
    assert document["files"] == [str(out / "00000_labels.png"), str(out / "00000_overlay.png")]
    assert (np.asarray(Image.open(out / "00000_labels.png")) == prediction.label_map).all()
    shares = {p["label"]: p["share"] for p in document["predictions"][0]["top"]}
    assert shares == pytest.approx({name: share for _, name, share in prediction.top})
    overlay = Image.open(out / "00000_overlay.png")
    assert overlay.height == 32 and overlay.width > 32  # the legend to the right


SEGMENTATION_RECIPES = sorted(
    (Path(__file__).resolve().parents[2] / "src/uniformer/configs/segmentation").glob("[!_]*")
)


@pytest.fixture(scope="module")
def ade20k_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ade20k")
    for split in ("training", "validation"):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(root / "images" / split / "ADE_1.jpg")
        Image.fromarray(np.full((300, 400), 3, np.uint8)).save(root / "annotations" / split / "ADE_1.png")
    return root


@pytest.mark.parametrize("path", SEGMENTATION_RECIPES, ids=lambda p: p.stem)
def test_segmentation_recipe_builds_the_published_model_and_pipeline(path: Path, ade20k_root: Path) -> None:
    raw = load_config(path)
    assert raw.reproduces.startswith("Sense-X/UniFormer semantic_segmentation/")
    assert raw.data.mean is None and raw.data.std is None, "mean/std belong to the zoo entry"
    light = "/exp_light/" in raw.reproduces  # the light ImageNet files are on Google Drive only (model.checkpoint)
    assert raw.model.pretrained == (None if light else raw.model.name.split("_upernet")[0].split("_fpn")[0])
    assert raw.scheduler.warmup_steps == (1500 if "upernet" in path.name else 1000) and not raw.scheduler.warmup_epochs
    cfg = resolve_config(load_config(path, [f"data.root={ade20k_root}", "data.num_workers=0"]))
    info = model_info(cfg.model.name)
    with torch.device("meta"):
        model = TASK.build_model(cfg, cfg.model.num_classes)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert params == pytest.approx(info.params_m, rel=0.05), "the recipe builds the published architecture"
    assert (model.auxiliary_head is not None) == (info.decoder == "upernet")
    item = TASK.build_dataset(cfg, "train")[0]
    assert item["image"].shape == (3, 512, 512) and set(item["mask"].unique().tolist()) <= {2, 255}
    test_item = TASK.build_dataset(cfg, "test")[0]
    assert test_item["image"].shape == (3, 512, 683) and test_item["mask"].shape == (300, 400)  # (2048, 512) bound


def test_chance_is_the_miou_of_background_everywhere(tmp_path: Path) -> None:
    # 3 of 4 pixels background, 1 disc: background IoU 3/4, disc IoU 0, other classes absent -> mean 3/8
    Image.fromarray(np.array([[0, 0], [0, 1]], np.uint8)).save(tmp_path / "a.png")
    assert background_miou(tmp_path, len(SHAPE_CLASSES)) == pytest.approx(3 / 8)


def test_tiny_demo_writes_its_report_and_consistent_numbers(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    tiny = tuple(o for o in TINY if not o.startswith(("data.scale", "data.crop_size")))
    result = run_demo(out, train_images=8, val_images=2, overrides=(*tiny, "trainer.tensorboard=false"))
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert result["metric"] == "miou" and result["value"] == pytest.approx(metrics["miou"] / 100)
    assert result["chance"] == pytest.approx(background_miou(out / "data" / "masks" / "val", 6))
    assert json.loads((out / "result.json").read_text()) == result
    report = (out / "report.md").read_text()
    assert f"mIoU {metrics['miou']:.2f}%" in report and "![grid](grid.png)" in report
    assert "![00001](predictions/00001_overlay.png)" in report and (out / "predictions" / "00001_labels.png").is_file()
    # two held-out rows of input | truth | prediction, 64 x 64 each with 2-pixel gaps, enlarged 3 times
    assert Image.open(out / "grid.png").size == (3 * (3 * 64 + 4), 3 * 2 * (64 + 2))


def test_predictions_run_in_the_test_mode_of_the_weights_training_run(tmp_path: Path) -> None:
    config = {"data": {"scale": [32, 32]}, "eval": {"mode": "slide", "crop_size": 32, "stride": 16, "flip": True}}
    file = SimpleNamespace(config=config, class_names=list(SHAPE_CLASSES))
    model = build_segmentor("upernet", 6, {"depth": [1, 1, 1, 1], "embed_dim": [16, 32, 64, 128], "head_dim": 16})
    setup = TASK.prediction_setup(model_info("uniformer_small_upernet_ade20k"), model, file, None)
    assert setup.inference == InferenceConfig("slide", 32, 16, (1.0,), True)
    plain = TASK.prediction_setup(model_info("uniformer_small_upernet_ade20k"), model, None, None)
    assert plain.inference == InferenceConfig()  # no training run: whole-image inference
    seen = []
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(image)
    loop = partial(feed, collate=TASK.collate, inputs=TASK.model_inputs, batch_size=1)

    def run(m: torch.nn.Module, dataset: Any, maps: Any, options: dict[str, Any]) -> None:
        seen.append(options["test_cfg"])
        loop(m, dataset, maps, options=options)

    (prediction,) = TASK.predict(model.eval(), [str(image)], setup, run, topk=1)
    assert seen == [setup.inference] and prediction.label_map.shape == (40, 40)


def _random_segmentor(classes: int = 6) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_segmentor("upernet", classes, {"depth": [1, 1, 1, 1], "embed_dim": [16, 32, 64, 128], "head_dim": 16})
    return model.eval()


def _setup(classes: int = 6, scale: list[int] | None = None) -> PredictionSetup:
    info = model_info("uniformer_small_upernet_ade20k")
    names = [f"class {i}" for i in range(classes)]
    return PredictionSetup(names, palette_for(info, classes), scale or [96, 64], list(info.mean), list(info.std))


def _noise(path: Path, height: int, width: int, seed: int) -> str:
    pixels = np.random.default_rng(seed).integers(0, 256, (height // 4 + 1, width // 4 + 1, 3), dtype=np.uint8)
    Image.fromarray(pixels).resize((width, height), Image.BILINEAR).save(path)
    return str(path)


def test_a_prediction_does_not_depend_on_the_other_images_of_its_batch(tmp_path: Path) -> None:
    model, setup = _random_segmentor(), _setup()
    # at the test scale (96, 64): 64 x 90, 85 x 64, 64 x 90 and 64 x 96: batched together they would be padded
    paths = [
        _noise(tmp_path / f"{i}.png", h, w, i) for i, (h, w) in enumerate([(40, 56), (64, 48), (40, 56), (30, 45)])
    ]

    def predict(order: list[int], batch_size: int) -> dict[str, np.ndarray]:
        loop = partial(feed, collate=TASK.collate, inputs=TASK.model_inputs, batch_size=batch_size)
        found = TASK.predict(model, [paths[i] for i in order], setup, loop, topk=3)
        return {p.path: p.label_map for p in found}

    alone = {k: v for i in range(len(paths)) for k, v in predict([i], 1).items()}
    for order, batch_size in [([0, 1, 2, 3], 4), ([1, 3, 0, 2], 2), ([3, 2, 1, 0], 8)]:
        together = predict(order, batch_size)
        for path in paths:
            assert (together[path] == alone[path]).all(), (order, batch_size, path)


def test_one_bad_input_is_its_own_error_and_the_others_are_predicted(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    model, setup = _random_segmentor(), _setup(scale=[2048, 512])
    good = _noise(tmp_path / "good.png", 48, 64, 0)
    thin = _noise(tmp_path / "thin.png", 500, 3, 1)  # 3 pixels wide: 12 x 2048 at the test scale
    bomb = str(write_png_bomb(tmp_path / "bomb.png", 20000, 20000))  # a header that declares 400 million pixels
    broken = tmp_path / "broken.png"
    broken.write_bytes(Path(good).read_bytes()[:60])
    loop = partial(feed, collate=TASK.collate, inputs=TASK.model_inputs, batch_size=4)
    found = TASK.predict(model, [thin, good, bomb, str(broken)], setup, loop, topk=3)
    assert [p.path for p in found] == [thin, good, bomb, str(broken)]
    assert found[1].error is None and found[1].label_map.shape == (48, 64)
    assert "thin.png: too small: 3x500 is 12x2048 at the test scale [2048, 512]" in found[0].error
    assert "at least 32 pixels a side" in found[0].error
    assert "bomb.png: refused: " in found[2].error and "PIL.Image.MAX_IMAGE_PIXELS" in found[2].error
    assert "broken.png" in found[3].error and found[0].label_map is None and found[2].label_map is None


def test_a_folder_is_predicted_as_its_images_and_a_folder_without_any_is_refused_as_such(tmp_path: Path) -> None:
    model, setup = _random_segmentor(), _setup(scale=[2048, 512])
    folder = tmp_path / "photos"
    folder.mkdir()
    images = [_noise(folder / name, 48, 64, seed) for seed, name in enumerate(("b.png", "a.jpg"))]
    (folder / "notes.txt").write_text("not an image")
    (folder / "nested").mkdir()
    loop = partial(feed, collate=TASK.collate, inputs=TASK.model_inputs, batch_size=4)
    found = TASK.predict(model, [str(folder)], setup, loop, topk=3)
    assert [p.path for p in found] == sorted(images) and all(p.error is None for p in found)
    with pytest.raises(ValueError, match=r"nested: a folder without images \(.bmp, .jpeg, .jpg, .png, .webp\)"):
        TASK.predict(model, [str(folder / "nested")], setup, loop, topk=3)
    with pytest.raises(FileNotFoundError, match="input not found: .*missing"):
        TASK.predict(model, [str(tmp_path / "missing")], setup, loop, topk=3)


def test_the_label_map_is_taken_at_the_test_scale_and_resized_by_nearest_pixel() -> None:
    logits = torch.nn.functional.one_hot(torch.tensor([[0, 1, 2], [3, 4, 5], [6, 6, 6]]), 7).permute(2, 0, 1).float()
    # the padding row (label 6) is cropped; 2 x 3 labels -> 4 x 9 pixels, each label a 2 x 3 block
    assert (
        resized_label_map(logits, (2, 3), (4, 9)).tolist()
        == [[0] * 3 + [1] * 3 + [2] * 3] * 2 + [[3] * 3 + [4] * 3 + [5] * 3] * 2
    )


def test_a_photo_larger_than_the_test_scale_never_has_logits_at_its_own_size(tmp_path: Path) -> None:
    model, setup = _random_segmentor(150), _setup(150, scale=[64, 48])
    photo = _noise(tmp_path / "photo.jpg", 600, 800, 3)
    made = []
    interpolate = torch.nn.functional.interpolate

    def recording(*args: Any, **kwargs: Any) -> torch.Tensor:
        out = interpolate(*args, **kwargs)
        made.append(tuple(out.shape))
        return out

    loop = partial(feed, collate=TASK.collate, inputs=TASK.model_inputs, batch_size=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.nn.functional, "interpolate", recording)
        (prediction,) = TASK.predict(model, [photo], setup, loop, topk=3)
    assert prediction.label_map.shape == (600, 800) and made
    assert max(shape[-2] * shape[-1] for shape in made) <= 48 * 64


def test_an_overlay_taller_than_a_band_is_the_blend_of_every_pixel(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (600, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "tall.png")
    label_map = rng.integers(0, 6, (600, 40)).astype(np.uint8)
    palette = [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(6)]
    overlay = np.asarray(overlay_image(tmp_path / "tall.png", label_map, palette, alpha=0.3))
    expected = 0.7 * pixels.astype(np.float64) + 0.3 * np.asarray(palette, np.float64)[label_map]
    assert np.abs(overlay.astype(np.float64) - expected).max() <= 0.5 + 1e-4
