"""The classification task's config sections (``data``, ``loss``, ``mixup``) and its view specification.

What the zoo already knows about a model (frames, stride, sampling, test views, crop size, mean/std) stays
``null`` in a recipe; :func:`clip_spec` turns a zoo entry, overlaid by whatever a config or a training
checkpoint sets, into the one :class:`ClipSpec` that config resolution, evaluation and prediction all use
(as torchvision's ``weights.transforms()`` belongs to the weights).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, List, Optional

from omegaconf import MISSING, DictConfig

from uniformer.data import DEFAULT_RAND_AUGMENT, FORMATS, IMAGE_FORMAT
from uniformer.models.zoo.catalog import model_info
from uniformer.models.zoo.schema import ModelInfo

__all__ = ["ClipSpec", "DataConfig", "LossConfig", "MixupConfig", "class_names", "clip_spec", "resolve_data"]


@dataclass
class DataConfig:
    """The dataset, the clip, the augmentation and the loader. ``null`` fields come from the model's zoo entry."""

    format: str = "kinetics"  # uniformer.data.FORMATS (webdataset: the lists are shard index.json files), or
    # "imagefolder" (root/<split>/<class>/<image>)
    root: str = MISSING
    train_list: Optional[str] = None  # relative to root
    val_list: Optional[str] = None  # relative to root; also what `uniformer eval` tests on
    labels_file: Optional[str] = None
    val_split: str = "val"  # split name for folder/imagefolder/ucf101/hmdb51 layouts
    split_id: int = 1
    extension: str = ".webm"
    num_frames: Optional[int] = None
    stride: Optional[int] = None
    sampling: Optional[str] = None
    target_fps: Optional[float] = None
    crop_size: Optional[int] = None
    short_side: Optional[int] = None
    test_clips: Optional[int] = None  # views of `uniformer eval` (the official multi-view test)
    test_crops: Optional[int] = None
    val_clips: int = 1  # views of the validation run after each epoch (cheaper than the full test)
    val_crops: int = 1
    mean: Optional[List[float]] = None
    std: Optional[List[float]] = None
    train_crop: str = "resized"  # videos: "resized" (Inception crop) or "jitter" (short-side jitter + crop)
    scale: List[float] = field(default_factory=lambda: [0.08, 1.0])  # videos (images: timm's default)
    ratio: List[float] = field(default_factory=lambda: [0.75, 4 / 3])  # videos
    jitter_scales: List[int] = field(default_factory=lambda: [256, 320])  # videos, train_crop=jitter
    flip: bool = True  # videos (images always flip, as timm's transform does)
    rand_augment: Optional[str] = DEFAULT_RAND_AUGMENT
    erasing_prob: float = 0.25
    color_jitter: float = 0.4  # images only
    interpolation: str = "bicubic"  # images only
    crop_pct: Optional[float] = None  # images only (eval resize = crop_size / crop_pct)
    repeated_aug: int = 1  # differently augmented copies of every sample per epoch
    repeated_aug_subsample: bool = False  # True: an epoch draws len(dataset) items (DeiT), else repeats x len
    backend: Optional[str] = None
    num_workers: int = 4
    max_retries: int = 10


@dataclass
class LossConfig:
    label_smoothing: float = 0.1


@dataclass
class MixupConfig:
    """Mixup/CutMix (off when ``prob`` is 0 or both alphas are 0); targets become soft, loss soft-target CE."""

    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    prob: float = 1.0
    switch_prob: float = 0.5


@dataclass(frozen=True)
class ClipSpec:
    """How a classification model sees its input at test time: the clip (videos), the crop and the views.

    ``num_frames``/``stride``/``sampling`` are ``None`` for image models; ``short_side=None`` resizes the short
    side to the crop (the official test); ``crop_pct`` is the image models' resize ratio before the centre crop.
    """

    task: str
    num_frames: int | None
    stride: int | None
    sampling: str | None
    crop_size: int
    short_side: int | None
    clips: int
    crops: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pct: float

    @property
    def views(self) -> int:
        return self.clips * self.crops

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(mean=list(self.mean), std=list(self.std))
        return data


