"""What the zoo knows about a model: its dataset, its releases (published metrics, cost, weight sources) and how
it is built.

A :class:`ModelInfo` is data; the one piece of code it carries is its :class:`ModelKind`, the builder its family
module names, so that :func:`uniformer.create_model` builds any entry without knowing its task.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

import torch.nn as nn

from uniformer.labels import load_labels, load_palette
from uniformer.models.zoo.datasets import DATASETS
from uniformer.models.zoo.sources import Source

if TYPE_CHECKING:
    from uniformer.models.checkpoint import CheckpointFile

__all__ = ["Task", "Decoder", "Detector", "Release", "ModelKind", "ModelInfo", "METRIC_LABELS"]

Task = Literal["image", "video", "segmentation", "pose", "detection"]
Decoder = Literal["upernet", "fpn"]
Detector = Literal["mask_rcnn", "cascade_mask_rcnn"]

# How each published metric is named in tables and ``uniformer info``. ``top1``: ImageNet / video top-1 (%);
# ``miou``/``ms_miou``: ADE20K single- / multi-scale + flip mIoU; ``box_ap``/``mask_ap``: COCO val2017 AP (%);
# ``ap`` .. ``ar``: COCO keypoint val AP, AP50, AP75, AP (medium), AP (large), AR.
METRIC_LABELS: Mapping[str, str] = {
    "top1": "top-1",
    "miou": "mIoU",
    "ms_miou": "multi-scale mIoU",
    "box_ap": "box AP",
    "mask_ap": "mask AP",
    "ap": "AP",
    "ap50": "AP50",
    "ap75": "AP75",
    "apm": "APm",
    "apl": "APl",
    "ar": "AR",
}


@dataclass(frozen=True)
class Release:
    """One released (or published) set of weights of a model at one input size.

    ``sources``: where the weights can be downloaded, in preference order (empty: not released); the first is
    one a published page shows exists. ``metrics``: the published numbers, keys of :data:`METRIC_LABELS`
    (``{"top1": 82.9}``, ``{"miou": .., "ms_miou": ..}``, ``{"box_ap": .., "mask_ap": ..}``, ``{"ap": .., ...}``);
    empty for a model nobody published. ``input_hw``: the (H, W) input the published GFLOPs count (otherwise
    ``img_size`` square).
    """

    img_size: int
    gflops: float
    sources: tuple[Source, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
    crop_pct: float = 0.875
    input_hw: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.metrics) - set(METRIC_LABELS))
        if unknown:
            raise ValueError(f"Release.metrics: unknown metric(s) {unknown}; known: {', '.join(METRIC_LABELS)}")
        if not isinstance(self.sources, tuple):
            raise TypeError(f"Release.sources: expected a tuple of sources, got {type(self.sources).__name__}")

    @property
    def released(self) -> bool:
        return bool(self.sources)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON output): the fields, each source with its ``kind`` (``hub``, ``url``, ``drive``)."""
        data = asdict(self)
        data["sources"] = [{"kind": source.kind, **asdict(source)} for source in self.sources]
        return data


# (entry, class count, constructor overrides, the checkpoint being loaded or None) -> the model
Builder = Callable[["ModelInfo", int, dict[str, Any], "CheckpointFile | None"], nn.Module]


@dataclass(frozen=True)
class ModelKind:
    """How one kind of zoo model is built and given weights.

    ``build`` makes the module; ``head`` is :func:`~uniformer.models.checkpoint.load_state`'s rule for the
    classifier (``"auto"``: a classifier of another size is replaced, ``"keep"``: the weights must fit);
    ``inflates_image_weights``: image weights are inflated into it, so they do not set its class count.
    ``old_run_model_args``: for training checkpoints written before tasks recorded their constructor arguments
    with the weights (:attr:`~uniformer.models.checkpoint.CheckpointFile.model_args`), those their run's config
    held.
    """

    build: Builder
    head: Literal["auto", "keep"] = "keep"
    inflates_image_weights: bool = False
    old_run_model_args: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None


@dataclass(frozen=True)
class ModelInfo:
    """Everything known about a zoo model. ``releases[0]`` is the default (224 px) one."""

    name: str
    task: Task
    dataset: str
    title: str
    model_args: Mapping[str, Any]
    releases: tuple[Release, ...]
    params_m: float
    kind: ModelKind = field(repr=False, compare=False)
    num_frames: int | None = None
    frame_stride: int | None = None
    sampling: Literal["dense", "segment"] | None = None
    test_clips: int = 1
    test_crops: int = 1
    pretrain: str | None = None
    notes: str = ""
    decoder: Decoder | None = None  # segmentation: the head on the dense backbone
    detector: Detector | None = None  # detection: the detector around the dense backbone

    @property
    def num_classes(self) -> int:
        return DATASETS[self.dataset].num_classes

    @property
    def mean(self) -> tuple[float, float, float]:
        return DATASETS[self.dataset].mean

    @property
    def std(self) -> tuple[float, float, float]:
        return DATASETS[self.dataset].std

    @property
    def labels(self) -> list[str]:
        return load_labels(self.dataset)

    @property
    def palette(self) -> list[tuple[int, int, int]]:
        """The dataset's standard class colours (segmentation datasets)."""
        return load_palette(self.dataset)

    @property
    def test_views(self) -> int:
        return self.test_clips * self.test_crops

    @property
    def frames_label(self) -> str:
        """``16x4`` (frames x stride, dense sampling), ``16`` (segments) or ``-`` for images."""
        if self.num_frames is None:
            return "-"
        return f"{self.num_frames}x{self.frame_stride}" if self.frame_stride else str(self.num_frames)

    def release(self, img_size: int | None = None) -> Release:
        """The release at ``img_size`` (default: the first)."""
        if img_size is None:
            return self.releases[0]
        for rel in self.releases:
            if rel.img_size == img_size:
                return rel
        sizes = ", ".join(str(r.img_size) for r in self.releases)
        raise ValueError(f"{self.name} has no release at img_size={img_size}; released sizes: {sizes}")

    def input_shape(self, img_size: int | None = None, batch_size: int = 1) -> tuple[int, ...]:
        """Shape of one view: (B, 3, H, W) for images, (B, 3, T, H, W) for videos; segmentation: the input the
        published GFLOPs count."""
        release = self.release(img_size)
        size = release.img_size
        if self.task == "video":
            return (batch_size, 3, self.num_frames or 0, size, size)
        return (batch_size, 3, *(release.input_hw or (size, size)))

    def to_dict(self) -> dict[str, Any]:
        """Plain-data view (for JSON output and config defaults); the builder is left out."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "kind"}
        data.update(model_args=dict(self.model_args), releases=[r.to_dict() for r in self.releases])
        data.update(num_classes=self.num_classes, mean=self.mean, std=self.std, test_views=self.test_views)
        return data
