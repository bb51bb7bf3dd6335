"""From a resolved config to the objects a run needs: datasets, model, optimizer, schedule, Mixup, loss.

Everything here is plain construction from config values, kept apart from the training loop so that tests and
``uniformer train --dry-run`` can build exactly what a run would use without running it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from omegaconf import DictConfig

from uniformer.engine.config import IMAGE_FORMAT, learning_rate

__all__ = [
    "ImageItems",
    "build_dataset",
    "build_loss",
    "build_mixup",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "has_validation",
    "initial_weights",
    "released_weights",
    "steps_for",
]

_LIST_FORMATS = ("kinetics", "ssv1", "ssv2", "ucf101")


class ImageItems(torch.utils.data.Dataset):
    """An ``ImageFolder`` whose items look like :class:`uniformer.data.VideoDataset`'s (one view per image), so
    that training and :mod:`uniformer.engine.evaluate` treat images and videos alike."""

    num_views = 1

    def __init__(self, folder: Any) -> None:
        self.folder = folder
        self.classes: list[str] = list(folder.classes)
        self.num_classes = len(self.classes)

    @property
    def num_videos(self) -> int:
        return len(self.folder)

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, label = self.folder[index]
        path = self.folder.samples[index][0]
        return {
            "video": image,
            "label": label,
            "index": index,
            "view": 0,
            "path": path,
            "valid": True,
            "error": "",
            "skipped": [],
        }


def _under_root(root: str, path: str | None) -> str | None:
    return None if path is None else os.path.join(root, path)


def has_validation(cfg: DictConfig) -> bool:
    """A validation set is configured: ``data.val_list``, or a ``<root>/<val_split>`` folder for folder layouts."""
    data = cfg.data
    if data.val_list is not None:
        return True
    return data.format in ("folder", IMAGE_FORMAT, "hmdb51") and os.path.isdir(os.path.join(data.root, data.val_split))


def build_dataset(cfg: DictConfig, split: str) -> torch.utils.data.Dataset:
    """The ``"train"`` set (random augmented clips), the ``"val"`` set (``data.val_clips x val_crops`` views per
    video, for validation during training) or the ``"test"`` set (the same videos with the model's official
    ``test_clips x test_crops`` views, for ``uniformer eval``). ``cfg`` must be resolved."""
    from uniformer.data import build_image_dataset, build_video_dataset

    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    data = cfg.data
    train = split == "train"
    list_key = "data.train_list" if train else "data.val_list"
    list_file = data.train_list if train else data.val_list
    if data.format in _LIST_FORMATS and list_file is None:
        raise ValueError(
            f"config: {list_key} is not set; the {data.format} format needs a list file (relative to data.root)"
        )
    if not os.path.isdir(data.root):
        raise FileNotFoundError(f"config: data.root={data.root} is not a folder")
    if data.format == IMAGE_FORMAT:
        folder = build_image_dataset(
            data.root,
            split="train" if train else data.val_split,
            train=train,
            input_size=data.crop_size,
            rand_augment=data.rand_augment,
            erasing_prob=data.erasing_prob,
            color_jitter=data.color_jitter,
            interpolation=data.interpolation,
            crop_pct=data.crop_pct,
            mean=list(data.mean),
            std=list(data.std),
        )
        return ImageItems(folder)
    clips, crops = {
        "train": (1, 1),
        "val": (data.val_clips, data.val_crops),
        "test": (data.test_clips, data.test_crops),
    }[split]
    return build_video_dataset(
        data.format,
        data.root,
        list_file=_under_root(data.root, list_file),
        labels_file=_under_root(data.root, data.labels_file),
        split="train" if train else data.val_split,
        split_id=data.split_id,
        extension=data.extension,
        mode="train" if train else "test",
        num_frames=data.num_frames,
        stride=data.stride,
        sampling=data.sampling,
        target_fps=data.target_fps,
        crop_size=data.crop_size,
        short_side=data.short_side,
        num_clips=clips,
        num_crops=crops,
        crop=data.train_crop,
        scale=list(data.scale),
        ratio=list(data.ratio),
        jitter_scales=list(data.jitter_scales),
        flip=data.flip,
        rand_augment=data.rand_augment,
        erasing_prob=data.erasing_prob,
        mean=list(data.mean),
        std=list(data.std),
        backend=data.backend,
        max_retries=data.max_retries,
        seed=cfg.seed,
    )


def build_model(cfg: DictConfig, num_classes: int) -> nn.Module:
    """The zoo architecture ``model.name`` with ``num_classes`` outputs, drop path and ``model.overrides``,
    randomly initialised (see :func:`uniformer.models.checkpoint.load_for_fine_tuning`)."""
    from uniformer.models.registry import create_model

    overrides = dict(cfg.model.overrides)
    for key in ("num_classes", "drop_path_rate", "pretrained", "checkpoint_path"):
        if key in overrides:
            setting = key.removesuffix("_path")
            raise ValueError(
                f"config: model.overrides.{key} is not a constructor override; set model.{setting} instead"
            )
    try:
        return create_model(
            cfg.model.name, num_classes=num_classes, drop_path_rate=cfg.model.drop_path_rate, **overrides
        )
    except TypeError as exc:
        raise ValueError(f"config: model.overrides: {exc}") from None


def initial_weights(cfg: DictConfig) -> Path | None:
    """The file a new run starts from: ``model.checkpoint``, else the released weights of ``model.pretrained``
    (fetched from the Hugging Face Hub), else none (random initialisation)."""
    if cfg.model.checkpoint is not None:
        return Path(cfg.model.checkpoint)
    if cfg.model.pretrained is None:
        return None
    return released_weights(cfg.model.pretrained, f"model.pretrained={cfg.model.pretrained}")


def released_weights(name: str, key: str) -> Path:
    """The published checkpoint of zoo model ``name`` (Hugging Face Hub cache); ``key`` names the setting in errors."""
    from uniformer.models.checkpoint import download_checkpoint
    from uniformer.models.registry import model_info

    info = model_info(name)
    release = info.release()
    if release.checkpoint_file is None:
        raise ValueError(f"config: {key}: {info.name} has no released checkpoint; pass a weights file instead")
    return download_checkpoint(info.hub_repo, release.checkpoint_file)


def build_optimizer(cfg: DictConfig, model: nn.Module, global_batch: int) -> torch.optim.Optimizer:
    """timm optimizer with weight decay off for norms, biases and ``model.no_weight_decay()``, optional layer decay."""
    from timm.optim import create_optimizer_v2

    opt = cfg.optimizer
    extra: dict[str, Any] = {"betas": tuple(opt.betas), "eps": opt.eps} if "adam" in opt.name else {}
    return create_optimizer_v2(
        model,
        opt=opt.name,
        lr=learning_rate(cfg, global_batch),
        weight_decay=opt.weight_decay,
        layer_decay=opt.layer_decay,
        **extra,
    )


def build_scheduler(cfg: DictConfig, optimizer: torch.optim.Optimizer, total_steps: int, steps_per_epoch: int) -> Any:
    """Linear warm-up over ``scheduler.warmup_epochs`` then cosine to ``min_lr`` over the rest of the run, in steps
    (PySlowFast's ``COSINE_AFTER_WARMUP``; timm ``CosineLRScheduler`` with ``warmup_prefix``)."""
    from timm.scheduler import CosineLRScheduler

    warmup = min(round(cfg.scheduler.warmup_epochs * steps_per_epoch), total_steps)
    return CosineLRScheduler(
        optimizer,
        t_initial=max(total_steps - warmup, 1),
        lr_min=cfg.scheduler.min_lr,
        warmup_t=warmup,
        warmup_lr_init=cfg.scheduler.warmup_lr,
        warmup_prefix=True,
        t_in_epochs=False,
    )


def build_mixup(
    cfg: DictConfig, num_classes: int, video: bool
) -> Callable[..., tuple[torch.Tensor, torch.Tensor]] | None:
    """Mixup/CutMix producing label-smoothed soft targets, or ``None`` when disabled."""
    mix = cfg.mixup
    if mix.prob <= 0 or (mix.mixup_alpha <= 0 and mix.cutmix_alpha <= 0):
        return None
    kwargs = dict(
        mixup_alpha=mix.mixup_alpha,
        cutmix_alpha=mix.cutmix_alpha,
        prob=mix.prob,
        switch_prob=mix.switch_prob,
        label_smoothing=cfg.loss.label_smoothing,
    )
    if video:
        from uniformer.data import VideoMixup

        return VideoMixup(num_classes, **kwargs)
    from timm.data import Mixup

    return Mixup(num_classes=num_classes, **kwargs)


def build_loss(cfg: DictConfig, soft_targets: bool) -> nn.Module:
    """Soft-target cross entropy after Mixup (smoothing is inside the targets), else label-smoothing CE."""
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    if soft_targets:
        return SoftTargetCrossEntropy()
    if cfg.loss.label_smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=cfg.loss.label_smoothing)
    return nn.CrossEntropyLoss()


def steps_for(cfg: DictConfig, steps_per_epoch: int) -> tuple[int, int]:
    """``(total optimizer steps, epochs)`` of a run: ``max_epochs`` epochs, cut at ``max_steps`` if set."""
    total = cfg.trainer.max_epochs * steps_per_epoch
    if cfg.trainer.max_steps is not None:
        total = min(total, cfg.trainer.max_steps)
    return total, math.ceil(total / steps_per_epoch)
