"""Reading, checking, converting and inflating UniFormer checkpoints.

The official repositories save state dicts in several wrappers: ``{"model": ...}`` (image training, DeiT
style), ``{"model_state": ...}`` (video training, PySlowFast style), ``{"state_dict": ...}``, bare dicts, and
sometimes with DDP's ``module.`` prefix. Our parameter names are the official ones, so reading a file is
only unwrapping: :func:`checkpoint_filter_fn` does it in one place for our loader and for timm's.

A file is read once, by :func:`read_checkpoint`, into one :class:`CheckpointFile` (state dict, container
layout, class count and names, the clip it was trained for, the training config if any). One rule then loads it
(:func:`load_state`): strict, image weights inflated for a video model, and the classifier kept, replaced or
matched by class count (``head="keep" | "reset" | "auto"``). ``create_model``, fine-tuning, EMA, ``predict``
and ``eval`` all go through it.

Loading is strict: a missing or unexpected key or a shape mismatch is an error that lists all of them.
A dense backbone (``UniFormer(dense=True)``) also reads the official dense checkpoints, whose keys may carry the
``backbone.`` prefix of a segmentor or detector, and classification checkpoints by one stated rule
(:func:`fit_dense_backbone`). An official mmdet 2.x Mask R-CNN or Cascade Mask R-CNN state dict (``backbone.*``,
``neck.*``, ``rpn_head.*``, ``roi_head.*``) is mapped to the torchvision layout of :mod:`uniformer.models.detection`
as it is read (:mod:`uniformer.models.detection.mmdet`, beside the detectors), and so are mmaction2's and mmpose
1.x's re-hosted files (:mod:`uniformer.models.foreign`), so every path (``create_model``, ``convert``, ``eval``)
sees one layout.
``.pth`` files are read with :func:`torch_load` (``weights_only=True`` with a small allow-list), the one
``torch.load`` of the package, so a pickle that would run code is refused.

The module is longer than the package's others because reading and loading are one rule: every path that gives
a model weights goes through the functions here, and splitting them would put the rule in two places.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn as nn
from safetensors import SafetensorError, safe_open
from timm.models import parse_model_name

from uniformer.models.detection.mmdet import from_mmdet_detector, is_mmdet_detector_state
from uniformer.models.download import download_hub_file
from uniformer.models.foreign import from_foreign_layout

__all__ = [
    "TRAIN_FORMAT",
    "CheckpointError",
    "CheckpointFile",
    "HeadPolicy",
    "torch_load",
    "read_checkpoint",
    "read_state_dict",
    "checkpoint_filter_fn",
    "head_classes",
    "load_state",
    "load_checkpoint",
    "load_for_fine_tuning",
    "fit_dense_backbone",
    "inflate_2d_to_3d",
    "HUB_CONFIG",
    "HUB_WEIGHTS",
    "read_pretrained",
    "hub_metadata",
]

# ``format`` of the training checkpoints :mod:`uniformer.engine` writes (model, optimizer, counters, config).
TRAIN_FORMAT = "uniformer-train"
HeadPolicy = Literal["keep", "reset", "auto"]

_logger = logging.getLogger(__name__)

_WRAPPER_KEYS = ("model", "model_state", "state_dict")
_PREFIXES = ("module.", "_orig_mod.")
_HEADS = ("head.", "aux_head.", "head_cls.")  # the classifiers: token labeling's and the light models' second
_BACKBONE_PREFIX = "backbone."
_DENSE_OUTPUT_NORMS = ("norm1.", "norm2.", "norm3.", "norm4.")
_CLASSIFIER_ONLY = (*_HEADS, "norm.", "norm_cls.")  # what a classification model has and a dense backbone lacks
# the box classifier of a Mask R-CNN and of a Cascade Mask R-CNN's first stage
_DETECTOR_CLASSIFIERS = ("roi_heads.box_predictor.cls_score.weight", "roi_heads.box_predictor.0.cls_score.weight")
_LISTED = 12  # keys named per category in error messages (the count is always complete)
_JSON_METADATA = ("classes", "clip", "overrides")
# timm's Hub layout (``save_for_hf``): the architecture and its settings, and the weights, in one folder
HUB_CONFIG, HUB_WEIGHTS = "config.json", "model.safetensors"
# torch.save's pre-1.6 format starts with a pickled magic number (protocol 2, a 10-byte long)
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a"  # .safetensors metadata values stored as JSON
# Plain-data classes found in official training checkpoints (DeiT stores its argparse.Namespace).
_SAFE_GLOBALS = [argparse.Namespace]


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model."""


