"""Where a classification UniFormer looks: class activation maps, Grad-CAM, attention and stage features.

* :mod:`.maps`: the four maps on a batch of model inputs (``cam``, ``gradcam``, ``attention``, ``features``),
  as tensors at the resolution of the stage they read;
* :mod:`.inputs`: a file decoded into the model's test view and the frames it came from, and how they align;
* :mod:`.explain`: :func:`explain` / :func:`explain_files`, one :class:`Explanation` per input, its map in the
  frames' own geometry;
* :mod:`.render`: the PNG, GIF, MP4 and JSON a person looks at (``uniformer explain``);
* :mod:`.localisation`: how much of a map's mass lies on a known object, against a centred blob.

The model is never changed: no attribute is set, hooks are removed after each pass, no gradient is stored on a
parameter, and its outputs are bit-identical before and after an explanation.
"""

from uniformer.explain.explain import Explanation, explain, explain_files, resolve_target
from uniformer.explain.inputs import ExplainInput, ViewGeometry, ViewSpec, load_input
from uniformer.explain.localisation import (
    MotionLocalisation,
    centred_blob,
    mass_ratio,
    motion_localisation,
    motion_regions,
)
from uniformer.explain.maps import (
    METHODS,
    attention_received,
    class_activation_map,
    default_stage,
    grad_cam,
    min_max,
    stage_features,
    upsample,
)

__all__ = [
    "METHODS",
    "ExplainInput",
    "MotionLocalisation",
    "Explanation",
    "ViewGeometry",
    "ViewSpec",
    "attention_received",
    "centred_blob",
    "class_activation_map",
    "default_stage",
    "explain",
    "explain_files",
    "grad_cam",
    "load_input",
    "mass_ratio",
    "min_max",
    "motion_localisation",
    "motion_regions",
    "resolve_target",
    "stage_features",
    "upsample",
]
