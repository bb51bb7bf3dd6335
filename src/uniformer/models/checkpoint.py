"""Reading, checking, converting and inflating UniFormer checkpoints.

The official repositories save state dicts in several wrappers: ``{"model": ...}`` (image training, DeiT
style), ``{"model_state": ...}`` (video training, PySlowFast style), ``{"state_dict": ...}``, bare dicts, and
sometimes with DDP's ``module.`` prefix. Our parameter names are the official ones, so reading a file is
only unwrapping: :func:`checkpoint_filter_fn` does it in one place for our loader and for timm's.

Loading is strict: a missing or unexpected key or a shape mismatch is an error that lists all of them.
A dense backbone (``UniFormer(dense=True)``) also reads the official dense checkpoints, whose keys may carry the
``backbone.`` prefix of a segmentor or detector, and classification checkpoints by one stated rule
(:func:`fit_dense_backbone`).
``.pth`` files are read with ``torch.load(weights_only=True)``, so a pickle that would run code is refused.
"""

from __future__ import annotations

import argparse
import logging
import pickle
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from uniformer._fileio import atomic_write

__all__ = [
    "CheckpointError",
    "read_checkpoint",
    "read_state_dict",
    "checkpoint_filter_fn",
    "load_checkpoint",
    "load_for_fine_tuning",
    "fit_dense_backbone",
    "inflate_2d_to_3d",
    "convert_checkpoint",
    "download_checkpoint",
]

_logger = logging.getLogger(__name__)

_WRAPPER_KEYS = ("model", "model_state", "state_dict")
_PREFIXES = ("module.", "_orig_mod.")
_HEADS = ("head.", "aux_head.")
_BACKBONE_PREFIX = "backbone."
_DENSE_OUTPUT_NORMS = ("norm1.", "norm2.", "norm3.", "norm4.")
_CLASSIFIER_ONLY = (*_HEADS, "norm.")  # what a classification model has and a dense backbone lacks
_LISTED = 12  # keys named per category in error messages (the count is always complete)
# Plain-data classes found in official training checkpoints (DeiT stores its argparse.Namespace).
_SAFE_GLOBALS = [argparse.Namespace]


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model."""


def _torch_load(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refusing to load: the file holds Python objects beyond tensors and plain containers, "
            f"and unpickling them could run code ({str(exc).splitlines()[0]}). If you trust the file, load it "
            "yourself with torch.load(weights_only=False) and save only its state dict."
        ) from None
    except (RuntimeError, EOFError) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({exc})") from None


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
    return state


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint file: its flat state dict, and the whole loaded object (the container a training
    run saved, with e.g. its config; empty for bare and ``.safetensors`` files)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(path, device="cpu")
        except SafetensorError as exc:
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
        return _unwrap(obj, str(path)), {}
    obj = _torch_load(path)
    state = _unwrap(obj, str(path))
    return state, (obj if isinstance(obj, dict) and obj is not state else {})


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file (official ``.pth``/``.pyth`` layouts or ``.safetensors``) as a flat state dict."""
    return read_checkpoint(path)[0]


def _is_video(model: nn.Module) -> bool:
    return bool(getattr(model, "video", False))


def checkpoint_filter_fn(state_dict: dict[str, Any], model: nn.Module) -> dict[str, torch.Tensor]:
    """Map any supported checkpoint layout to this package's (timm ``pretrained_filter_fn`` protocol).

    Unwraps official containers and prefixes; a 2-D (image) checkpoint given to a 3-D model is inflated
    with :func:`inflate_2d_to_3d`, as the official video code does when it starts from ImageNet weights.
    """
    state = _unwrap(state_dict, "checkpoint")
    return inflate_2d_to_3d(state, model) if is_image_state_for_video(state, model) else state


def is_image_state_for_video(state: dict[str, torch.Tensor], model: nn.Module) -> bool:
    """``state`` holds 2-D (image) weights and ``model`` is a video model: the first patch embedding (plain or
    conv stem) has a 4-D kernel where the model's is 5-D."""
    stem = state.get("patch_embed1.proj.weight", state.get("patch_embed1.proj.0.weight"))
    return _is_video(model) and stem is not None and stem.ndim == 4


def _check_fit(model: nn.Module, state: dict[str, torch.Tensor], source: str, ignore: tuple[str, ...] = ()) -> None:
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
            shown = ", ".join(items[:_LISTED]) + (
                f", ... ({len(items) - _LISTED} more)" if len(items) > _LISTED else ""
            )
            lines.append(f"  {len(items)} {title}: {shown}")
    if is_image_state_for_video(state, model):
        lines.append("  (this is an image checkpoint: inflate it with uniformer.inflate_2d_to_3d / inflate=True)")
    raise CheckpointError("\n".join(lines))


