"""The pose task's config sections (``data``, ``eval`` fields) and their resolution.

Defaults are the official UniFormer COCO settings (Sense-X/UniFormer ``pose_estimation/exp/top_down_*/config.py``
and mmpose 0.16 ``TopDownCocoDataset``): crops of the zoo entry's size, heatmaps at stride 4, sigma 2 at
256 x 192 and 3 above, the training augmentation of :mod:`.transforms`, ImageNet mean/std, and the test on a
detector's person boxes (``data.val_boxes``) with flip test, rescoring (0.2) and OKS-NMS (0.9).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from omegaconf import MISSING, DictConfig

from uniformer.models.zoo.catalog import model_info

__all__ = ["DataConfig", "HeadConfig", "PoseEvalConfig", "resolve"]


@dataclass
class DataConfig:
    """Where the COCO-format keypoints and images are, and how crops are made and augmented."""

    root: str = MISSING
    train_ann: str = "annotations/person_keypoints_train2017.json"  # relative to root
    train_images: str = "train2017"
    val_ann: str = "annotations/person_keypoints_val2017.json"  # also what `uniformer eval` tests on
    val_images: str = "val2017"
    val_boxes: Optional[str] = None  # COCO detection results (person boxes) to test on; null: ground-truth boxes
    det_bbox_thr: float = 0.0  # detections below this score are not tested
    input_size: Optional[List[int]] = None  # crop (H, W); default: the zoo entry's (256 x 192, 384 x 288, ...)
    sigma: Optional[float] = None  # target Gaussian; default 2 at 256 x 192 and below, 3 above (official)
    flip: bool = True
    half_body_prob: float = 0.3
    half_body_min_keypoints: int = 8
    scale_factor: float = 0.5
    rotation_factor: float = 40.0
    rotation_prob: float = 0.6
    center_shift_prob: float = 0.3
    mean: Optional[List[float]] = None  # 0-1 units; default: the zoo entry's
    std: Optional[List[float]] = None
    num_workers: int = 2  # workers_per_gpu=2
    max_retries: int = 10  # training: replacement persons tried for an unreadable image before giving up


@dataclass
class HeadConfig:
    """Width of the heatmap head's deconvolutions (official 256)."""

    channels: int = 256


@dataclass
class PoseEvalConfig:
    """The pose fields of the ``eval`` section (validation during training uses them too, as mmpose does)."""

    flip_test: bool = True  # average with the mirrored crop's heatmaps, shifted one pixel (shift_heatmap=True)
    vis_thr: float = 0.2  # keypoints above this confidence make a person's score
    oks_thr: float = 0.9  # OKS-NMS threshold within an image


def resolve(cfg: DictConfig) -> None:
    """Fill the ``null`` data settings from the zoo entry of ``model.name`` and check them, in place."""
    info = model_info(cfg.model.name)
    data = cfg.data
    if data.input_size is None:
        data.input_size = list(info.release().input_hw or (info.release().img_size,) * 2)
    if len(data.input_size) != 2 or min(data.input_size) < 32 or any(v % 32 for v in data.input_size):
        raise ValueError(
            "config: data.input_size must be (H, W), multiples of 32 (the heatmaps are 1/4 of it); "
            f"got {list(data.input_size)}"
        )
    if data.sigma is None:
        data.sigma = 2.0 if data.input_size[0] <= 256 else 3.0
    if data.sigma <= 0:
        raise ValueError(f"config: data.sigma must be > 0; got {data.sigma}")
    data.mean = list(data.mean if data.mean is not None else info.mean)
    data.std = list(data.std if data.std is not None else info.std)
    for key in ("half_body_prob", "rotation_prob", "center_shift_prob"):
        if not 0 <= data[key] <= 1:
            raise ValueError(f"config: data.{key} must be in [0, 1]; got {data[key]}")
    if not 0 <= data.scale_factor < 1:
        raise ValueError(f"config: data.scale_factor must be in [0, 1); got {data.scale_factor}")
    if data.num_workers < 0:
        raise ValueError(f"config: data.num_workers must be >= 0; got {data.num_workers}")
    if cfg.head.channels <= 0:
        raise ValueError(f"config: head.channels must be > 0; got {cfg.head.channels}")
    if not 0 <= cfg.eval.vis_thr < 1 or not 0 < cfg.eval.oks_thr <= 1:
        raise ValueError(
            "config: eval.vis_thr must be in [0, 1) and eval.oks_thr in (0, 1]; "
            f"got {cfg.eval.vis_thr}, {cfg.eval.oks_thr}"
        )