def _unpickling_reason(exc: pickle.UnpicklingError) -> str:
    """What PyTorch's weights-only unpickler refused (e.g. "unsupported GLOBAL posix.system ..."), without its
    advice to load the file unsafely."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line or "Unsupported" in line]
    return (named or lines or ["no details"])[0].rstrip(".")


def torch_load(path: str | os.PathLike[str]) -> Any:
    """``torch.load`` of a checkpoint on CPU with ``weights_only=True`` (plus the allow-list above): the only
    one in the package. Any unreadable file becomes a :class:`CheckpointError` naming it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    with open(path, "rb") as handle:
        legacy = handle.read(len(_LEGACY_MAGIC)) == _LEGACY_MAGIC
    if not (legacy or zipfile.is_zipfile(path)):  # truncated, empty, or another kind of file
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (neither torch.save's zip archive nor its legacy format; "
            "a file cut short or of another kind)"
        )
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refusing to load: the file holds Python objects beyond tensors and plain containers, and "
            f"unpickling them could run code ({_unpickling_reason(exc)}); ask its author for a .safetensors file "
            "or a plain state dict"
        ) from None
    except Exception as exc:  # a truncated or foreign file surfaces as several exception types
        first = str(exc).splitlines()[0] if str(exc) else "no details"
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {first})") from None


