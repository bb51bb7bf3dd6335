"""UniFormer checkpoints in the layouts of other code bases, mapped to this package's layout as they are read.

:func:`uniformer.models.checkpoint.read_checkpoint` applies :func:`from_foreign_layout` to every state dict, so
``create_model``, fine-tuning, ``convert`` and ``eval`` all see one layout (the official one):

* **mmaction2 recognizers** (``Recognizer3D``, open-mmlab/mmaction2 ``configs/recognition/uniformer``): the
  official backbone keys under ``backbone.`` and the classifier as ``cls_head.fc_cls``. mmaction2 made its files
  from the official ones and "map[ped] the weight according to the label name" to its own Kinetics label order;
  here the classifier becomes ``head`` again and, for a dataset whose mmaction2 class order ships with the package
  (:data:`uniformer.labels.FOREIGN_LABEL_FILES`: Kinetics-400), its rows go back to the official order by class
  name. Rows of another class count keep the file's order (logged).
* **mmpose 1.x top-down models** (``TopdownPoseEstimator``, open-mmlab/mmpose ``projects/uniformer``): the backbone
  as released and the heatmap head renamed from ``keypoint_head.*`` to ``head.*``; it becomes ``keypoint_head.*``
  again.

An official mmdet 2.x detector is mapped beside the detectors (:mod:`uniformer.models.detection.mmdet`).
"""

from __future__ import annotations

import logging

import torch

from uniformer.labels import FOREIGN_LABEL_FILES, load_foreign_labels, load_labels

__all__ = ["from_foreign_layout"]

_logger = logging.getLogger(__name__)

_BACKBONE = "backbone."
_MMACTION2_CLASSIFIER = "cls_head.fc_cls."
_MMPOSE_HEAD, _POSE_HEAD = "head.", "keypoint_head."
_MMPOSE_HEAD_LAYERS = ("head.final_layer.", "head.deconv_layers.")


def _has(state: dict[str, torch.Tensor], *prefixes: str) -> bool:
    return any(key.startswith(prefixes) for key in state)


def from_foreign_layout(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """``state`` in this package's layout when it is an mmaction2 recognizer's or an mmpose 1.x top-down model's;
    any other state dict is returned unchanged. ``source`` names the file in the log."""
    if _has(state, _BACKBONE) and _has(state, _MMACTION2_CLASSIFIER):
        return _from_mmaction2(state, source)
    if _has(state, _BACKBONE) and _has(state, *_MMPOSE_HEAD_LAYERS) and not _has(state, _POSE_HEAD):
        _logger.info("%s: mmpose 1.x top-down model: head.* read as keypoint_head.*", source)
        return {
            _POSE_HEAD + k.removeprefix(_MMPOSE_HEAD) if k.startswith(_MMPOSE_HEAD) else k: v for k, v in state.items()
        }
    return state


def _from_mmaction2(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    mapped = {}
    for key, value in state.items():
        if key.startswith(_BACKBONE):
            mapped[key.removeprefix(_BACKBONE)] = value
        elif key.startswith(_MMACTION2_CLASSIFIER):
            mapped["head." + key.removeprefix(_MMACTION2_CLASSIFIER)] = value
        else:
            mapped[key] = value
    rows = mapped["head.weight"].shape[0] if "head.weight" in mapped else None
    dataset = next(
        (
            dataset
            for codebase, dataset in FOREIGN_LABEL_FILES
            if codebase == "mmaction2" and len(load_labels(dataset)) == rows
        ),
        None,
    )
    if dataset is None:
        _logger.warning(
            "%s: mmaction2 recognizer with a %s-class classifier: no mmaction2 class order ships for it, rows kept "
            "in the file's order",
            source,
            rows,
        )
        return mapped
    row_of = {name: row for row, name in enumerate(load_foreign_labels("mmaction2", dataset) or [])}
    order = torch.tensor([row_of[name] for name in load_labels(dataset)])
    for key in ("head.weight", "head.bias"):
        if key in mapped:
            mapped[key] = mapped[key][order].contiguous()
    _logger.info(
        "%s: mmaction2 recognizer: classifier rows put in the official %s order by class name", source, dataset
    )
    return mapped
