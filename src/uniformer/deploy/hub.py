"""Sharing weights the way timm shares its models: :func:`save_pretrained` and :func:`push_to_hub`.

The folder holds timm's Hub layout (timm ``_hub.py``: ``save_for_hf`` / ``push_to_hf_hub``): ``config.json`` with
``architecture`` (the zoo name, which is also timm's model name for the image models), ``num_classes``,
``label_names``, ``model_args`` (constructor arguments over the zoo entry) and ``pretrained_cfg`` (timm's
preprocessing fields), plus ``clip``, the classification view settings (frames, stride, sampling, crop, test
views) that timm has no field for; ``model.safetensors``; and a model card ``README.md`` written by timm's own
``generate_readme``, tagged with the Hub's pipeline tag of the model's task. Every task's models use it (a pose
model's ``num_classes`` is its keypoint count); what only the weights record, such as a segmentor's head widths,
is read back from them. ``create_model(name, pretrained="local-dir:DIR" | "hf-hub:ORG/REPO")`` reads it back
(:func:`uniformer.models.checkpoint.read_pretrained`), and for the image models so does
``timm.create_model("local-dir:DIR", pretrained=True)`` once ``uniformer`` is imported.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from huggingface_hub import HfApi
from safetensors.torch import save_file
from timm.models._hub import generate_readme

from uniformer._fileio import atomic_write, atomic_write_text
from uniformer.models.checkpoint import HUB_CONFIG, HUB_WEIGHTS, CheckpointFile, check_fit, hub_metadata
from uniformer.models.zoo.catalog import model_info
from uniformer.models.zoo.schema import METRIC_LABELS, ModelInfo
from uniformer.tasks.classification.config import class_names as resolve_class_names
from uniformer.tasks.classification.config import clip_spec

__all__ = ["hub_config", "model_card", "push_to_hub", "save_pretrained"]

_CITATION = """@inproceedings{li2022uniformer,
  title={UniFormer: Unified Transformer for Efficient Spatial-Temporal Representation Learning},
  author={Li, Kunchang and Wang, Yali and Gao, Peng and Song, Guanglu and Liu, Yu and Li, Hongsheng and Qiao, Yu},
  booktitle={International Conference on Learning Representations},
  year={2022}
}"""


def _zoo_cfg(model: nn.Module, model_name: str | None) -> dict[str, Any]:
    """What :func:`uniformer.create_model` recorded on ``model``, with ``model_name`` winning."""
    recorded = dict(getattr(model, "zoo_cfg", None) or {})
    name = model_name or recorded.get("name")
    if name is None:
        raise ValueError(
            "save_pretrained: the model does not record its zoo name (it was not built by uniformer.create_model); "
            "pass model_name="
        )
    if recorded.get("name") not in (None, name):
        recorded = {}  # recorded for another architecture: none of it applies
    return {**recorded, "name": name}


# The Hub's pipeline tag of each zoo task, and how the card names the model's kind
_PIPELINE_TAGS = {
    "image": "image-classification",
    "video": "video-classification",
    "segmentation": "image-segmentation",
    "detection": "object-detection",
    "pose": "keypoint-detection",
}
_MODEL_TYPES = {
    "image": "Image classification",
    "video": "Video classification",
    "segmentation": "Semantic segmentation",
    "detection": "Object detection and instance segmentation",
    "pose": "Top-down human pose estimation (keypoint heatmaps)",
}


def _num_outputs(model: nn.Module, info: ModelInfo) -> int:
    """The model's class count; a pose model's is its keypoint count (its heatmaps), as ``create_model``'s
    ``num_classes``."""
    return int(model.num_keypoints if info.task == "pose" else model.num_classes)


def hub_config(
    model: nn.Module,
    model_name: str | None = None,
    *,
    class_names: Sequence[str] | None = None,
    clip: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``config.json`` of ``model`` in timm's layout (see the module docstring).

    ``num_classes`` counts a pose model's keypoints. Class names: given, else those that came with the weights,
    else the zoo entry's when the class count matches, else ``"class i"``. Clip (classification models): ``clip``
    over the one that came with the weights over the zoo entry's test views
    (:func:`~uniformer.tasks.classification.config.clip_spec`).
    """
    cfg = _zoo_cfg(model, model_name)
    info = model_info(cfg["name"])
    num_classes = _num_outputs(model, info)
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"save_pretrained: {len(class_names)} class names for a {num_classes}-class model")
    stored = list(class_names) if class_names is not None else cfg.get("classes")
    names = resolve_class_names(num_classes, stored=stored, model=info.name)
    config: dict[str, Any] = dict(architecture=info.name, num_classes=num_classes, label_names=names)
    config["model_args"] = {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.get("overrides", {}).items()}
    spec = None
    if info.task in ("image", "video"):
        spec = clip_spec(info, {**(cfg.get("clip") or {}), **(clip or {})}).to_dict()
        config["num_features"] = int(model.num_features)
        config["global_pool"] = model.global_pool
    size = spec["crop_size"] if spec else info.release().img_size
    config["pretrained_cfg"] = dict(
        input_size=[3, *([spec["num_frames"]] if spec and spec["num_frames"] else []), size, size],
        interpolation="bicubic",
        mean=list(spec["mean"] if spec else info.mean),
        std=list(spec["std"] if spec else info.std),
        crop_pct=spec["crop_pct"] if spec else 1.0,
        num_classes=num_classes,
        license="mit",
        paper_ids="arXiv:2201.09450",
        origin_url="https://github.com/Sense-X/UniFormer",
    )
    if spec is not None:
        config["clip"] = spec
    return config


