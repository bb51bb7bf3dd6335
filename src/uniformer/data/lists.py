"""Readers for the list formats video datasets ship with, all producing one :class:`VideoList`.

| format | files | label |
|---|---|---|
| ``kinetics`` | txt/csv lines ``path label`` (space or comma), or ``path num_frames label`` (UniFormer's Something-Something lists) | integer, or a class name when ``classes`` is given |
| ``ssv2`` | ``something-something-v2-{train,validation,test}.json`` + ``something-something-v2-labels.json``, videos ``<id>.webm`` | template with ``[]`` removed, looked up in the labels json |
| ``ssv1`` | ``something-something-v1-{train,validation}.csv`` (``id;label name``) + ``something-something-v1-labels.csv``, frame folders ``<id>/00001.jpg`` | line number of the name in the labels csv |
| ``ucf101`` | ``trainlist0N.txt`` / ``testlist0N.txt`` + ``classInd.txt`` | 1-based class number in the list, or the class folder |
| ``hmdb51`` | ``<class>_test_splitN.txt`` (``video 1|2|0``: train/test/unused) | sorted class names |
| ``folder`` | ``root/<class>/<video file or frame folder>`` | sorted folder names |
| ``webdataset`` | a shard folder's ``index.json`` (:func:`uniformer.data.shards.write_shards`), tar shards beside it | stored with each sample, class names in the index |

Relative paths are resolved against ``root`` (by default the list file's folder). The list formats also read a
remote ``root`` and list files (fsspec URLs, :mod:`uniformer.data.remote`). Errors name the file and line.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from uniformer.data.decode import is_video_path
from uniformer.data.images import IMAGE_EXTENSIONS
from uniformer.data.remote import is_url, join, read_bytes, read_text

FORMATS: tuple[str, ...] = ("kinetics", "ssv2", "ssv1", "ucf101", "hmdb51", "folder", "webdataset")
LIST_FORMATS: tuple[str, ...] = ("kinetics", "ssv1", "ssv2", "ucf101", "webdataset")  # need a list file
INDEX_KIND = "uniformer-webdataset-index"  # the "kind" of a shard folder's index.json
IMAGE_FORMAT = "imagefolder"  # ImageNet-style root/<split>/<class>/<image>, for the image models


@dataclass(frozen=True)
class ShardMember:
    """Where a video lies inside a shard: its member name and the byte range of its data in the tar file."""

    name: str
    offset: int
    size: int


@dataclass(frozen=True)
class VideoRecord:
    """One video: a file or a frame folder, its label (-1 when unknown, e.g. a test split), and the frame count
    the list claims (``None`` unless the format carries one; decoding always measures the real count). A video
    packed in a WebDataset shard has the shard as ``path`` and its place in it as ``member``. A record with a
    ``span`` is the part of the video from frame ``start`` up to (not including) frame ``end``: its clips are
    sampled within that part as from a video of ``end - start`` frames (a window of a long video's timeline)."""

    path: str
    label: int
    num_frames: int | None = None
    member: ShardMember | None = None
    span: tuple[int, int] | None = None

    @property
    def name(self) -> str:
        """How the video is named in messages and failure reports: its path, or ``shard.tar/member``."""
        return self.path if self.member is None else f"{self.path}/{self.member.name}"

    def source(self) -> str | bytes:
        """What the decoder reads: the path (local or URL), or the video's bytes read from its shard with one
        byte-range request."""
        if self.member is None:
            return self.path
        return read_bytes(self.path, self.member.offset, self.member.offset + self.member.size)


@dataclass
class VideoList:
    """The videos of one split plus the class names (``None`` when the format has no names)."""

    records: list[VideoRecord]
    classes: list[str] | None = None
    num_classes: int = field(init=False)

    def __post_init__(self) -> None:
        labelled = [r.label for r in self.records if r.label >= 0]
        self.num_classes = len(self.classes) if self.classes is not None else (max(labelled) + 1 if labelled else 0)

    def __len__(self) -> int:
        return len(self.records)


def _resolve(root: str | os.PathLike[str], path: str) -> str:
    return join(root, path)


def _read(path: str | os.PathLike[str]) -> str:
    """A list or labels file, local or at a URL."""
    if not is_url(path) and not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: list file not found")
    return read_text(path)


def _lines(path: str | os.PathLike[str]) -> list[tuple[int, str]]:
    return [(n, line.strip()) for n, line in enumerate(_read(path).splitlines(), 1) if line.strip()]


def read_classes(path: str | os.PathLike[str]) -> list[str]:
    """Class names in label order from one of: a name per line (``classes.txt``, Something-Something V1's labels
    csv), ``name<TAB>index`` lines (the package's Kinetics tsv) or ``index name`` lines (UCF101's
    ``classInd.txt``, 1-based)."""
    lines = [line for _, line in _lines(path)]
    if lines and all("\t" in line and line.rsplit("\t", 1)[1].isdigit() for line in lines):
        pairs = [(int(i), name) for name, i in (line.rsplit("\t", 1) for line in lines)]
    elif lines and all(len(line.split(None, 1)) == 2 and line.split(None, 1)[0].isdigit() for line in lines):
        pairs = [(int(i), name.strip()) for i, name in (line.split(None, 1) for line in lines)]
    else:
        return lines
    return [name for _, name in sorted(pairs)]


def read_kinetics_list(
    list_file: str | os.PathLike[str], root: str | os.PathLike[str] | None = None, classes: Sequence[str] | None = None
) -> VideoList:
    """``path label`` lines (PySlowFast's Kinetics csv; space, tab or comma separated), or ``path num_frames label``
    (the Something-Something lists of the official code). The label is an integer or, with ``classes``, a name."""
    if root is None:
        root = posixpath.dirname(list_file) if is_url(list_file) else os.path.dirname(os.path.abspath(list_file))
    index = {name: i for i, name in enumerate(classes)} if classes is not None else None
    records = []
    for number, line in _lines(list_file):
        fields = line.split() if len(line.split()) > 1 else line.rsplit(",", 1)
        if not (len(fields) == 2 or len(fields) == 3 and fields[1].isdigit()):
            raise ValueError(
                f"{list_file}:{number}: expected 'path label', 'path,label' or 'path num_frames label', got {line!r}"
            )
        path, label_text = fields[0].strip(), fields[-1].strip()
        count = int(fields[1]) if len(fields) == 3 else None
        if label_text.lstrip("-").isdigit():
            label = int(label_text)
        elif index is not None and label_text in index:
            label = index[label_text]
        else:
            raise ValueError(f"{list_file}:{number}: label {label_text!r} is not an integer or a known class name")
        records.append(VideoRecord(_resolve(root, path), label, count))
    if not records:
        raise ValueError(f"{list_file}: list file holds no videos")
    return VideoList(records, list(classes) if classes is not None else None)


def read_ssv2(
    annotation_json: str | os.PathLike[str],
    labels_json: str | os.PathLike[str],
    root: str | os.PathLike[str],
    extension: str = ".webm",
) -> VideoList:
    """Something-Something V2: ``[{"id": "78687", "template": "Holding [something] next to [something]", ...}]``
    with labels ``{"Holding something next to something": "41", ...}``. Test entries carry no template: label -1."""
    label_map = {name: int(i) for name, i in json.loads(_read(labels_json)).items()}
    classes = [name for name, _ in sorted(label_map.items(), key=lambda kv: kv[1])]
    entries = json.loads(_read(annotation_json))
    records = []
    for n, entry in enumerate(entries):
        if "id" not in entry:
            raise ValueError(f"{annotation_json}: entry {n} has no 'id' field")
        label = -1
        if "template" in entry:
            name = entry["template"].replace("[", "").replace("]", "")
            if name not in label_map:
                raise ValueError(f"{annotation_json}: entry {n} template {name!r} is not in {labels_json}")
            label = label_map[name]
        records.append(VideoRecord(_resolve(root, f"{entry['id']}{extension}"), label))
    return VideoList(records, classes)


def read_ssv1(
    csv_file: str | os.PathLike[str], labels_csv: str | os.PathLike[str], root: str | os.PathLike[str]
) -> VideoList:
    """Something-Something V1: ``100218;Something falling like a feather or paper`` lines, names listed one per
    line in the labels csv, frames in ``root/<id>/``. A line with only an id (test split) gets label -1."""
    classes = read_classes(labels_csv)
    index = {name: i for i, name in enumerate(classes)}
    records = []
    for number, line in _lines(csv_file):
        video_id, _, name = line.partition(";")
        label = -1
        if name:
            if name not in index:
                raise ValueError(f"{csv_file}:{number}: label {name!r} is not in {labels_csv}")
            label = index[name]
        records.append(VideoRecord(_resolve(root, video_id.strip()), label))
    return VideoList(records, classes)


def read_ucf101(
    split_file: str | os.PathLike[str], class_index: str | os.PathLike[str], root: str | os.PathLike[str]
) -> VideoList:
    """UCF101 ``trainlist0N.txt`` (``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1``, 1-based) or ``testlist0N.txt``
    (no label: taken from the class folder), with ``classInd.txt``."""
    classes = read_classes(class_index)
    index = {name: i for i, name in enumerate(classes)}
    records = []
    for number, line in _lines(split_file):
        fields = line.split()
        if len(fields) == 2:
            label = int(fields[1]) - 1
        else:
            folder = fields[0].split("/")[0]
            if folder not in index:
                raise ValueError(f"{split_file}:{number}: class folder {folder!r} is not in {class_index}")
            label = index[folder]
        if not 0 <= label < len(classes):
            raise ValueError(f"{split_file}:{number}: label {label + 1} is outside 1..{len(classes)}")
        records.append(VideoRecord(_resolve(root, fields[0]), label))
    return VideoList(records, classes)


def read_hmdb51(
    splits_dir: str | os.PathLike[str], root: str | os.PathLike[str], split: str = "train", split_id: int = 1
) -> VideoList:
    """HMDB51 split files ``<class>_test_split<N>.txt`` with lines ``video.avi 1|2|0`` (train / test / unused);
    videos in ``root/<class>/``; classes in sorted order."""
    wanted = {"train": "1", "test": "2", "val": "2"}.get(split)
    if wanted is None:
        raise ValueError(f"HMDB51 split must be 'train' or 'test', got {split!r}")
    suffix = f"_test_split{split_id}.txt"
    files = sorted(p for p in Path(splits_dir).iterdir() if p.name.endswith(suffix))
    if not files:
        raise FileNotFoundError(f"{splits_dir}: no '*{suffix}' split files")
    classes = [p.name[: -len(suffix)] for p in files]
    records = []
    for label, split_path in enumerate(files):
        for number, line in _lines(split_path):
            fields = line.split()
            if len(fields) != 2:
                raise ValueError(f"{split_path}:{number}: expected 'video.avi 0|1|2', got {line!r}")
            if fields[1] == wanted:
                records.append(VideoRecord(_resolve(root, os.path.join(classes[label], fields[0])), label))
    return VideoList(records, classes)


def read_folder_tree(root: str | os.PathLike[str]) -> VideoList:
    """``root/<class>/<video>``: every video file or frame folder under a class folder, classes sorted by name."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root}: dataset folder not found")
    classes = sorted(d.name for d in os.scandir(root) if d.is_dir() and not d.name.startswith("."))
    records = []
    for label, name in enumerate(classes):
        for entry in sorted(os.scandir(os.path.join(root, name)), key=lambda e: e.name):
            is_frames = entry.is_dir() and any(
                Path(f).suffix.lower() in IMAGE_EXTENSIONS for f in os.listdir(entry.path)
            )
            if is_frames or entry.is_file() and is_video_path(entry.name):
                records.append(VideoRecord(entry.path, label))
    if not records:
        raise ValueError(f"{root}: no videos found in class sub-folders")
    return VideoList(records, classes)


def read_shard_index(index_file: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> VideoList:
    """The videos of a shard folder's ``index.json`` (local or at a URL) as a :class:`VideoList` whose records
    point into the shards (``root``: where the shards are; by default beside the index)."""
    index_file = os.fspath(index_file)
    try:
        index = json.loads(read_text(index_file))
    except FileNotFoundError:
        raise FileNotFoundError(f"{index_file}: shard index not found (written by `uniformer data shard`)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{index_file}: not a shard index: {exc}") from exc
    if not isinstance(index, dict) or index.get("kind") != INDEX_KIND:
        raise ValueError(f'{index_file}: not a shard index (no "kind": "{INDEX_KIND}")')
    if root is None:
        root = posixpath.dirname(index_file) if is_url(index_file) else os.path.dirname(os.path.abspath(index_file))
    shards = [join(root, name) for name in index["shards"]]
    records = []
    for n, sample in enumerate(index["samples"]):
        try:
            member = ShardMember(f"{sample['key']}.{sample['ext']}", int(sample["offset"]), int(sample["size"]))
            records.append(VideoRecord(shards[int(sample["shard"])], int(sample["label"]), member=member))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ValueError(f"{index_file}: sample {n} is malformed ({type(exc).__name__}: {exc})") from exc
    if not records:
        raise ValueError(f"{index_file}: the shard index holds no samples")
    return VideoList(records, index.get("classes"))


def read_video_list(
    format: str,
    root: str | os.PathLike[str],
    *,
    list_file: str | os.PathLike[str] | None = None,
    labels_file: str | os.PathLike[str] | None = None,
    split: str = "train",
    split_id: int = 1,
    extension: str = ".webm",
) -> VideoList:
    """Dispatch to the reader of ``format`` (see the table in this module's docstring).

    ``list_file`` is the split's list (kinetics, ssv1, ssv2, ucf101; the shard index for webdataset) or the splits folder (hmdb51; defaults to
    ``root``); ``labels_file`` the class names file (required for ssv1, ssv2, ucf101; optional for kinetics).
    """
    if format not in FORMATS:
        raise ValueError(f"dataset format must be one of {', '.join(FORMATS)}, got {format!r}")
    if format in ("folder", "hmdb51") and is_url(root):
        raise ValueError(f"{root}: the {format} format walks a local folder; a remote root needs a list format")
    if format == "folder":
        return read_folder_tree(os.path.join(root, split) if os.path.isdir(os.path.join(root, split)) else root)
    if format == "hmdb51":
        return read_hmdb51(list_file or root, root, split, split_id)
    if list_file is None:
        raise ValueError(f"dataset format {format!r} needs list_file")
    if format == "webdataset":
        return read_shard_index(list_file)
    if format == "kinetics":
        classes = read_classes(labels_file) if labels_file else None
        return read_kinetics_list(list_file, root, classes)
    if labels_file is None:
        raise ValueError(f"dataset format {format!r} needs labels_file")
    if format == "ssv2":
        return read_ssv2(list_file, labels_file, root, extension)
    if format == "ssv1":
        return read_ssv1(list_file, labels_file, root)
    return read_ucf101(list_file, labels_file, root)
