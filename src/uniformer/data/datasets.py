"""Video datasets for training and the official multi-view test, robust to broken files.

Train mode yields one random clip per video. When a video cannot be read, the item is replaced by another video
chosen deterministically from (seed, index, attempt), at most ``max_retries`` times, and every failure travels
with the item in ``skipped`` so the training loop (possibly in another process) can count and report it:
nothing is dropped silently. Test mode yields every (clip, crop) view of every video; a view of a broken video
comes back with ``valid=False``, a zero clip and the reason in ``error``, so evaluation can list the failures
instead of quietly averaging over fewer videos.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from PIL import Image

from uniformer.data.decode import VideoSource, frame_folder_files, read_frames, video_info
from uniformer.data.images import DecodeError, read_image
from uniformer.data.items import Item, RetryingDataset, collate_items, long_tensor
from uniformer.data.lists import VideoList, VideoRecord, read_video_list
from uniformer.data.sampling import SamplingMode, clip_indices
from uniformer.data.transforms import (
    DEFAULT_RAND_AUGMENT,
    IMAGE_RAND_AUGMENT,
    CropMode,
    EvalTransform,
    TrainTransform,
)


class ClipItem(Item):
    """One dataset item, the same for videos and images (an image is a one-view item whose ``video`` is
    ``(C, H, W)``); :func:`collate_videos` batches it."""

    video: torch.Tensor  # float (C, T, H, W) clip, or (C, H, W) image
    label: int  # -1 when unknown
    view: int  # 0 in train mode; clip * num_crops + crop in test mode


ClipTransform = Callable[..., torch.Tensor]
"""``transform(frames_uint8_THWC, crop_idx) -> float (C, T, H, W)``; :class:`TrainTransform` ignores ``crop_idx``."""


class VideoDataset(RetryingDataset):
    """Clips of the videos in a :class:`VideoList`, as dicts ready for :func:`collate_videos`.

    Items are :class:`ClipItem` s: the clip, its label and view, in the :class:`~uniformer.data.items.Item`
    envelope (``index`` is the number of the video read, a replacement's when the asked video failed). A broken
    video is replaced in train mode and an invalid zero clip in test mode
    (:class:`~uniformer.data.items.RetryingDataset`); replacements are drawn by :meth:`replacement`.

    Args:
        videos: the split, from :func:`uniformer.data.read_video_list` (or a list of :class:`VideoRecord`).
        transform: :class:`TrainTransform` for training, :class:`EvalTransform` for testing; it must have
            ``crop_size`` when ``mode="test"`` (to shape the zero clip of a failed view).
        mode: ``"train"`` (one random view per video) or ``"test"`` (all ``num_clips * num_crops`` views).
        num_frames, stride, sampling, target_fps: the clip (see :func:`uniformer.data.clip_indices`);
            ``target_fps=None`` ignores the videos' frame rate, as the released UniFormer models did.
        num_clips, num_crops: temporal and spatial test views (official: 4 x 3 or 4 x 1 for Kinetics,
            2 x 3 or 1 x 3 for Something-Something).
        backend: decoder backend (see :func:`uniformer.data.read_frames`).
        max_retries: replacement videos tried in train mode before giving up with an error.
        seed: seeds the choice of replacement videos.
    """

    noun = "video"
    unreadable = (Exception,)  # see load

    def __init__(
        self,
        videos: VideoList | Sequence[VideoRecord],
        transform: ClipTransform,
        *,
        mode: str = "train",
        num_frames: int = 16,
        stride: int | None = 4,
        sampling: SamplingMode = "dense",
        num_clips: int = 1,
        num_crops: int = 1,
        target_fps: float | None = None,
        backend: str | None = None,
        max_retries: int = 10,
        seed: int = 0,
    ) -> None:
        if mode not in ("train", "test"):
            raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")
        if sampling not in ("dense", "segment"):
            raise ValueError(f"sampling must be 'dense' or 'segment', got {sampling!r}")
        if sampling == "dense" and (stride is None or stride < 1):
            raise ValueError(f"dense sampling needs stride >= 1, got {stride}")
        if num_clips < 1 or num_crops < 1:
            raise ValueError(f"num_clips and num_crops must be >= 1, got {num_clips}, {num_crops}")
        super().__init__(train=mode == "train", max_retries=max_retries, seed=seed)
        if mode == "test" and not hasattr(transform, "crop_size"):
            raise ValueError("test mode needs a transform with a crop_size attribute (EvalTransform)")
        video_list = videos if isinstance(videos, VideoList) else VideoList(list(videos))
        if not video_list.records:
            raise ValueError("the dataset holds no videos")
        self.records = video_list.records
        self.classes = video_list.classes
        self.num_classes = video_list.num_classes
        self.transform = transform
        self.mode = mode
        self.num_frames, self.stride, self.sampling = num_frames, stride, sampling
        self.num_clips, self.num_crops = num_clips, num_crops
        self.target_fps = target_fps
        self.backend = backend

    @property
    def num_videos(self) -> int:
        """Videos in the list (a test-mode dataset has ``num_videos * num_views`` items)."""
        return len(self.records)

    @property
    def num_views(self) -> int:
        """Views per video: ``num_clips * num_crops`` in test mode, 1 in train mode."""
        return self.num_clips * self.num_crops if self.mode == "test" else 1

    def __len__(self) -> int:
        return self.num_videos * self.num_views

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(videos={self.num_videos}, mode={self.mode!r}, views={self.num_views}, "
            f"clip={self.num_frames}x{self.stride if self.sampling == 'dense' else 'seg'}, classes={self.num_classes})"
        )

    def _frame_count_and_fps(self, source: VideoSource) -> tuple[int, float]:
        if isinstance(source, str) and os.path.isdir(source):
            return len(frame_folder_files(source)), 0.0
        info = video_info(source)
        return info.num_frames, info.fps

    @property
    def num_sources(self) -> int:
        return self.num_videos

    def source_path(self, index: int) -> str:
        return self.records[index].name

    def locate(self, item: int) -> tuple[int, int]:
        return divmod(item, self.num_views)

    def load(self, index: int, view: int) -> torch.Tensor:
        """The clip's uint8 frames. The decoders are third-party code fed untrusted files: a damaged file can
        surface as almost any exception type, and none of them may stop a run, hence :attr:`unreadable`. A video
        in a shard is fetched with one byte-range read and decoded from memory."""
        record = self.records[index]
        source = record.source()
        count, fps = self._frame_count_and_fps(source)
        start = 0
        if record.span is not None:
            start, end = record.span
            if not 0 <= start < end <= count:
                raise ValueError(f"{record.name}: frames {start}..{end - 1} lie outside its {count} frames")
            count = end - start
        use_fps = self.target_fps is not None and fps > 0
        indices = clip_indices(
            count,
            num_frames=self.num_frames,
            stride=self.stride,
            mode=self.sampling,
            train=self.mode == "train",
            clip_idx=view // self.num_crops,
            num_clips=self.num_clips,
            fps=fps if use_fps else 30.0,
            target_fps=self.target_fps if use_fps else 30.0,  # type: ignore[arg-type]
        )
        return read_frames(source, [start + i for i in indices], backend=self.backend)

    def build(self, index: int, view: int, loaded: torch.Tensor) -> dict[str, Any]:
        video = self.transform(loaded) if self.train else self.transform(loaded, view % self.num_crops)
        return {"video": video, "label": self.records[index].label, "view": view}

    def blank(self, index: int, view: int) -> dict[str, Any]:
        size = self.transform.crop_size  # type: ignore[attr-defined]
        return {"video": torch.zeros(3, self.num_frames, size, size), "label": self.records[index].label, "view": view}

    def reason(self, exc: Exception) -> str:
        return f"{type(exc).__name__}: {exc}"

    def replacement(self, index: int, attempt: int) -> int:
        """Python's string-seeded draw over ``(seed, index, attempt)``: the video datasets drew replacements so
        before the other tasks existed, and it is kept so that their runs replay with the same videos."""
        return random.Random(f"{self.seed}/{index}/{attempt}").randrange(self.num_videos)


class ImageDataset(RetryingDataset):
    """Images as :class:`ClipItem` s (one view each), so that training, evaluation and prediction treat images
    and videos alike. In test mode an unreadable image comes back as an invalid item with its reason (a zero
    image of ``input_size``); in train mode it is replaced up to ``max_retries`` times, and with the default of
    none it is an error naming the file.

    ``transform`` takes a PIL image (timm's transforms resize with PIL) holding the pixels of
    :func:`~uniformer.data.images.read_image`.
    """

    noun = "image"
    unreadable = (DecodeError,)
    num_views = 1

    def __init__(
        self,
        samples: Sequence[tuple[str, int]],
        transform: Callable[[Image.Image], torch.Tensor],
        *,
        classes: list[str] | None = None,
        input_size: int = 224,
        train: bool = False,
        max_retries: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(train=train, max_retries=max_retries, seed=seed)
        self.samples = [(os.fspath(path), int(label)) for path, label in samples]
        self.transform, self.input_size = transform, input_size
        self.classes = classes
        labelled = [label for _, label in self.samples if label >= 0]
        self.num_classes = len(classes) if classes is not None else (max(labelled) + 1 if labelled else 0)

    @property
    def num_videos(self) -> int:
        return len(self.samples)

    @property
    def num_sources(self) -> int:
        return len(self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(images={len(self)}, classes={self.num_classes}, train={self.train})"

    def source_path(self, index: int) -> str:
        return self.samples[index][0]

    def load(self, index: int, view: int) -> Image.Image:
        return Image.fromarray(read_image(self.samples[index][0]).permute(1, 2, 0).numpy())

    def build(self, index: int, view: int, loaded: Image.Image) -> dict[str, Any]:
        return {"video": self.transform(loaded), "label": self.samples[index][1], "view": 0}

    def blank(self, index: int, view: int) -> dict[str, Any]:
        return {"video": torch.zeros(3, self.input_size, self.input_size), "label": self.samples[index][1], "view": 0}


def collate_videos(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """DataLoader ``collate_fn`` for :class:`ClipItem` s: ``video`` stacked to ``(B, C, T, H, W)`` (or
    ``(B, C, H, W)`` for images), ``label`` and ``view`` int64 tensors, then the envelope
    (:func:`~uniformer.data.items.collate_items`)."""
    return collate_items(batch, {"video": torch.stack, "label": long_tensor, "view": long_tensor})


class SkippedInputs:
    """Collects the broken inputs (videos, images, image/mask pairs: ``noun``, a dataset's own) reported by
    batches, for the end-of-run summary.

    Feed it every batch (``update``): in train mode it records the ``skipped`` replacements, in test mode the
    views with ``valid == False``. Each file is counted once however often it was hit; ``occurrences`` keeps the
    number of hits.
    """

    def __init__(self, noun: str = "video") -> None:
        self.noun = noun
        self.reasons: dict[str, str] = {}
        self.occurrences: Counter[str] = Counter()

    def add(self, entries: Iterable[tuple[str, str]]) -> None:
        """Record ``(path, reason)`` pairs."""
        for path, reason in entries:
            self.reasons.setdefault(path, reason)
            self.occurrences[path] += 1

    def update(self, batch: dict[str, Any]) -> None:
        """Record the failures carried by one collated batch."""
        self.add(batch.get("skipped", []))
        if "valid" in batch:
            self.add(
                (p, e)
                for p, e, ok in zip(batch["path"], batch["error"], batch["valid"].tolist(), strict=True)
                if not ok
            )

    def __len__(self) -> int:
        return len(self.reasons)

    def summary(self) -> str:
        """One line per broken file, or a line saying there were none."""
        if not self.reasons:
            return f"no unreadable {self.noun}s"
        lines = [f"{len(self.reasons)} unreadable {self.noun}(s) skipped:"]
        lines += [f"  {path}: {reason} (x{self.occurrences[path]})" for path, reason in sorted(self.reasons.items())]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """``{path: {"reason": ..., "count": ...}}`` for JSON logs."""
        return {p: {"reason": r, "count": self.occurrences[p]} for p, r in sorted(self.reasons.items())}


def build_video_dataset(
    format: str,
    root: str | os.PathLike[str],
    *,
    list_file: str | os.PathLike[str] | None = None,
    labels_file: str | os.PathLike[str] | None = None,
    split: str = "train",
    split_id: int = 1,
    extension: str = ".webm",
    mode: str | None = None,
    num_frames: int = 16,
    stride: int | None = 4,
    sampling: SamplingMode = "dense",
    target_fps: float | None = None,
    crop_size: int = 224,
    short_side: int | None = None,
    num_clips: int = 1,
    num_crops: int = 1,
    crop: CropMode = "resized",
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (0.75, 4 / 3),
    jitter_scales: Sequence[int] = (256, 320),
    flip: bool = True,
    rand_augment: str | None = DEFAULT_RAND_AUGMENT,
    erasing_prob: float = 0.25,
    mean: Sequence[float],
    std: Sequence[float],
    backend: str | None = None,
    max_retries: int = 10,
    seed: int = 0,
    records: Sequence[VideoRecord] | None = None,
) -> VideoDataset:
    """A :class:`VideoDataset` with its transform from plain arguments, e.g. a YAML config section.

    ``records`` gives the videos directly (a user's files for prediction) instead of reading a list.

    ``mode`` defaults to ``"train"`` for ``split="train"`` and ``"test"`` otherwise. Train-only settings (crop,
    scale, ratio, jitter_scales, flip, rand_augment, erasing_prob) are ignored in test mode, test-only settings
    (short_side, num_clips, num_crops) in train mode. Something-Something must use ``flip=False`` and
    ``sampling="segment"``. See :func:`uniformer.data.read_video_list` for ``format`` and the files it needs.
    """
    mode = mode or ("train" if split == "train" else "test")
    videos: VideoList | Sequence[VideoRecord] = (
        list(records)
        if records is not None
        else read_video_list(
            format,
            root,
            list_file=list_file,
            labels_file=labels_file,
            split=split,
            split_id=split_id,
            extension=extension,
        )
    )
    transform: ClipTransform
    if mode == "train":
        transform = TrainTransform(
            crop_size,
            crop=crop,
            scale=(float(scale[0]), float(scale[1])),
            ratio=(float(ratio[0]), float(ratio[1])),
            jitter_scales=(int(jitter_scales[0]), int(jitter_scales[1])),
            flip=flip,
            rand_augment=rand_augment,
            erasing_prob=erasing_prob,
            mean=mean,
            std=std,
        )
    else:
        transform = EvalTransform(crop_size, short_side=short_side, num_crops=num_crops, mean=mean, std=std)
    return VideoDataset(
        videos,
        transform,
        mode=mode,
        num_frames=num_frames,
        stride=stride,
        sampling=sampling,
        num_clips=num_clips if mode == "test" else 1,
        num_crops=num_crops if mode == "test" else 1,
        target_fps=target_fps,
        backend=backend,
        max_retries=max_retries,
        seed=seed,
    )


def image_transform(
    input_size: int,
    *,
    train: bool,
    rand_augment: str | None = IMAGE_RAND_AUGMENT,
    erasing_prob: float = 0.25,
    color_jitter: float = 0.4,
    interpolation: str = "bicubic",
    crop_pct: float = 0.875,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Callable[[Any], torch.Tensor]:
    """timm's image transform: the DeiT training recipe, or the evaluation resize to ``input_size / crop_pct``
    and centre crop."""
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform

    return create_transform(
        input_size,
        is_training=train,
        auto_augment=rand_augment if train else None,
        re_prob=erasing_prob if train else 0.0,
        color_jitter=color_jitter,
        interpolation=interpolation,
        crop_pct=crop_pct,
        mean=tuple(mean) if mean is not None else IMAGENET_DEFAULT_MEAN,
        std=tuple(std) if std is not None else IMAGENET_DEFAULT_STD,
    )


def build_image_dataset(
    root: str | os.PathLike[str],
    *,
    split: str = "train",
    train: bool | None = None,
    input_size: int = 224,
    **transform_options: Any,
) -> ImageDataset:
    """ImageNet-style ``root/<split>/<class>/<image>`` (torchvision's ``ImageFolder`` finds the files) with
    :func:`image_transform` (``transform_options``: rand_augment, erasing_prob, color_jitter, interpolation,
    crop_pct, mean, std)."""
    from torchvision.datasets import ImageFolder

    folder = os.path.join(root, split)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: image split folder not found (expected root/{split}/<class>/<image>)")
    is_train = split == "train" if train is None else train
    found = ImageFolder(folder)
    return ImageDataset(
        found.samples,
        image_transform(input_size, train=is_train, **transform_options),
        classes=list(found.classes),
        input_size=input_size,
        train=is_train,
    )
