"""Class names of the datasets in the UniFormer model zoo, in the order of the released classifiers.

The Kinetics, Something-Something and ADE20K lists ship as package data (see README.md beside this file), with
the standard ADE20K colour palette; the ImageNet-1K names come from timm, which already ships them.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

__all__ = [
    "DATASET_CATEGORY_ID_FILES",
    "DATASET_LABEL_FILES",
    "DATASET_PALETTE_FILES",
    "FOREIGN_LABEL_FILES",
    "load_category_ids",
    "load_foreign_labels",
    "load_labels",
    "load_palette",
]

# dataset name (as used by the registry) -> label file in this package; ImageNet comes from timm.
DATASET_LABEL_FILES: dict[str, str | None] = {
    "imagenet-1k": None,
    "kinetics-400": "kinetics400.tsv",
    "kinetics-600": "kinetics600.tsv",
    "something-something-v1": "something_something_v1.txt",
    "something-something-v2": "something_something_v2.txt",
    # the motion classes of `uniformer data synth` (uniformer.data.synth.MOTIONS), for the demo model
    "synthetic-motion": "synthetic_motion.txt",
    # the 150 classes of mmseg's ADE20KDataset (annotation value - 1, the released segmentors' channel order)
    "ade20k": "ade20k.txt",
    # the 17 COCO person keypoints in the order of person_keypoints_*.json and of the released heatmap channels
    "coco-keypoints": "coco_keypoints.txt",
    # the 80 COCO detection classes in the contiguous order of mmdet's CocoDataset (detector label = line + 1)
    "coco": "coco.txt",
    # the label index of the official video_classification/data_list (split 1) of UCF101 and HMDB51
    "ucf101": "ucf101.txt",
    "hmdb51": "hmdb51.txt",
}
# (code base, dataset) -> the class order another code base's checkpoints use for the dataset, one name a line
FOREIGN_LABEL_FILES: dict[tuple[str, str], str] = {("mmaction2", "kinetics-400"): "kinetics400_mmaction2.txt"}
# dataset name -> colour file (one "R G B" line per class, in label order) for drawing segmentation maps
DATASET_PALETTE_FILES: dict[str, str] = {"ade20k": "ade20k_palette.txt"}
# dataset name -> the annotation files' category id of each class, one a line in label order (COCO's ids have gaps)
DATASET_CATEGORY_ID_FILES: dict[str, str] = {"coco": "coco_category_ids.txt"}


@lru_cache(maxsize=None)
def _load(dataset: str) -> tuple[str, ...]:
    if dataset not in DATASET_LABEL_FILES:
        raise ValueError(f"no class names for dataset {dataset!r}; known: {', '.join(DATASET_LABEL_FILES)}")
    filename = DATASET_LABEL_FILES[dataset]
    if filename is None:
        from timm.data import ImageNetInfo

        return tuple(ImageNetInfo().label_descriptions(as_dict=False))
    return _read(filename)


@lru_cache(maxsize=None)
def _read(filename: str) -> tuple[str, ...]:
    text = resources.files(__name__).joinpath(filename).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip()]
    if not filename.endswith(".tsv"):
        return tuple(lines)
    # ``name<TAB>index`` rows: order by the index column, which is the classifier row.
    rows = [line.rsplit("\t", 1) for line in lines]
    names = [""] * len(rows)
    for name, index in rows:
        # Kinetics-600's source list writes spaces as underscores; show names as Kinetics-400 does.
        names[int(index)] = name.replace("_", " ")
    if not all(names):
        raise ValueError(f"{filename}: label indices are not a permutation of 0..{len(rows) - 1}")
    return tuple(names)


def load_labels(dataset: str) -> list[str]:
    """Class names of ``dataset`` (e.g. ``"kinetics-400"``) indexed like the released classifier rows."""
    return list(_load(dataset))


def load_foreign_labels(codebase: str, dataset: str) -> list[str] | None:
    """The class names of ``dataset`` in the order ``codebase`` (e.g. ``"mmaction2"``) gives its classifier rows;
    ``None`` when no such list ships here."""
    filename = FOREIGN_LABEL_FILES.get((codebase, dataset))
    return None if filename is None else list(_read(filename))


@lru_cache(maxsize=None)
def _load_palette(dataset: str) -> tuple[tuple[int, int, int], ...]:
    if dataset not in DATASET_PALETTE_FILES:
        raise ValueError(f"no colour palette for dataset {dataset!r}; known: {', '.join(DATASET_PALETTE_FILES)}")
    text = resources.files(__name__).joinpath(DATASET_PALETTE_FILES[dataset]).read_text(encoding="utf-8")
    rows = [line.split() for line in text.splitlines() if line.strip()]
    if not all(len(row) == 3 and all(v.isdigit() and int(v) <= 255 for v in row) for row in rows):
        raise ValueError(f"{DATASET_PALETTE_FILES[dataset]}: every line must be three values 0-255 (R G B)")
    return tuple((int(r), int(g), int(b)) for r, g, b in rows)


def load_palette(dataset: str) -> list[tuple[int, int, int]]:
    """The standard colour of each class of ``dataset`` (e.g. ``"ade20k"``) as (R, G, B), in label order."""
    return list(_load_palette(dataset))


def load_category_ids(dataset: str) -> list[int]:
    """The annotation category id of each class of ``dataset`` (e.g. ``"coco"``: 1 .. 90 with gaps), in label
    order: class ``i`` (detector label ``i + 1``) is category ``load_category_ids(dataset)[i]``."""
    if dataset not in DATASET_CATEGORY_ID_FILES:
        raise ValueError(f"no category ids for dataset {dataset!r}; known: {', '.join(DATASET_CATEGORY_ID_FILES)}")
    text = resources.files(__name__).joinpath(DATASET_CATEGORY_ID_FILES[dataset]).read_text(encoding="utf-8")
    return [int(line) for line in text.splitlines() if line.strip()]
