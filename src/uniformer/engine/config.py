"""Training/evaluation configuration: a typed schema, YAML recipes with ``base:`` inheritance, dotted overrides.

A recipe (``uniformer/configs/**.yaml``, shipped with the package) holds what a *recipe* decides (optimiser,
schedule, augmentation, epochs, batch) and names the official configuration it reproduces (``reproduces:``).
What the model zoo already knows about the model stays ``null`` and is filled in by the task
(:meth:`uniformer.tasks.Task.resolve`), so the registry remains the single source of truth. The resolved
configuration is what a run saves next to its checkpoints.

The schema is the engine's sections (``model``, ``optimizer``, ``scheduler``, ``trainer``, ``eval``) plus the
sections of the model's task (classification: ``data``, ``loss``, ``mixup`` and more ``eval`` fields), as an
OmegaConf structured config in struct mode: a misspelt key in a YAML file or in a command-line override
(``trainer.max_step=5``) is an error that names the file (or "command line") and the key, never silently
ignored. A file may start from another with ``base: relative/path.yaml``; its own keys win.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from uniformer._fileio import atomic_write_text
from uniformer.configs import find_config, shipped_configs
from uniformer.tasks import Task, get_task, task_for_model

__all__ = [
    "EvalConfig",
    "ModelConfig",
    "OptimizerConfig",
    "SchedulerConfig",
    "TrainerConfig",
    "config_diff",
    "config_schema",
    "find_config",
    "learning_rate",
    "load_config",
    "resolve_config",
    "save_config",
    "shipped_configs",
    "task_of",
]

PRECISIONS = ("fp32", "bf16", "fp16")
SCHEDULERS = ("cosine", "poly", "step")
logger = logging.getLogger("uniformer.engine")


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
    """Linear warm-up from ``warmup_lr``, then decay, updated every optimizer step: ``cosine`` to ``min_lr`` over
    the steps after the warm-up, ``poly`` (mmseg's, ``(1 - step / total) ** power`` over the whole run, floor
    ``min_lr``), or ``step`` (mmdet's and mmpose's: times ``decay_rate`` at each epoch of ``milestones``).
    The warm-up lasts ``warmup_steps`` optimizer steps when set (the official recipes count iterations), else
    ``warmup_epochs`` epochs."""

    name: str = "cosine"  # cosine | poly | step
    warmup_epochs: float = 0.0
    warmup_steps: Optional[int] = None
    warmup_lr: float = 1e-6
    min_lr: float = 1e-6
    power: float = 1.0  # poly only
    milestones: List[int] = field(default_factory=list)  # step only: epochs after which the rate decays
    decay_rate: float = 0.1  # step only


@dataclass
class TrainerConfig:
    max_epochs: int = 1
    max_steps: Optional[int] = None  # stop after this many optimizer steps (the schedule spans the run)
    batch_size: int = 8  # GLOBAL batch (all processes, all accumulation micro-batches)
    accum_steps: int = 1
    drop_last: bool = True  # leave out the items that do not fill a last batch (false: every item, every epoch)
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
    ema: bool = False  # evaluate the EMA weights of a training checkpoint
    batch_size: int = 8  # per process
    output_dir: Optional[str] = None  # default: <output_dir>/eval


# The engine's sections; a task adds its own (or extends one of these, as classification extends ``eval``).
_SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "optimizer": OptimizerConfig,
    "scheduler": SchedulerConfig,
    "trainer": TrainerConfig,
    "eval": EvalConfig,
}
_TOP_LEVEL: list[tuple[str, Any, Any]] = [
    ("reproduces", Optional[str], None),  # the official configuration this recipe follows
    ("notes", str, ""),
    ("output_dir", Optional[str], None),  # default: runs/<config file name>
    ("seed", int, 0),
]


def _extend(name: str, *parts: type) -> type:
    """One dataclass with the fields of ``parts`` in order (types resolved, defaults kept)."""
    fields = []
    for part in parts:
        hints = typing.get_type_hints(part)
        fields += [(f.name, hints[f.name], f) for f in dataclasses.fields(part)]
    return dataclasses.make_dataclass(name, fields)


@functools.cache
def config_schema(task: Task) -> type:
    """The structured-config class of ``task``: the engine's sections, extended or joined by the task's."""
    sections = dict(_SECTIONS)
    for name, extra in task.sections.items():
        sections[name] = _extend(f"{name.title()}Config", *([sections[name]] if name in sections else []), extra)
    fields = [(name, kind, field(default=default)) for name, kind, default in _TOP_LEVEL]
    fields += [(name, kind, field(default_factory=kind)) for name, kind in sections.items()]
    return dataclasses.make_dataclass(f"{task.name.title()}Config", fields)


def _explain(exc: OmegaConfBaseException, source: str, schema: type) -> ValueError:
    """One readable line naming the source and the dotted key."""
    key = getattr(exc, "full_key", None) or getattr(exc, "key", None) or "?"
    message = str(exc).splitlines()[0]
    if isinstance(exc, ConfigKeyError):
        if "Did you mean" in message:
            hint = message[message.index("Did you mean") :]
        else:
            parent = str(key).rpartition(".")[0]
            root = OmegaConf.structured(schema)
            node = OmegaConf.select(root, parent) if parent else root
            hint = (
                f"valid keys{' under ' + repr(parent) if parent else ''}: {', '.join(node)}"
                if isinstance(node, DictConfig)
                else ""
            )
        return ValueError(f"{source}: unknown config key '{key}'" + (f" ({hint})" if hint else ""))
    return ValueError(f"{source}: {key}: {message}")


def _merge(cfg: DictConfig, other: Any, source: str, schema: type) -> DictConfig:
    try:
        return OmegaConf.merge(cfg, other)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        raise _explain(exc, source, schema) from None


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


def task_of(cfg: DictConfig | dict[str, Any]) -> Task:
    """The task of a config: the one that serves its ``model.name`` (classification when none is set yet)."""
    name = OmegaConf.select(cfg, "model.name") if isinstance(cfg, DictConfig) else (cfg.get("model") or {}).get("name")
    if name is None or name == MISSING:
        return get_task("classification")
    return task_for_model(str(name))


def load_config(path: str | os.PathLike[str] | None = None, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Schema defaults <- YAML file (after its ``base:`` chain) <- ``key=value`` overrides, validated.

    ``path`` is a file or the name of a shipped recipe (:func:`find_config`). The schema is that of the task
    serving ``model.name``. Overrides use OmegaConf's dotted syntax: ``trainer.max_steps=100``,
    ``data.scale=[0.5,1.0]``, ``model.checkpoint=null``. ``output_dir`` defaults to ``runs/<config file stem>``.
    """
    layers: list[tuple[str, Any]] = []
    if path is not None:
        path = find_config(path)
        layers = [(str(file), data) for file, data in _file_chain(path)]
    bad = [item for item in overrides if "=" not in item or item.startswith("=")]
    if bad:
        raise ValueError(f"command line: overrides must look like key=value, got {' '.join(bad)}")
    try:
        layers.append(("command line", OmegaConf.from_dotlist(list(overrides))))
    except OmegaConfBaseException as exc:
        raise ValueError(f"command line: {str(exc).splitlines()[0]}") from None
    plain = OmegaConf.merge(*(data for _, data in layers)) if layers else OmegaConf.create()
    schema = config_schema(task_of(OmegaConf.to_container(plain)))  # type: ignore[arg-type]
    cfg: DictConfig = OmegaConf.structured(schema)
    for source, data in layers:
        cfg = _merge(cfg, data, source, schema)
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
    """Check the engine's settings and let the task fill its ``null`` fields from the zoo entry of
    ``model.name`` (:meth:`uniformer.tasks.Task.resolve`); returns a copy."""
    cfg = cfg.copy()
    if OmegaConf.is_missing(cfg.model, "name"):
        raise ValueError("config: model.name is not set (add it to the YAML file or pass model.name=...)")
    if "data" in cfg and OmegaConf.is_missing(cfg.data, "root"):
        raise ValueError("config: data.root is not set (add it to the YAML file or pass data.root=...)")
    _check_choice(cfg.trainer.precision, PRECISIONS, "trainer.precision")
    _check_choice(cfg.trainer.device, ("auto", "cpu", "cuda"), "trainer.device")
    _check_choice(cfg.optimizer.lr_base_scale, ("linear", "sqrt"), "optimizer.lr_base_scale")
    _check_choice(cfg.scheduler.name, SCHEDULERS, "scheduler.name")
    for key in (
        "trainer.batch_size",
        "trainer.accum_steps",
        "trainer.max_epochs",
        "trainer.keep_last",
        "trainer.log_every_steps",
        "trainer.eval_every_epochs",
        "eval.batch_size",
        "trainer.max_steps",  # this one and the next two may also be null
        "trainer.checkpoint_every_steps",
        "trainer.val_batch_size",
        "scheduler.power",
    ):
        _check_positive(OmegaConf.select(cfg, key), key)
    for key in ("trainer.max_nan_skips", "scheduler.warmup_epochs", "scheduler.warmup_steps"):
        _check_positive(OmegaConf.select(cfg, key), key, allow_zero=True)
    _check_schedule(cfg.scheduler)
    task_of(cfg).resolve(cfg)
    return cfg


def _check_schedule(s: DictConfig) -> None:
    if s.warmup_steps is not None and s.warmup_epochs:
        raise ValueError(
            f"config: scheduler.warmup_steps={s.warmup_steps} and scheduler.warmup_epochs={s.warmup_epochs} are both "
            "set; give the warm-up one way"
        )
    milestones = list(s.milestones)
    if s.name == "step":
        if not milestones or any(m <= 0 for m in milestones) or milestones != sorted(set(milestones)):
            raise ValueError(
                f"config: scheduler.milestones must be increasing positive epochs for scheduler.name=step; "
                f"got {milestones}"
            )
        _check_positive(s.decay_rate, "scheduler.decay_rate")
    elif milestones:
        raise ValueError(f"config: scheduler.milestones is set but scheduler.name={s.name!r} (only step uses it)")


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
