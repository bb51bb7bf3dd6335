"""Training/evaluation configuration: a typed schema, YAML recipes with ``base:`` inheritance, dotted overrides.

A recipe (``configs/**.yaml``) holds what a *recipe* decides (optimiser, schedule, augmentation, epochs, batch)
and names the official configuration it reproduces (``reproduces:``). What the model zoo already knows about
the model (frames, stride, sampling, test views, crop size, mean/std, classes) stays ``null`` in the recipe
and is filled in from :func:`uniformer.model_info` by :func:`resolve_config`, so the registry remains the single
source of truth. The resolved configuration is what a run saves next to its checkpoints.

The schema is an OmegaConf structured config in struct mode: a misspelt key in a YAML file or in a
command-line override (``trainer.max_step=5``) is an error that names the file (or "command line") and the key,
never silently ignored. A file may start from another with ``base: relative/path.yaml``; its own keys win.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

__all__ = [
    "Config",
    "DataConfig",
    "EvalConfig",
    "LossConfig",
    "MixupConfig",
    "ModelConfig",
    "OptimizerConfig",
    "SchedulerConfig",
    "TrainerConfig",
    "config_diff",
    "load_config",
    "resolve_config",
    "save_config",
]

PRECISIONS = ("fp32", "bf16", "fp16")
AGGREGATES = ("sum", "softmax_mean")
IMAGE_FORMAT = "imagefolder"


@dataclass
class ModelConfig:
    """Which network to train and where its first weights come from."""

    name: str = MISSING  # zoo name (``uniformer models``); decides architecture and the registry defaults below
    pretrained: Optional[str] = None  # zoo name whose *released* weights initialise the model (Hub download)
    checkpoint: Optional[str] = None  # a weights file to start from instead (official .pth/.safetensors or ours)
    num_classes: Optional[int] = None  # default: the training list's classes, else the zoo entry's
    drop_path_rate: float = 0.0
    overrides: Dict[str, Any] = field(default_factory=dict)  # other UniFormer constructor arguments


@dataclass
class DataConfig:
    """The dataset, the clip, the augmentation and the loader. ``null`` fields come from the model's zoo entry."""

    format: str = "kinetics"  # uniformer.data.FORMATS, or "imagefolder" (root/<split>/<class>/<image>)
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
    rand_augment: Optional[str] = "rand-m7-n4-mstd0.5-inc1"
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


@dataclass
class OptimizerConfig:
    """timm optimizer. The learning rate is ``lr`` if set, else ``lr_base`` scaled from ``lr_base_size`` to the
    run's global batch (linear or sqrt); with ``lr_base_size: null`` it is ``lr_base`` whatever the batch."""

    name: str = "adamw"
    lr: Optional[float] = None
    lr_base: float = 1e-4
    lr_base_size: Optional[int] = None
    lr_base_scale: str = "linear"
    weight_decay: float = 0.05
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    layer_decay: Optional[float] = None
    clip_grad: Optional[float] = None  # max global gradient L2 norm


@dataclass
class SchedulerConfig:
    """Linear warm-up from ``warmup_lr`` then cosine decay to ``min_lr``, updated every optimizer step."""

    warmup_epochs: float = 0.0
    warmup_lr: float = 1e-6
    min_lr: float = 1e-6


@dataclass
class TrainerConfig:
    max_epochs: int = 1
    max_steps: Optional[int] = None  # stop after this many optimizer steps (the schedule spans the run)
    batch_size: int = 8  # GLOBAL batch (all processes, all accumulation micro-batches)
    accum_steps: int = 1
    precision: str = "fp32"  # fp32 | bf16 (autocast, CPU or GPU) | fp16 (autocast + grad scaler, GPU)
    device: str = "auto"  # auto | cpu | cuda
    grad_checkpointing: bool = False
    compile: bool = False
    sync_bn: bool = False
    ema_decay: Optional[float] = None
    eval_every_epochs: int = 1
    val_batch_size: Optional[int] = None  # per process; default: the per-process training batch
    checkpoint_every_steps: Optional[int] = None  # also save mid-epoch (end of epoch is always saved)
    keep_last: int = 2
    resume: Optional[str] = None  # "auto" (latest in output_dir, if any) or a checkpoint path
    max_nan_skips: int = 5  # consecutive non-finite steps tolerated before the run stops
    log_every_steps: int = 10
    progress: bool = True
    tensorboard: bool = True