# ClipSpec field -> DataConfig key, where the names differ
_DATA_KEYS = {"clips": "test_clips", "crops": "test_crops"}


def clip_spec(model: str | ModelInfo, overlay: Mapping[str, Any] | None = None) -> ClipSpec:
    """The test views of zoo model ``model``, with the non-null entries of ``overlay`` on top.

    ``overlay`` is either a ``data`` config section (keys ``num_frames``, ``test_clips``, ...) or a
    :meth:`ClipSpec.to_dict` stored with trained weights.
    """
    info = model if isinstance(model, ModelInfo) else model_info(model)
    release = info.release()
    video = info.task == "video"
    base: dict[str, Any] = dict(
        task=info.task,
        num_frames=info.num_frames if video else None,
        stride=info.frame_stride if video and info.sampling == "dense" else None,
        sampling=info.sampling if video else None,
        crop_size=release.img_size,
        short_side=None,
        clips=info.test_clips,
        crops=info.test_crops,
        mean=tuple(info.mean),
        std=tuple(info.std),
        crop_pct=release.crop_pct,
    )
    for key in base:
        if key == "task" or not overlay:
            continue
        value = overlay.get(_DATA_KEYS.get(key, key), overlay.get(key))
        if value is not None:
            base[key] = tuple(value) if key in ("mean", "std") else value
    if not video:
        base.update(num_frames=None, stride=None, sampling=None)
    elif base["sampling"] == "segment":
        base["stride"] = None
    return ClipSpec(**base)


def class_names(
    num_classes: int, *, stored: list[str] | None = None, dataset: Any = None, model: str | None = None
) -> list[str]:
    """The names of a classifier's outputs: those stored with the weights, else the dataset's, else the zoo
    entry's labels when its class count matches, else ``"class i"``. A list of the wrong length is skipped."""
    for names in (stored, getattr(dataset, "classes", None)):
        if names is not None and len(names) == num_classes:
            return list(names)
    if model is not None:
        info = model_info(model)
        if info.num_classes == num_classes:
            return info.labels
    return [f"class {i}" for i in range(num_classes)]


def _check_choice(value: Any, choices: tuple[str, ...], key: str) -> None:
    if value not in choices:
        raise ValueError(f"config: {key} must be one of {', '.join(choices)}; got {value!r}")


def resolve_data(cfg: DictConfig) -> None:
    """Fill ``data``'s null view settings from :func:`clip_spec` of ``model.name`` and check them, in place."""
    info = model_info(cfg.model.name)
    data = cfg.data
    spec = clip_spec(info, data)
    if info.task == "video":
        data.num_frames, data.sampling, data.stride = spec.num_frames, spec.sampling, spec.stride
    data.crop_size, data.crop_pct = spec.crop_size, spec.crop_pct
    data.test_clips, data.test_crops = spec.clips, spec.crops
    data.mean, data.std = list(spec.mean), list(spec.std)
    formats = FORMATS if info.task == "video" else (IMAGE_FORMAT,)
    _check_choice(data.format, formats, f"data.format (for the {info.task} model {info.name})")
    if data.crop_size % 32:
        raise ValueError(
            f"config: data.crop_size must be a multiple of 32 (UniFormer downsamples by 32); got {data.crop_size}"
        )
    for key in ("repeated_aug",):
        if data[key] < 1:
            raise ValueError(f"config: data.{key} must be > 0; got {data[key]}")
    if data.num_workers < 0:
        raise ValueError(f"config: data.num_workers must be >= 0; got {data.num_workers}")
    if not 0 <= cfg.loss.label_smoothing < 1:
        raise ValueError(f"config: loss.label_smoothing must be in [0, 1); got {cfg.loss.label_smoothing}")
