"""The detection recipes' training data: the 3x+MS crop policy (mmdet RandomCrop's box and mask rules) and the
aspect-ratio groups the batches are drawn from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from uniformer.engine import load_config, resolve_config, train
from uniformer.tasks.detection import TASK
from uniformer.tasks.detection.data import CocoDetection, RandomSizeCrop, collate_detection, train_transform

CONFIGS = Path(__file__).resolve().parents[2] / "src/uniformer/configs/detection"


def write_set(root: Path, sizes: dict[int, tuple[int, int]], boxes: dict[int, list[list[float]]]) -> Path:
    """Images (id -> (H, W)) whose pixel (y, x) holds x + y in every channel, square masks filling each box."""
    (root / "images").mkdir(parents=True)
    anns = []
    for image_id, (h, w) in sizes.items():
        pattern = (np.arange(h)[:, None] + np.arange(w)[None, :]) % 256
        Image.fromarray(np.repeat(pattern[..., None], 3, axis=2).astype(np.uint8)).save(root / f"images/{image_id}.png")
        for x, y, bw, bh in boxes.get(image_id, []):
            polygon = [x, y, x + bw, y, x + bw, y + bh, x, y + bh]
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": 1 + len(anns) % 2,
                         "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 0, "segmentation": [polygon]})  # fmt: skip
    data = {
        "images": [{"id": i, "file_name": f"{i}.png", "height": h, "width": w} for i, (h, w) in sizes.items()],
        "annotations": anns,
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    (root / "instances.json").write_text(json.dumps(data))
    return root / "instances.json"


class _FixedCrop(RandomSizeCrop):
    """The crop's kernels on one chosen window (top, left, height, width)."""

    def __init__(self, top: int, left: int, height: int, width: int) -> None:
        super().__init__(1, 1)
        self.window = {"top": top, "left": left, "height": height, "width": width}

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return self.window


def test_the_crop_clips_boxes_drops_those_left_outside_with_their_masks_and_cuts_masks_in_step(tmp_path: Path) -> None:
    # x y w h on a 60 x 80 image; the window is rows 20..50, columns 0..50
    boxes = [[10, 10, 20, 30], [40, 5, 30, 20], [60, 25, 15, 15], [5.5, 45.25, 10, 10]]
    ann = write_set(tmp_path, {1: (60, 80)}, {1: boxes})
    plain = CocoDetection(ann, tmp_path / "images", train=True, flip=0.0)[0]
    item = CocoDetection(ann, tmp_path / "images", train=True, flip=0.0, crop=_FixedCrop(20, 0, 30, 50))[0]
    image, target = item["image"], item["target"]
    assert image.shape == (3, 30, 50)
    torch.testing.assert_close(image, plain["image"][:, 20:50, 0:50])  # the pixels at y + x = their old place
    expected = torch.tensor(
        [
            [10.0, 0.0, 30.0, 20.0],  # top clipped (y 10..40 -> -10..20)
            [40.0, 0.0, 50.0, 5.0],  # right and top clipped
            # the third box (x 60..75) lies right of the window: removed with its label and mask
            [5.5, 25.25, 15.5, 30.0],  # bottom clipped, fractional coordinates kept
        ]
    )
    torch.testing.assert_close(target["boxes"], expected)
    assert target["labels"].tolist() == plain["target"]["labels"][[0, 1, 3]].tolist() == [1, 2, 2]
    assert target["masks"].shape == (3, 30, 50)
    torch.testing.assert_close(target["masks"], plain["target"]["masks"][[0, 1, 3], 20:50, 0:50])


def test_a_crop_without_any_box_is_kept_and_trains(tmp_path: Path) -> None:
    ann = write_set(tmp_path, {1: (60, 80)}, {1: [[60, 40, 15, 15]]})
    item = CocoDetection(ann, tmp_path / "images", train=True, flip=0.0, crop=_FixedCrop(0, 0, 30, 40))[0]
    target = item["target"]
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,) and target["masks"].shape == (0, 30, 40)
    overrides = [f"data.root={tmp_path}", "data.train_ann=instances.json", "data.train_images=images"]
    cfg = resolve_config(load_config("demo/shapes_detection_tiny", overrides))
    torch.manual_seed(0)
    losses = TASK.build_model(cfg, 2).train()([item["image"]], [target])  # mmdet allow_negative_crop=True
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_mask"] == 0


