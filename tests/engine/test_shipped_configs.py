"""Every recipe under uniformer/configs/ loads, leaves the registry's facts to the registry, and builds the published
architecture and a data pipeline producing the zoo entry's clips (data.root pointed at synthetic data)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from timm.layers import DropPath

from uniformer import model_info
from uniformer.engine.config import load_config, resolve_config
from uniformer.tasks.classification import TASK

CONFIGS = Path(__file__).resolve().parents[2] / "src" / "uniformer" / "configs"
RECIPES = sorted(  # classification recipes (segmentation, pose, detection: tests/tasks/test_<task>_task.py)
    p
    for p in CONFIGS.rglob("*.yaml")
    if not p.name.startswith("_") and p.parent.name not in ("demo", "segmentation", "pose", "detection")
)
REGISTRY_FIELDS = (
    "num_frames",
    "stride",
    "sampling",
    "crop_size",
    "test_clips",
    "test_crops",
    "mean",
    "std",
    "crop_pct",
)


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    for split in ("train", "val"):
        for name in ("cat", "dog"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (80, 60), (40 * i, 90, 160)).save(folder / f"{i}.png")
    return root


def test_there_is_a_recipe_per_published_row() -> None:
    names = {p.stem for p in RECIPES}
    assert len([n for n in names if n.startswith(("k400", "k600"))]) == 13 + 8  # 8 light (XXS/XS) rows
    assert len([n for n in names if n.startswith("sthv")]) == 16
    assert {
        "in1k_uniformer_small",
        "in1k_uniformer_small_plus",
        "in1k_uniformer_base",
        "in1k_uniformer_base_ls",
        *(f"in1k_uniformer_xxs_{size}" for size in (128, 160, 192, 224)),
        "in1k_uniformer_xs_192",
        "in1k_uniformer_xs_224",
    } <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_builds_its_model_and_data(path: Path, motion_set: Path, image_root: Path) -> None:
    raw = load_config(path)
    assert raw.reproduces and raw.reproduces.startswith("Sense-X/UniFormer "), "each recipe names the official config"
    restated = [f for f in REGISTRY_FIELDS if raw.data[f] is not None]
    assert not restated, f"{path.name} restates what the model zoo knows: {restated}"
    info = model_info(raw.model.name)
    if info.task == "video":
        lists = [
            "data.format=kinetics",
            "data.train_list=train.txt",
            "data.val_list=val.txt",
            "data.labels_file=classes.txt",
        ]
        cfg = resolve_config(load_config(path, [f"data.root={motion_set}", *lists, "data.num_workers=0"]))
    else:
        cfg = resolve_config(load_config(path, [f"data.root={image_root}"]))
    with torch.device("meta"):  # the full-size architecture without allocating it
        model = TASK.build_model(cfg, info.num_classes)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert params == pytest.approx(info.params_m, rel=0.03), "the recipe builds the published architecture"
    deepest = max((m.drop_prob for m in model.modules() if isinstance(m, DropPath)), default=0.0)
    assert deepest == pytest.approx(cfg.model.drop_path_rate), "stochastic depth reaches the model"
    train_set, val_set = TASK.build_dataset(cfg, "train"), TASK.build_dataset(cfg, "val")
    size = info.release().img_size
    expected = (3, info.num_frames, size, size) if info.task == "video" else (3, size, size)
    assert tuple(train_set[0]["video"].shape) == expected
    assert tuple(val_set[0]["video"].shape) == expected
    assert cfg.data.flip is ("sthv" not in raw.model.name)  # direction-sensitive labels are never flipped