@dataclass
class EvalConfig:
    checkpoint: Optional[str] = None  # a file, or "released" for the zoo model's published weights
    aggregate: str = "sum"  # "sum" of logits over views (official) or "softmax_mean"
    ema: bool = False  # evaluate the EMA weights of a training checkpoint
    batch_size: int = 8  # per process
    output_dir: Optional[str] = None  # default: <output_dir>/eval
    shuffle_frames: bool = False  # control experiment: every view's frames in a random (seeded) time order


@dataclass
class Config:
    reproduces: Optional[str] = None  # the official configuration this recipe follows
    notes: str = ""
    output_dir: Optional[str] = None  # default: runs/<config file name>
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    mixup: MixupConfig = field(default_factory=MixupConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def _explain(exc: OmegaConfBaseException, source: str) -> ValueError:
    """One readable line naming the source and the dotted key."""
    key = getattr(exc, "full_key", None) or getattr(exc, "key", None) or "?"
    message = str(exc).splitlines()[0]
    if isinstance(exc, ConfigKeyError):
        if "Did you mean" in message:
            hint = message[message.index("Did you mean") :]
        else:
            parent = str(key).rpartition(".")[0]
            node = OmegaConf.select(OmegaConf.structured(Config), parent) if parent else OmegaConf.structured(Config)
            hint = (
                f"valid keys{' under ' + repr(parent) if parent else ''}: {', '.join(node)}"
                if isinstance(node, DictConfig)
                else ""
            )
        return ValueError(f"{source}: unknown config key '{key}'" + (f" ({hint})" if hint else ""))
    return ValueError(f"{source}: {key}: {message}")


def _merge(cfg: DictConfig, other: Any, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(cfg, other)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        raise _explain(exc, source) from None


def _file_chain(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[Path, DictConfig]]:
    """The YAML file and its ``base:`` ancestors, base first."""
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    if path.resolve() in seen:
        raise ValueError(f"{path}: 'base:' chain loops back to itself ({' -> '.join(map(str, seen))})")
    try:
        data = OmegaConf.load(path)
    except Exception as exc:  # YAML syntax errors come from several parsers; all mean "fix this file"
        raise ValueError(f"{path}: not a readable YAML config ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, DictConfig):
        raise ValueError(f"{path}: a config must be a YAML mapping, got a {type(data).__name__}")
    base = data.pop("base", None)
    chain = _file_chain(path.parent / str(base), (*seen, path.resolve())) if base else []
    return [*chain, (path, data)]


def load_config(path: str | os.PathLike[str] | None = None, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Schema defaults <- YAML file (after its ``base:`` chain) <- ``key=value`` overrides, validated.

    Overrides use OmegaConf's dotted syntax: ``trainer.max_steps=100``, ``data.scale=[0.5,1.0]``,
    ``model.checkpoint=null``. ``output_dir`` defaults to ``runs/<config file stem>``.
    """
    cfg: DictConfig = OmegaConf.structured(Config)
    if path is not None:
        for file, data in _file_chain(Path(path)):
            cfg = _merge(cfg, data, str(file))
    bad = [item for item in overrides if "=" not in item or item.startswith("=")]
    if bad:
        raise ValueError(f"command line: overrides must look like key=value, got {' '.join(bad)}")
    try:
        dotlist = OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as exc:
        raise _explain(exc, "command line") from None
    cfg = _merge(cfg, dotlist, "command line")
    if cfg.output_dir is None:
        cfg.output_dir = os.path.join("runs", Path(path).stem if path is not None else "default")
    return cfg


def _check_choice(value: Any, choices: tuple[str, ...], key: str) -> None:
    if value not in choices:
        raise ValueError(f"config: {key} must be one of {', '.join(choices)}; got {value!r}")


def _check_positive(value: float | int | None, key: str, allow_zero: bool = False) -> None:
    if value is not None and (value < 0 or (value == 0 and not allow_zero)):
        raise ValueError(f"config: {key} must be {'>= 0' if allow_zero else '> 0'}; got {value}")


def resolve_config(cfg: DictConfig) -> DictConfig:
    """Fill the fields left ``null`` from the zoo entry of ``model.name`` and check values; returns a copy.

    Filled: ``data.num_frames``, ``stride``, ``sampling`` (videos), ``crop_size``, ``test_clips``, ``test_crops``,
    ``mean``, ``std``, ``crop_pct`` (images). ``model.num_classes`` is left to the dataset (see
    :func:`uniformer.engine.build.build_model`).
    """
    from uniformer.data import FORMATS
    from uniformer.models.registry import model_info

    cfg = cfg.copy()
    for section, key in (("model", "name"), ("data", "root")):
        if OmegaConf.is_missing(cfg[section], key):  # is_missing does not follow dotted paths
            raise ValueError(
                f"config: {section}.{key} is not set (add it to the YAML file or pass {section}.{key}=...)"
            )
    info = model_info(cfg.model.name)
    data = cfg.data
    release = info.release()
    if info.task == "video":
        data.num_frames = data.num_frames if data.num_frames is not None else info.num_frames
        data.sampling = data.sampling if data.sampling is not None else info.sampling
        if data.stride is None and data.sampling == "dense":
            data.stride = info.frame_stride
    data.crop_size = data.crop_size if data.crop_size is not None else release.img_size
    data.crop_pct = data.crop_pct if data.crop_pct is not None else release.crop_pct
    data.test_clips = data.test_clips if data.test_clips is not None else info.test_clips
    data.test_crops = data.test_crops if data.test_crops is not None else info.test_crops
    data.mean = data.mean if data.mean is not None else list(info.mean)
    data.std = data.std if data.std is not None else list(info.std)

    formats = FORMATS if info.task == "video" else (IMAGE_FORMAT,)
    _check_choice(data.format, formats, f"data.format (for the {info.task} model {info.name})")
    _check_choice(cfg.trainer.precision, PRECISIONS, "trainer.precision")
    _check_choice(cfg.trainer.device, ("auto", "cpu", "cuda"), "trainer.device")
    _check_choice(cfg.eval.aggregate, AGGREGATES, "eval.aggregate")
    _check_choice(cfg.optimizer.lr_base_scale, ("linear", "sqrt"), "optimizer.lr_base_scale")
    if data.crop_size % 32:
        raise ValueError(
            f"config: data.crop_size must be a multiple of 32 (UniFormer downsamples by 32); got {data.crop_size}"
        )
    for key in (
        "trainer.batch_size",
        "trainer.accum_steps",
        "trainer.max_epochs",
        "trainer.keep_last",
        "trainer.log_every_steps",
        "trainer.eval_every_epochs",
        "data.repeated_aug",
        "eval.batch_size",
        "trainer.max_steps",  # this one and the next two may also be null
        "trainer.checkpoint_every_steps",
        "trainer.val_batch_size",
    ):
        _check_positive(OmegaConf.select(cfg, key), key)
    for key in ("data.num_workers", "trainer.max_nan_skips", "scheduler.warmup_epochs"):
        _check_positive(OmegaConf.select(cfg, key), key, allow_zero=True)
    if not 0 <= cfg.loss.label_smoothing < 1:
        raise ValueError(f"config: loss.label_smoothing must be in [0, 1); got {cfg.loss.label_smoothing}")
    return cfg


def learning_rate(cfg: DictConfig, global_batch: int) -> float:
    """The peak learning rate of this run (see :class:`OptimizerConfig`)."""
    opt = cfg.optimizer
    if opt.lr is not None:
        return float(opt.lr)
    if opt.lr_base_size is None:
        return float(opt.lr_base)
    ratio = global_batch / opt.lr_base_size
    return float(opt.lr_base) * (math.sqrt(ratio) if opt.lr_base_scale == "sqrt" else ratio)


def save_config(cfg: DictConfig, path: str | os.PathLike[str]) -> None:
    """Write ``cfg`` as YAML, atomically."""
    from uniformer._fileio import atomic_write_text

    atomic_write_text(path, OmegaConf.to_yaml(cfg, resolve=True))


def config_diff(old: DictConfig | dict, new: DictConfig | dict) -> list[str]:
    """``key: old -> new`` for every dotted key whose value differs (for resume warnings)."""

    def flat(node: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(node, dict):
            out: dict[str, Any] = {}
            for k, v in node.items():
                out.update(flat(v, f"{prefix}{k}."))
            return out
        return {prefix[:-1]: node}

    a = flat(OmegaConf.to_container(old) if isinstance(old, DictConfig) else old)
    b = flat(OmegaConf.to_container(new) if isinstance(new, DictConfig) else new)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