def test_crop_sizes_and_offsets_are_drawn_as_mmdet_absolute_range() -> None:
    crop = RandomSizeCrop(384, 600)
    image = tv_tensors.Image(torch.zeros(1, 500, 1000, dtype=torch.uint8))
    heights, widths = set(), set()
    for seed in range(200):
        torch.manual_seed(seed)
        p = crop.make_params([image])
        assert 384 <= p["height"] <= 500 and 384 <= p["width"] <= 600  # h in [min(H, 384), min(H, 600)]
        assert 0 <= p["top"] <= 500 - p["height"] and 0 <= p["left"] <= 1000 - p["width"]
        heights.add(p["height"]), widths.add(p["width"])
    assert len(heights) > 50 and len(widths) > 100
    small = tv_tensors.Image(torch.arange(300 * 200, dtype=torch.float32).reshape(1, 300, 200))
    assert torch.equal(crop(small), small)  # smaller than the least crop: kept whole
    with pytest.raises(ValueError, match="0 < min_size <= max_size"):
        RandomSizeCrop(600, 384)


def test_the_policy_resizes_the_short_side_to_a_stated_scale_before_cropping() -> None:
    policy = train_transform(1.0, [400, 500, 600], [10_000, 10_000], max_size=1333)  # a crop larger than any image
    image = tv_tensors.Image(torch.zeros(3, 300, 450, dtype=torch.uint8))
    shapes = set()
    for seed in range(30):
        torch.manual_seed(seed)
        shapes.add(tuple(policy(image).shape[-2:]))
    assert shapes == {(400, 600), (500, 750), (600, 900)}
    torch.manual_seed(0)
    assert policy(tv_tensors.Image(torch.zeros(3, 300, 1200))).shape[-2:] == (333, 1333)  # long side bound
    half = train_transform(0.5, [400], [384, 600], max_size=1333)
    applied = []
    for seed in range(40):
        torch.manual_seed(seed)
        applied.append(tuple(half(image).shape[-2:]) != (300, 450))
    assert 10 < sum(applied) < 30


def _recipe_set(cfg_name: str, tmp_path: Path) -> CocoDetection:
    write_set(tmp_path, {1: (60, 80), 2: (90, 40)}, {1: [[10, 10, 20, 30]], 2: [[5, 5, 20, 20]]})
    overrides = [f"data.root={tmp_path}", "data.train_ann=instances.json", "data.train_images=images"]
    cfg = resolve_config(load_config(CONFIGS / cfg_name, overrides))
    return TASK.build_dataset(cfg, "train")


@pytest.mark.parametrize("size", ["small", "base"])
@pytest.mark.parametrize("detector", ["mask_rcnn", "cascade_mask_rcnn"])
def test_the_3x_recipes_build_the_crop_policy_and_the_1x_ones_do_not(detector: str, size: str, tmp_path: Path) -> None:
    train_set = _recipe_set(f"{detector}_uniformer_{size}_h14_coco_3x.yaml", tmp_path / "3x")
    flip, policy = train_set.transform.transforms
    assert isinstance(flip, v2.RandomHorizontalFlip) and flip.p == 0.5
    assert isinstance(policy, v2.RandomApply) and policy.p == 0.5
    resize, crop = policy.transforms[0].transforms
    assert isinstance(resize, v2.RandomShortestSize) and list(resize.min_size) == [400, 500, 600]
    assert resize.max_size == 1333 and isinstance(crop, RandomSizeCrop) and (crop.min_size, crop.max_size) == (384, 600)
    one_x = _recipe_set(f"mask_rcnn_uniformer_{size}_h14_coco_1x.yaml", tmp_path / "1x")
    (only_flip,) = one_x.transform.transforms
    assert isinstance(only_flip, v2.RandomHorizontalFlip)


def test_bad_crop_settings_are_named(tmp_path: Path) -> None:
    path = CONFIGS / "mask_rcnn_uniformer_small_h14_coco_3x.yaml"
    with pytest.raises(ValueError, match=r"data.crop_size must be \[min, max\]"):
        resolve_config(load_config(path, ["data.root=/x", "data.crop_size=[600,384]"]))
    with pytest.raises(ValueError, match="data.crop_prob must be a probability"):
        resolve_config(load_config(path, ["data.root=/x", "data.crop_prob=2"]))