def _published_metrics(info: ModelInfo) -> dict[str, str]:
    """The release's published numbers as the card shows them (top-1 with its test views; the dense tasks' mIoU,
    box / mask AP and keypoint AP under the zoo's names)."""
    metrics = {}
    for key, value in info.release().metrics.items():
        if key == "top1":
            metrics["Top-1 (published)"] = f"{value:.1f} % ({info.test_clips} clips x {info.test_crops} crops)"
        else:
            metrics[f"{METRIC_LABELS[key]} (published)"] = f"{value:.1f}"
    return metrics


def model_card(config: Mapping[str, Any], repo_name: str, metrics: Mapping[str, Any] | None = None) -> str:
    """The ``README.md`` of a saved model: timm's ``generate_readme`` filled with the zoo facts, the metrics
    (``metrics`` measured by the caller; the zoo's published numbers when the classifier is the released one's)
    and how to load it."""
    info = model_info(config["architecture"])
    details: dict[str, Any] = {
        "Model type": _MODEL_TYPES[info.task],
        "Architecture": f"{info.title} (zoo name `{info.name}`)",
        "Keypoints" if info.task == "pose" else "Classes": config["num_classes"],
    }
    if config.get("model_args"):
        details["Architecture overrides"] = ", ".join(f"{k}={v}" for k, v in config["model_args"].items())
    clip = config.get("clip")
    if clip and clip.get("num_frames"):
        stride = f" x stride {clip['stride']}" if clip.get("stride") else ""
        details["Input"] = f"{clip['num_frames']} frames{stride} ({clip['sampling']}), {clip['crop_size']} px"
    elif clip:
        details["Input"] = f"{clip['crop_size']} px"
    released = config["num_classes"] == info.num_classes and not config.get("model_args")
    measured = {str(k): str(v) for k, v in (metrics or {}).items()}
    shown = {**(_published_metrics(info) if released else {}), **measured}
    if shown:
        details["Metrics"] = shown
    details["Dataset"] = info.dataset if released else "custom"
    details["Papers"] = {"UniFormer": "https://arxiv.org/abs/2201.09450"}
    usage = (
        "```python\nimport uniformer\n\n"
        f'model = uniformer.create_model("{info.name}", pretrained="hf-hub:{repo_name}").eval()\n'
        '```\n\nOr, with the weights in a local folder, `pretrained="local-dir:FOLDER"`; from the command line:\n'
        f"`uniformer predict {'VIDEO' if info.task == 'video' else 'IMAGE'} --model {info.name} --checkpoint FOLDER`.\n"
        + (
            "`config.json` holds the class names (`label_names`) and the test views (`clip`).\n"
            if clip
            else "`config.json` holds the class names (`label_names`).\n"
        )
    )
    task_name = _PIPELINE_TAGS[info.task]
    card = dict(
        tags=[task_name, "uniformer", "pytorch"],
        library_name="uniformer",
        license="mit",
        details=details,
        usage=usage,
        citation=_CITATION,
    )
    return generate_readme(card, repo_name.split("/")[-1], task_name=task_name)


def save_pretrained(
    model: nn.Module,
    save_directory: str | os.PathLike[str],
    model_name: str | None = None,
    *,
    class_names: Sequence[str] | None = None,
    clip: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    repo_name: str | None = None,
) -> Path:
    """Write ``model`` to ``save_directory`` in timm's Hub layout; returns the folder.

    Args:
        model: a model built by :func:`uniformer.create_model` (it records its zoo name, overrides, class names
            and clip), or any zoo architecture with ``model_name`` given.
        model_name: the zoo name (default: the one ``create_model`` recorded).
        class_names, clip: override what came with the weights (see :func:`hub_config`).
        metrics: measured numbers for the model card, e.g. ``{"Top-1 (held-out)": "93.8 %"}``.
        repo_name: the Hub name the card's loading example uses (default: ``ORG/<folder name>``).
    """
    folder = Path(save_directory)
    config = hub_config(model, model_name, class_names=class_names, clip=clip)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    # create_model(pretrained="local-dir:...") must build a model these weights fit: its builder is given the file
    # it will read (from which it takes what only the weights record, e.g. a segmentor's head widths)
    file = CheckpointFile(folder / HUB_WEIGHTS, state, "safetensors", metadata=hub_metadata(config))
    info = model_info(config["architecture"])
    with torch.device("meta"):
        target = info.kind.build(info, config["num_classes"], file.model_overrides, file)
    check_fit(target, state, "save_pretrained: the model's state dict")
    atomic_write(folder / HUB_WEIGHTS, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    atomic_write_text(folder / HUB_CONFIG, json.dumps(config, indent=2) + "\n")
    atomic_write_text(folder / "README.md", model_card(config, repo_name or f"ORG/{folder.resolve().name}", metrics))
    return folder


def push_to_hub(
    model: nn.Module,
    repo_id: str,
    model_name: str | None = None,
    *,
    class_names: Sequence[str] | None = None,
    clip: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    commit_message: str = "Add model",
    private: bool = False,
    token: str | None = None,
    revision: str | None = None,
) -> Any:
    """:func:`save_pretrained` into a temporary folder, then upload it to the Hub repository ``repo_id`` (created
    if missing), as timm's ``push_to_hf_hub`` does. Returns ``HfApi.upload_folder``'s commit info."""
    api = HfApi(token=token, library_name="uniformer")
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp, model_name, class_names=class_names, clip=clip, metrics=metrics, repo_name=repo_id)
        return api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message, revision=revision)