def load_checkpoint(
    model: nn.Module,
    path: str | Path,
    strict: bool = True,
    *,
    reset_head: bool | None = None,
    inflate: bool | None = None,
) -> nn.Module:
    """Load a checkpoint file into ``model`` and return the model.

    Args:
        model: a :class:`~uniformer.UniFormer` (a dense backbone also takes the layouts of
            :func:`fit_dense_backbone`) or a segmentor.
        path: official ``.pth`` (any of the wrappers) or ``.safetensors``.
        strict: every key and shape must match (default). ``strict=False`` loads the matching tensors and
            logs the rest, for experiments; it is never used implicitly.
        reset_head: skip the checkpoint's classifier (``head``/``aux_head``) and keep the model's freshly
            initialised one, for fine-tuning with another number of classes. ``None`` (default): only when image
            weights are inflated and their class count differs from the model's (an ImageNet classifier never
            serves a video task); otherwise the classifier must fit like every other tensor.
        inflate: inflate 2-D (image) weights for a video model first. ``None`` (default): when the file is an
            image checkpoint and the model a video model, as the official video code starts from ImageNet
            weights (logged).
    """
    return _load_state(model, read_state_dict(path), str(path), strict, reset_head, inflate)


def load_for_fine_tuning(model: nn.Module, path: str | Path) -> nn.Module:
    """Start a fine-tuning run from ``path`` (the engine's ``model.checkpoint``): strict like
    :func:`load_checkpoint`, image weights inflated for a video model, and the classifier replaced whenever the
    checkpoint's class count differs from the model's (logged). The file is read once."""
    state = read_state_dict(path)
    classes = head_classes(state)
    reset_head = classes is not None and classes != getattr(model, "num_classes", classes)
    return _load_state(model, state, str(path), True, reset_head, None)


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
        "(head, aux_head, norm) dropped, output norms norm1..norm4 left as initialised",
        source,
        len(dropped),
    )
    return {k: v for k, v in state.items() if not k.startswith(_CLASSIFIER_ONLY)}, _DENSE_OUTPUT_NORMS


def _load_state(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    source: str,
    strict: bool,
    reset_head: bool | None,
    inflate: bool | None,
) -> nn.Module:
    """The body of :func:`load_checkpoint` on an already read state dict (arguments as documented there)."""
    state, fresh = fit_dense_backbone(model, state, source)
    if getattr(model, "dense", False):
        reset_head = False  # a backbone has no classifier to replace
    if inflate is None:
        inflate = is_image_state_for_video(state, model)
        if inflate:
            _logger.info("%s: image (2-D) weights inflated to the video model", source)
    if inflate:
        state = inflate_2d_to_3d(state, model)
    if reset_head is None:
        reset_head = inflate and head_classes(state) not in (None, getattr(model, "num_classes", None))
    if reset_head:
        ckpt_classes = head_classes(state)
        state = {k: v for k, v in state.items() if not k.startswith(_HEADS)}
        _logger.warning(
            "%s: classifier re-initialised for %s classes (the checkpoint's %s-class head is not loaded)",
            source,
            getattr(model, "num_classes", "?"),
            ckpt_classes,
        )
    if strict:
        ignore = (_HEADS if reset_head else ()) + fresh
        _check_fit(model, state, source, ignore=ignore)
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
        raise CheckpointError(
            "image checkpoint does not fit the video model: "
            + "; ".join(
                filter(None, [", ".join(mismatched), f"unexpected keys: {', '.join(unexpected)}" if unexpected else ""])
            )
        )
    if kept:
        _logger.warning("inflation: kept the video model's initialisation for %s", ", ".join(kept))
    return out


def _inflate(weight: torch.Tensor, time: int, center: bool) -> torch.Tensor:
    if center:
        inflated = weight.new_zeros(weight.shape[:2] + (time,) + weight.shape[2:])
        inflated[:, :, time // 2] = weight
        return inflated
    return weight.unsqueeze(2).repeat(1, 1, time, 1, 1) / time


def convert_checkpoint(src: str | Path, dst: str | Path, model_name: str | None = None) -> dict[str, torch.Tensor]:
    """Write the state dict of an official checkpoint as a clean ``.safetensors`` file.

    With ``model_name`` the weights are first loaded strictly into that zoo model, so a file that does
    not fit is refused before anything is written. Returns the state dict written.
    """
    from safetensors.torch import save_file

    state = read_state_dict(src)
    if model_name is not None:
        from uniformer.models.registry import create_model

        _check_fit(create_model(model_name, num_classes=head_classes(state)), state, str(src))
    state = {k: v.contiguous() for k, v in state.items()}
    metadata = {"format": "pt", "source": Path(src).name, **({"model": model_name} if model_name else {})}
    atomic_write(Path(dst), lambda tmp: save_file(state, tmp, metadata=metadata))
    return state


def head_classes(state: dict[str, torch.Tensor]) -> int | None:
    """The class count of a state dict's classifier (``None`` without one)."""
    head = state.get("head.weight")
    return None if head is None else int(head.shape[0])


def download_checkpoint(repo_id: str, filename: str) -> Path:
    """Fetch a released file into the standard Hugging Face Hub cache (or find it there offline)."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename))
    except Exception as exc:  # network, offline mode, missing entry: all end the same way for the user
        raise FileNotFoundError(
            f"could not fetch {filename} from the Hugging Face Hub repository {repo_id} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no details'}). "
            f"Download it where the Hub is reachable (`huggingface-cli download {repo_id} {filename}` or "
            f"https://huggingface.co/{repo_id}/blob/main/{filename}) and pass it as "
            f"checkpoint_path='.../{filename}' (CLI: --checkpoint FILE)."
        ) from exc
