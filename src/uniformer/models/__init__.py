"""UniFormer networks, the model zoo and checkpoint handling."""

from uniformer.models.checkpoint import (
    CheckpointError,
    CheckpointFile,
    checkpoint_filter_fn,
    inflate_2d_to_3d,
    load_checkpoint,
    read_checkpoint,
    read_state_dict,
)
from uniformer.models.complexity import count_gmacs, count_parameters, measure_model
from uniformer.models.convert import convert_checkpoint
from uniformer.models.detection import UniFormerCascadeMaskRCNN, UniFormerMaskRCNN, build_detector, build_mask_rcnn
from uniformer.models.download import ChecksumError, fetch_release
from uniformer.models.factory import create_model
from uniformer.models.optimize import fold_batchnorms, optimize_for_inference
from uniformer.models.segmentor import UniFormerSegmentor, build_segmentor
from uniformer.models.uniformer import UniFormer, set_formulation
from uniformer.models.zoo.catalog import list_models, model_info
from uniformer.models.zoo.datasets import DATASETS
from uniformer.models.zoo.schema import ModelInfo, Release
from uniformer.models.zoo.sources import DriveFile, HubFile, UrlFile

__all__ = [
    "UniFormer",
    "set_formulation",
    "CheckpointError",
    "CheckpointFile",
    "checkpoint_filter_fn",
    "convert_checkpoint",
    "ChecksumError",
    "fetch_release",
    "inflate_2d_to_3d",
    "load_checkpoint",
    "read_checkpoint",
    "read_state_dict",
    "count_gmacs",
    "count_parameters",
    "measure_model",
    "fold_batchnorms",
    "optimize_for_inference",
    "DATASETS",
    "ModelInfo",
    "Release",
    "HubFile",
    "UrlFile",
    "DriveFile",
    "create_model",
    "list_models",
    "model_info",
    "UniFormerSegmentor",
    "build_segmentor",
    "UniFormerMaskRCNN",
    "build_mask_rcnn",
    "UniFormerCascadeMaskRCNN",
    "build_detector",
]
