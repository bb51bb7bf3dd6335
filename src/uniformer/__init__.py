"""UniFormer for images and videos: the official checkpoints loaded exactly, training and fast inference.

Quick start::

    import uniformer
    uniformer.list_models("*k400*")
    model = uniformer.create_model("uniformer_small_k400_16x4", checkpoint_path="uniformer_small_k400_16x4.pth")

Importing this package also registers the image models with timm (``timm.create_model("uniformer_small")``).
"""

from uniformer.deploy import push_to_hub, save_pretrained
from uniformer.labels import load_labels
from uniformer.models import (
    DATASETS,
    CheckpointError,
    ModelInfo,
    UniFormer,
    convert_checkpoint,
    create_model,
    inflate_2d_to_3d,
    list_models,
    load_checkpoint,
    model_info,
    optimize_for_inference,
    set_formulation,
)

__version__ = "0.1.0"

__all__ = [
    "DATASETS",
    "CheckpointError",
    "ModelInfo",
    "UniFormer",
    "convert_checkpoint",
    "create_model",
    "inflate_2d_to_3d",
    "list_models",
    "load_checkpoint",
    "load_labels",
    "model_info",
    "optimize_for_inference",
    "push_to_hub",
    "save_pretrained",
    "set_formulation",
    "__version__",
]