def test_training_batches_hold_images_of_one_aspect_ratio_class(tmp_path: Path, monkeypatch) -> None:
    sizes = {1: (60, 80), 2: (90, 40), 3: (50, 70), 4: (80, 60), 5: (40, 40), 6: (64, 96)}  # 40 x 40 is not wide
    write_set(tmp_path, sizes, {i: [[5, 5, 20, 20]] for i in sizes})
    overrides = [f"data.root={tmp_path}", "data.train_ann=instances.json", "data.train_images=images"]
    overrides += ["data.val_ann=none.json", "data.flip=0", "trainer.batch_size=3", "trainer.max_epochs=1"]
    overrides += ["data.num_workers=0"]  # the patched collate runs in this process
    cfg = resolve_config(load_config("demo/shapes_detection_tiny", overrides))
    assert TASK.batch_groups(cfg, TASK.build_dataset(cfg, "train")) == [1, 0, 1, 0, 0, 1]  # mmdet: w / h > 1
    cfg.data.group_by_aspect = False
    assert TASK.batch_groups(cfg, TASK.build_dataset(cfg, "train")) is None
    wide: list[set[bool]] = []

    def collate(items: Any) -> dict[str, Any]:
        wide.append({item["image"].shape[-1] > item["image"].shape[-2] for item in items})
        return collate_detection(items)

    monkeypatch.setattr(TASK, "collate", collate)
    result = train(load_config("demo/shapes_detection_tiny", [*overrides, f"output_dir={tmp_path / 'run'}"]))
    assert result.steps == 2 and sorted(tuple(w) for w in wide) == [
        (False,),
        (True,),
    ]  # the engine drew each batch from one group


def _edit(ann: Path, change: Any) -> Path:
    data = json.loads(ann.read_text())
    change(data)
    ann.write_text(json.dumps(data))
    return ann


def test_broken_masks_and_orphans_are_left_out_at_load_and_reported_by_id(tmp_path: Path, caplog) -> None:
    boxes = {1: [[5, 5, 20, 20], [30, 5, 20, 20], [5, 30, 20, 20], [30, 30, 20, 20], [10, 10, 30, 30]]}
    ann = write_set(tmp_path, {1: (60, 80), 2: (60, 80)}, boxes)

    def break_masks(data: dict) -> None:
        anns = data["annotations"]
        anns[0]["segmentation"] = [[5, 5, 25]]  # a 3-value polygon
        anns[1]["segmentation"] = [[]]  # an empty polygon
        anns[2]["segmentation"] = {"size": [10, 10], "counts": [100]}  # an RLE of another image's size
        anns[3]["segmentation"] = {"size": [60, 80], "counts": [4000]}  # run lengths not covering the image
        anns.append({**anns[4], "id": 77, "image_id": 9})  # an image not listed

    _edit(ann, break_masks)
    with caplog.at_level("WARNING"):
        data = CocoDetection(ann, tmp_path / "images", train=True, flip=0.0)
    r = data.report
    assert (r.annotations, r.bad_mask, r.orphans) == (1, 4, 1)
    for ann_id, reason in [(1, "polygon 0 has 3 values"), (2, "polygon 0 has 0 values"), (3, "RLE size [10, 10]"),
                           (4, "counts cover 4000 pixels"), (77, "image_id 9 is not in images")]:  # fmt: skip
        assert f"annotation {ann_id}" in caplog.text and reason in caplog.text
    item = data[0]  # training draws the image without error: only the good annotation is a target
    assert item["target"]["masks"].shape == (1, 60, 80) and item["target"]["boxes"].shape == (1, 4)
    assert "with a broken mask" in r.summary()
    # the evaluation's ground truth is drawn by pycocotools too: the broken masks have left it
    test = CocoDetection(ann, tmp_path / "images", train=False)
    assert sorted(test.coco.anns) == [5, 77]
    assert all(test.coco.annToMask(a).shape == (60, 80) for a in test.coco.anns.values() if a["image_id"] == 1)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["annotations"][0].update(bbox=["5", "5", "20", "20"]), r"annotation 1: field 'bbox' must be"),
        (lambda d: d["images"].append(dict(d["images"][0])), r"images\[1\] repeats the image id 1 of images\[0\]"),
        (lambda d: d.update(annotations={"id": 1}), r"field 'annotations' must be a list"),
        (lambda d: d["annotations"].append(3), r"annotations\[1\] is not an object with an 'id'"),
    ],
)
def test_malformed_annotation_files_are_errors_naming_the_file_and_field(tmp_path: Path, change, message) -> None:
    ann = _edit(write_set(tmp_path, {1: (60, 80)}, {1: [[5, 5, 20, 20]]}), change)
    with pytest.raises(ValueError, match=rf"instances.json: .*{message}"):
        CocoDetection(ann, tmp_path / "images", train=True)


def test_a_file_that_is_not_a_coco_object_is_named(tmp_path: Path) -> None:
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ValueError, match=r"list.json: not a COCO-format annotation file .*holds a list"):
        CocoDetection(tmp_path / "list.json", tmp_path, train=True)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match=r"annotation file .*broken.json: not a readable JSON file"):
        CocoDetection(tmp_path / "broken.json", tmp_path, train=True)