def _unwrap(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """Find the state dict inside an official checkpoint object and strip wrapper prefixes."""
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                return _unwrap(obj[key], source)
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        found = sorted(obj)[:10] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(
            f"{source}: no state dict found: expected tensors, possibly under one of {_WRAPPER_KEYS}; found {found}"
        )
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        state[key] = value
    if not is_mmdet_detector_state(state):
        return from_foreign_layout(state, source)
    mapped, unknown = from_mmdet_detector(state)
    if unknown:
        raise CheckpointError(
            f"{source}: {len(unknown)} keys of the mmdet detector checkpoint have no counterpart: {_listing(unknown)}"
        )
    return mapped


@dataclass(frozen=True)
class CheckpointFile:
    """Everything a checkpoint file says, read once.

    ``layout``: ``"safetensors"``, ``"bare"`` or the wrapper key the state dict was under (``"model"``,
    ``"model_state"``, ``"state_dict"``). ``is_training``: one of our training checkpoints (resumable; then
    ``container`` holds the optimizer state, counters and EMA weights). ``class_names`` and ``clip`` (the
    classification view settings: frames, stride, sampling, crop, ...) travel in our training checkpoints and in
    ``convert``'s ``.safetensors`` metadata; ``None`` for official files.
    """

    path: Path
    state_dict: dict[str, torch.Tensor]
    layout: str
    container: dict[str, Any] = field(default_factory=dict, repr=False)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def is_training(self) -> bool:
        return self.container.get("format") == TRAIN_FORMAT

    @property
    def num_classes(self) -> int | None:
        return head_classes(self.state_dict)

    @property
    def config(self) -> dict[str, Any] | None:
        """The resolved config of the run that wrote a training checkpoint."""
        return self.container.get("config") if self.is_training else None

    @property
    def class_names(self) -> list[str] | None:
        names = self.container.get("classes") if self.is_training else self.metadata.get("classes")
        return None if names is None else list(names)

    @property
    def clip(self) -> dict[str, Any] | None:
        clip = self.container.get("clip") if self.is_training else self.metadata.get("clip")
        return None if clip is None else dict(clip)

    @property
    def model_name(self) -> str | None:
        """The zoo name the weights belong to, when the file records it."""
        if self.is_training:
            return (self.config or {}).get("model", {}).get("name")
        return self.metadata.get("model")

    @property
    def model_overrides(self) -> dict[str, Any]:
        """The constructor overrides (``model.overrides``) of the run that trained these weights."""
        if self.is_training:
            return dict((self.config or {}).get("model", {}).get("overrides") or {})
        return dict(self.metadata.get("overrides") or {})

    @property
    def model_args(self) -> dict[str, Any] | None:
        """The constructor arguments beyond the zoo entry's that the training task recorded with the weights (a
        pose head's width, a detector's options); ``None`` when the file does not record them."""
        recorded = self.container.get("model_args") if self.is_training else None
        return None if recorded is None else dict(recorded)

    def ema_state_dict(self) -> dict[str, torch.Tensor]:
        """The EMA weights of a training checkpoint saved with ``trainer.ema_decay``."""
        ema = self.container.get("model_ema") if self.is_training else None
        if ema is None:
            raise CheckpointError(
                f"{self.path}: no EMA weights (eval.ema=true needs a training checkpoint saved with trainer.ema_decay)"
            )
        return ema


def _layout(obj: Any) -> str:
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                return key
    return "bare"


def read_checkpoint(path: str | os.PathLike[str]) -> CheckpointFile:
    """Read a checkpoint file (official ``.pth``/``.pyth`` layouts, ``.safetensors``, our training checkpoints), or
    a folder in timm's Hub layout (:func:`read_pretrained`)."""
    path = Path(path)
    if path.is_dir():
        return _read_hub_folder(path / HUB_CONFIG, path / HUB_WEIGHTS)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            with safe_open(path, framework="pt", device="cpu") as handle:
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (no __iter__)
                header = handle.metadata() or {}
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
        metadata = {k: json.loads(v) if k in _JSON_METADATA else v for k, v in header.items()}
        return CheckpointFile(path, _unwrap(tensors, str(path)), "safetensors", metadata=metadata)
    obj = torch_load(path)
    state = _unwrap(obj, str(path))
    container = obj if isinstance(obj, dict) and _layout(obj) != "bare" else {}
    return CheckpointFile(path, state, _layout(obj), container=container)


def read_pretrained(source: str) -> CheckpointFile:
    """Weights saved in timm's Hub layout (``config.json`` + ``model.safetensors``, as
    :func:`uniformer.save_pretrained` and timm's ``save_for_hf`` write it), named as timm names them:
    ``"local-dir:DIR"`` or ``"hf-hub:ORG/REPO"`` (``@REVISION`` optional; fetched into the Hub cache).

    The config's ``architecture``, ``label_names``, ``model_args`` and ``clip`` become the file's
    :attr:`~CheckpointFile.model_name`, :attr:`~CheckpointFile.class_names`,
    :attr:`~CheckpointFile.model_overrides` and :attr:`~CheckpointFile.clip`.
    """
    kind, ident = parse_model_name(source)  # timm's parser: its prefixes and its error messages
    if kind == "local-dir":
        return _read_hub_folder(Path(ident) / HUB_CONFIG, Path(ident) / HUB_WEIGHTS)
    if kind == "hf-hub":
        repo, _, revision = ident.partition("@")
        config = download_hub_file(repo, HUB_CONFIG, revision=revision or None)
        return _read_hub_folder(config, download_hub_file(repo, HUB_WEIGHTS, revision=revision or None))
    raise ValueError(f"pretrained={source!r}: expected 'local-dir:DIR' or 'hf-hub:ORG/REPO' (or True for the release)")


def _read_hub_folder(config_path: Path, weights_path: Path) -> CheckpointFile:
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{config_path.parent}: no {HUB_CONFIG}; a pretrained folder is written by uniformer.save_pretrained "
            "(config.json + model.safetensors)"
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{config_path}: not a JSON document ({exc})") from None
    if not isinstance(config, dict) or not isinstance(config.get("architecture"), str):
        raise CheckpointError(f"{config_path}: field 'architecture' (the zoo name) is missing or not a string")
    names = config.get("label_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise CheckpointError(f"{config_path}: field 'label_names' must be a list of class names")
    return dataclasses.replace(read_checkpoint(weights_path), metadata=hub_metadata(config))


def hub_metadata(config: dict[str, Any]) -> dict[str, Any]:
    """What a Hub folder's ``config.json`` says about its weights, as :class:`CheckpointFile` metadata (its
    ``architecture``, ``label_names``, ``model_args`` and ``clip``)."""
    metadata = dict(model=config["architecture"], classes=config.get("label_names"), clip=config.get("clip"))
    metadata["overrides"] = config.get("model_args") or {}
    return {k: v for k, v in metadata.items() if v is not None}


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a checkpoint file (official ``.pth``/``.pyth`` layouts or ``.safetensors``) as a flat state dict."""
    return read_checkpoint(path).state_dict


def _is_video(model: nn.Module) -> bool:
    return bool(getattr(model, "video", False))


def checkpoint_filter_fn(state_dict: dict[str, Any], model: nn.Module) -> dict[str, torch.Tensor]:
    """Map any supported checkpoint layout to this package's (timm ``pretrained_filter_fn`` protocol).

    Unwraps official containers and prefixes; a 2-D (image) checkpoint given to a 3-D model is inflated
    with :func:`inflate_2d_to_3d`, as the official video code does when it starts from ImageNet weights.
    """
    state = _unwrap(state_dict, "checkpoint")
    return inflate_2d_to_3d(state, model) if is_image_state_for_video(state, model) else state


def is_image_state(state: dict[str, torch.Tensor]) -> bool:
    """``state`` holds 2-D (image) weights: the first patch embedding (plain or conv stem) has a 4-D kernel."""
    stem = state.get("patch_embed1.proj.weight", state.get("patch_embed1.proj.0.weight"))
    return stem is not None and stem.ndim == 4


def is_image_state_for_video(state: dict[str, torch.Tensor], model: nn.Module) -> bool:
    """``state`` holds 2-D (image) weights and ``model`` is a video model (they must be inflated)."""
    return _is_video(model) and is_image_state(state)


def _listing(items: list[str]) -> str:
    """The first few items, then how many more: error messages stay readable for any architecture mismatch."""
    return ", ".join(items[:_LISTED]) + (f", ... {len(items) - _LISTED} more" if len(items) > _LISTED else "")


def check_fit(model: nn.Module, state: dict[str, torch.Tensor], source: str, ignore: tuple[str, ...] = ()) -> None:
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith(ignore)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if not (missing or unexpected or mismatched):
        return
    lines = [f"{source} does not fit {type(model).__name__}:"]
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
        if items:
            lines.append(f"  {len(items)} {title}: {_listing(items)}")
    if is_image_state_for_video(state, model):
        lines.append("  (this is an image checkpoint: inflate it with uniformer.inflate_2d_to_3d / inflate=True)")
    raise CheckpointError("\n".join(lines))


def load_checkpoint(
    model: nn.Module,
    path: str | os.PathLike[str] | CheckpointFile,
    strict: bool = True,
    *,
    reset_head: bool | None = None,
    inflate: bool | None = None,
) -> nn.Module:
    """Load a checkpoint file into ``model`` and return the model.

    Args:
        model: a :class:`~uniformer.UniFormer` (a dense backbone also takes the layouts of
            :func:`fit_dense_backbone`) or a segmentor.
        path: official ``.pth`` (any of the wrappers), ``.safetensors``, or an already read :class:`CheckpointFile`.
        strict: every key and shape must match (default). ``strict=False`` loads the matching tensors and
            logs the rest, for experiments; it is never used implicitly.
        reset_head: ``True`` skips the checkpoint's classifier (``head``/``aux_head``) and keeps the model's freshly
            initialised one; ``False`` requires it to fit. ``None`` (default): required to fit, except when image
            weights are inflated, where a classifier of another class count is replaced (an ImageNet classifier
            never serves a video task).
        inflate: inflate 2-D (image) weights for a video model first. ``None`` (default): when the file is an
            image checkpoint and the model a video model, as the official video code starts from ImageNet
            weights (logged).
    """
    file = path if isinstance(path, CheckpointFile) else read_checkpoint(path)
    head: HeadPolicy | None = None if reset_head is None else ("reset" if reset_head else "keep")
    return load_state(model, file.state_dict, str(file.path), head=head, inflate=inflate, strict=strict)


def load_for_fine_tuning(model: nn.Module, path: str | os.PathLike[str] | CheckpointFile) -> nn.Module:
    """Start a fine-tuning run from ``path`` (the engine's ``model.checkpoint`` / ``model.pretrained``): strict,
    image weights inflated for a video model, and the classifier replaced when the checkpoint's class count
    differs (``head="auto"``).

    A bare UniFormer checkpoint (ImageNet classification, or a dense backbone's) given to a model that holds a
    dense UniFormer (segmentor, pose model, detector) initialises that backbone alone, by
    :func:`fit_dense_backbone`'s rule, and the heads keep their initialisation: what the official dense recipes
    do with ``pretrained=`` (Sense-X/UniFormer ``semantic_segmentation/mmseg/models/backbones/uniformer.py``
    ``init_weights``), here strict for the backbone.
    """
    file = path if isinstance(path, CheckpointFile) else read_checkpoint(path)
    backbone = _backbone_for(model, file.state_dict)
    if backbone is not None:
        _logger.info(
            "%s: UniFormer backbone weights loaded into %s's backbone; its heads keep their initialisation",
            file.path,
            type(model).__name__,
        )
        model = backbone
    return load_state(model, file.state_dict, str(file.path), head="auto")


def _backbone_for(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module | None:
    """The dense UniFormer inside ``model`` that a bare UniFormer ``state`` is meant for, else ``None``: the
    model is not itself a UniFormer, holds exactly one dense one, and no key of ``state`` (``backbone.`` removed)
    names one of the model's own top-level modules."""
    if hasattr(model, "patch_embed1"):
        return None
    backbones = [m for m in model.modules() if getattr(m, "dense", False) is True and hasattr(m, "patch_embed1")]
    keys = [key.removeprefix(_BACKBONE_PREFIX) for key in state]
    if len(backbones) != 1 or "patch_embed1.proj.weight" not in keys and "patch_embed1.proj.0.weight" not in keys:
        return None
    children = {name for name, _ in model.named_children()}
    return None if any(key.split(".", 1)[0] in children for key in keys) else backbones[0]


def fit_dense_backbone(
    model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint"
) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
    """Map a state dict onto a dense backbone's layout; returns it and the key prefixes left as initialised.

    Keys lose a ``backbone.`` prefix (official segmentation/detection checkpoints; any other key of such a file,
    e.g. ``decode_head.*``, stays and is reported as unexpected). A classification checkpoint (final BatchNorm
    ``norm.*``, no output norms) loses its classifier (``head.*``, ``aux_head.*``) and final BatchNorm, and the
    output norms ``norm1`` .. ``norm4`` keep their initialisation, as when the official segmentation code starts
    from ImageNet weights (logged in one line). Models other than dense backbones get ``state`` unchanged.
    """
    if not getattr(model, "dense", False):
        return state, ()
    state = {key.removeprefix(_BACKBONE_PREFIX): value for key, value in state.items()}
    if "norm.weight" not in state or any(key.startswith(_DENSE_OUTPUT_NORMS) for key in state):
        return state, ()
    dropped = [key for key in state if key.startswith(_CLASSIFIER_ONLY)]
    _logger.info(
        "%s: classification checkpoint loaded into a dense backbone: %d classifier and final-norm tensors "
        "(head, aux_head, head_cls, norm, norm_cls) dropped, output norms norm1..norm4 left as initialised",
        source,
        len(dropped),
    )
    return {k: v for k, v in state.items() if not k.startswith(_CLASSIFIER_ONLY)}, _DENSE_OUTPUT_NORMS


def load_state(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    source: str,
    *,
    head: HeadPolicy | None = "keep",
    inflate: bool | None = None,
    strict: bool = True,
) -> nn.Module:
    """The one loading rule: inflate image weights for a video model (``inflate=None``: when they are image
    weights), then load strictly with the classifier handled by ``head``:

    * ``"keep"``: the checkpoint's classifier must fit like every other tensor;
    * ``"reset"``: the model's freshly initialised classifier stays;
    * ``"auto"``: kept when the class counts agree, replaced when they differ (logged, from what to what);
    * ``None``: ``"auto"`` when inflating, else ``"keep"``.

    A dense backbone first gets the state mapped by :func:`fit_dense_backbone` (and has no classifier).
    """
    state, fresh = fit_dense_backbone(model, state, source)
    if inflate is None:
        inflate = is_image_state_for_video(state, model)
        if inflate:
            _logger.info("%s: image (2-D) weights inflated to the video model", source)
    if inflate:
        state = inflate_2d_to_3d(state, model)
    if head is None:
        head = "auto" if inflate else "keep"
    ckpt_classes, model_classes = head_classes(state), getattr(model, "num_classes", None)
    reset = head == "reset" or (head == "auto" and ckpt_classes not in (None, model_classes))
    if reset:
        state = {k: v for k, v in state.items() if not k.startswith(_HEADS)}
        if ckpt_classes is not None:
            _logger.warning(
                "%s: classifier re-initialised for %s classes (the checkpoint's %s-class head does not fit)",
                source,
                model_classes,
                ckpt_classes,
            )
    if strict:
        ignore = (_HEADS if reset else ()) + fresh
        check_fit(model, state, source, ignore=ignore)
        model.load_state_dict(state, strict=not ignore)
    else:
        own = model.state_dict()
        fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        result = model.load_state_dict(fitting, strict=False)
        skipped = sorted(set(state) - set(fitting))
        _logger.warning(
            "%s: non-strict load; not loaded: %s; left as initialised: %s", source, skipped, result.missing_keys
        )
    return model


def inflate_2d_to_3d(
    image_state_dict: dict[str, torch.Tensor], video_model: nn.Module, center: bool = False
) -> dict[str, torch.Tensor]:
    """Turn an image checkpoint into a complete state dict for ``video_model``.

    Each 2-D kernel (O, I, kh, kw) becomes (O, I, kt, kh, kw) for the video layer's temporal size kt.
    Official inflation (``center=False``; Sense-X/UniFormer ``Uniformer.inflate_weight``): repeat the kernel
    along time and divide by kt, so a static clip gives the image model's response. ``center=True`` puts
    the 2-D kernel in the middle temporal slice and zeros elsewhere. Tensors the image model does not have
    (the temporal attention of ``split`` models) and a classifier of another class count keep the video
    model's current initialisation; both are logged.
    """
    state = _unwrap(image_state_dict, "image checkpoint")
    target = video_model.state_dict()
    out: dict[str, torch.Tensor] = {}
    kept, mismatched = [], []
    for key, ref in target.items():
        src = state.get(key)
        if src is None:
            kept.append(key)
            out[key] = ref
        elif src.shape == ref.shape:
            out[key] = src
        elif src.ndim + 1 == ref.ndim and src.shape[:2] == ref.shape[:2] and src.shape[2:] == ref.shape[3:]:
            out[key] = _inflate(src, ref.shape[2], center).to(ref.dtype)
        elif key.startswith(_HEADS) and src.shape[1:] == ref.shape[1:]:
            kept.append(key)
            out[key] = ref
        else:
            mismatched.append(f"{key}: image {tuple(src.shape)} vs video {tuple(ref.shape)}")
    unexpected = sorted(set(state) - set(target))
    if mismatched or unexpected:
        parts = [f"{len(mismatched)} shape mismatches: {_listing(mismatched)}" if mismatched else ""]
        parts.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}" if unexpected else "")
        raise CheckpointError("image checkpoint does not fit the video model: " + "; ".join(filter(None, parts)))
    if kept:
        _logger.warning("inflation: kept the video model's initialisation for %s", ", ".join(kept))
    return out


def _inflate(weight: torch.Tensor, time: int, center: bool) -> torch.Tensor:
    if center:
        inflated = weight.new_zeros(weight.shape[:2] + (time,) + weight.shape[2:])
        inflated[:, :, time // 2] = weight
        return inflated
    return weight.unsqueeze(2).repeat(1, 1, time, 1, 1) / time


def head_classes(state: dict[str, torch.Tensor]) -> int | None:
    """The class count of a state dict's classifier: ``head``, a segmentor's ``decode_head.conv_seg``, or a
    detector's object classes (its box classifier's rows less the background); ``None`` without one."""
    head = state.get("head.weight", state.get("decode_head.conv_seg.weight"))
    if head is not None:
        return int(head.shape[0])
    box = next((state[k] for k in _DETECTOR_CLASSIFIERS if k in state), None)
    return None if box is None else int(box.shape[0]) - 1
