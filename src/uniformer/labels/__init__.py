"""Class names of the datasets in the UniFormer model zoo, in the order of the released classifiers.

The Kinetics and Something-Something lists ship as package data (see README.md beside this file); the
ImageNet-1K names come from timm, which already ships them.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

__all__ = ["DATASET_LABEL_FILES", "load_labels"]

# dataset name (as used by the registry) -> label file in this package; ImageNet comes from timm.
DATASET_LABEL_FILES: dict[str, str | None] = {
    "imagenet-1k": None,
    "kinetics-400": "kinetics400.tsv",
    "kinetics-600": "kinetics600.tsv",
    "something-something-v1": "something_something_v1.txt",
    "something-something-v2": "something_something_v2.txt",
    # the motion classes of `uniformer data synth` (uniformer.data.synth.MOTIONS), for the demo model
    "synthetic-motion": "synthetic_motion.txt",
}


@lru_cache(maxsize=None)
def _load(dataset: str) -> tuple[str, ...]:
    if dataset not in DATASET_LABEL_FILES:
        raise ValueError(f"no class names for dataset {dataset!r}; known: {', '.join(DATASET_LABEL_FILES)}")
    filename = DATASET_LABEL_FILES[dataset]
    if filename is None:
        from timm.data import ImageNetInfo

        return tuple(ImageNetInfo().label_descriptions(as_dict=False))
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
