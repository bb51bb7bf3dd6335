"""What a pose prediction is for a user: the people in an image, each a box, 2-D keypoints with confidences and
a score, drawn as skeletons (``torchvision.utils.draw_keypoints``) and written as JSON.

People come from a boxes file (``--boxes FILE``: ``{"image name or path": [[x, y, w, h(, score)], ...]}``), from a
detection zoo model (``--detector NAME``: the engine builds its predictor, :class:`PersonDetector` keeps its
``person`` boxes), or, without either, the whole image is one person box. Each box is cropped and tested as ``uniformer eval`` tests (flip
test, :meth:`~uniformer.tasks.pose.codec.MSRAHeatmap.decode`, the person score of mmpose's rescoring).
"""

from __future__ import annotations

import colorsys
import difflib
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from torchvision.ops import box_convert
from torchvision.utils import draw_keypoints

from uniformer._fileio import atomic_write_text, read_json
from uniformer.data.images import DecodeError, image_files, image_size, read_image
from uniformer.models.checkpoint import CheckpointFile
from uniformer.models.zoo.schema import ModelInfo
from uniformer.tasks import base
from uniformer.tasks.base import PredictorRequest
from uniformer.tasks.pose.coco import COCO_SIGMAS, COCO_SKELETON, Instance
from uniformer.tasks.pose.codec import MSRAHeatmap
from uniformer.tasks.pose.data import PoseDataset
from uniformer.tasks.pose.metrics import rescore
from uniformer.tasks.pose.transforms import EvalTransform

__all__ = [
    "PosePredictTask",
    "DetectionPredictor",
    "PersonDetector",
    "Prediction",
    "PredictionSetup",
    "check_boxes",
    "draw_people",
    "pose_image",
    "read_boxes",
]

logger = logging.getLogger("uniformer.tasks")

# mmpose 0.x demo/top_down_img_demo_with_mmdet.py: --det-cat-id 1 (person), --bbox-thr 0.3
PERSON_SCORE_THRESHOLD = 0.3
FLIP_TEST = {"flip_test": True}  # the model's call when predicting: the official test's flip test


class _Labelled(Protocol):
    labels: list[str]


class _Detected(Protocol):
    """One image's detections as a detection prediction holds them (boxes x1 y1 x2 y2, labels 1 .. C, scores)."""

    path: str
    error: str | None
    boxes: np.ndarray | None
    labels: list[int]
    scores: list[float]


class DetectionPredictor(Protocol):
    """What pose uses of a detector: the engine's :class:`~uniformer.engine.Predictor` of a detection zoo model
    (its setup's class names; per image its boxes, class names and scores, or why it could not be read)."""

    @property
    def setup(self) -> _Labelled: ...

    def predict(self, paths: Sequence[str], topk: int = 5, progress: bool = False) -> Sequence[_Detected]: ...


@dataclass(frozen=True)
class PersonDetector:
    """The people a top-down pose model then looks at: ``predictor``'s boxes of the class named ``person`` (label
    ``label``) scoring above its score threshold, as mmpose's demo with an mmdet detector finds them."""

    predictor: DetectionPredictor
    label: int  # the detector's label of the person class

    @classmethod
    def of(cls, predictor: DetectionPredictor, flag: str, name: str) -> PersonDetector:
        """The person class of ``predictor`` (zoo model ``name``, given by option ``flag``); refused without one."""
        labels = predictor.setup.labels
        if "person" not in labels:
            shown = ", ".join(labels[:8]) + (", ..." if len(labels) > 8 else "")
            raise ValueError(f"{flag} {name}: its classes ({shown}) have no 'person'")
        return cls(predictor, labels.index("person") + 1)

    def people(self, paths: Sequence[str]) -> tuple[dict[str, list[list[float]]], dict[int, str]]:
        """The person boxes ``[x, y, w, h, score]`` of every readable image (by path), and the unreadable ones
        (input index -> reason)."""
        boxes, errors = {}, {}
        for n, found in enumerate(self.predictor.predict(paths, topk=0)):
            if found.error:
                errors[n] = found.error
                continue
            person = torch.tensor(found.labels, dtype=torch.long) == self.label
            xywh = box_convert(torch.as_tensor(found.boxes).reshape(-1, 4)[person], "xyxy", "xywh")
            scores = torch.tensor(found.scores)[person]
            boxes[found.path] = [[*map(float, box), float(score)] for box, score in zip(xywh, scores, strict=True)]
        return boxes, errors


@dataclass(frozen=True)
class PredictionSetup:
    """Keypoint names and limbs, the test crop (H, W) and normalisation; the boxes and output folder of options."""

    keypoints: list[str]
    skeleton: list[tuple[int, int]]
    input_size: list[int]
    mean: list[float]
    std: list[float]
    vis_thr: float = 0.2
    boxes: dict[str, list[list[float]]] | None = None
    boxes_source: str | None = None  # where ``boxes`` came from, as messages name it ("--boxes FILE")
    detector_request: PredictorRequest | None = None  # from --detector, until the engine builds it
    detector: PersonDetector | None = None
    out_dir: Path | None = None


def read_boxes(path: str | os.PathLike[str]) -> dict[str, list[list[float]]]:
    """A boxes file: a JSON object from image name (or path) to a list of ``[x, y, w, h]`` or ``[x, y, w, h,
    score]``; a malformed file is refused naming the entry (:func:`check_boxes`)."""
    return check_boxes(read_json(path, "--boxes"), f"--boxes {path}")


def check_boxes(data: object, source: str) -> dict[str, list[list[float]]]:
    """``data`` as person boxes by image (``{image: [[x, y, w, h(, score)], ...]}``, finite numbers, positive
    width and height); anything else is refused naming ``source`` (``--boxes FILE``), the image and the box."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected an object {{image: [[x, y, w, h(, score)], ...]}}")
    for name, boxes in data.items():
        if not isinstance(boxes, list) or not all(
            isinstance(b, list) and len(b) in (4, 5) and all(_is_number(v) for v in b) for b in boxes
        ):
            raise ValueError(f"{source}: {name!r}: expected a list of [x, y, w, h] or [x, y, w, h, score]")
        for k, box in enumerate(boxes):
            if not all(math.isfinite(v) for v in box):
                raise ValueError(f"{source}: {name!r}: box {k} {box} has a value that is not finite")
            if box[2] <= 0 or box[3] <= 0:
                raise ValueError(f"{source}: {name!r}: box {k} {box} has no area (w and h must be > 0)")
    return data


def _is_number(value: object) -> bool:
    """A JSON number (``true`` and ``false`` are not, though Python counts them as ints)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _misplaced(box: Sequence[float], width: int, height: int) -> str | None:
    """What is wrong with an ``[x, y, w, h]`` box on a ``width`` x ``height`` image, or ``None``: it must share
    area with the image and reach past it by no more than the image's own width and height (a person partly out
    of the frame is fine; a box many times the image's size is a wrong unit or a typo)."""
    x, y, w, h = box[:4]
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        return f"lies outside the {width}x{height} image"
    if x < -width or y < -height or x + w > 2 * width or y + h > 2 * height:
        return (
            f"reaches past the {width}x{height} image by more than its size (a box may extend past the image by at "
            "most its width and height)"
        )
    return None


def _no_entry(path: str, boxes: Mapping[str, object], source: str | None) -> str:
    """The error of an input the boxes file has no entry for, with the closest key (a misspelt name)."""
    name = os.path.basename(path)
    close = difflib.get_close_matches(name, list(boxes), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{source}: no entry for {name} (an image without people needs {name!r}: []){hint}"


class _Persons:
    """The accumulator of a prediction run: each crop's keypoints (K, 3), or the reason its image failed."""

    def __init__(self, num_items: int, codec: MSRAHeatmap) -> None:
        self.num_items, self.codec = num_items, codec
        self.keypoints: dict[int, np.ndarray] = {}
        self.failed: dict[int, str] = {}

    def indices(self, rank: int, world_size: int) -> list[int]:
        return list(range(self.num_items))

    def update(self, output: torch.Tensor, batch: dict[str, Any]) -> None:
        points, scores = self.codec.decode(output, batch["center"], batch["scale"])
        for i, (index, ok) in enumerate(zip(batch["index"].tolist(), batch["valid"].tolist(), strict=True)):
            if ok:
                self.keypoints[index] = torch.cat([points[i], scores[i, :, None]], dim=1).numpy()
            else:
                self.failed[index] = batch["error"][i]


@dataclass
class Prediction(base.Prediction):
    """The people of one image: ``persons`` of ``{"box", "score", "keypoints": [[x, y, confidence], ...]}``,
    best first, and the files ``--out`` wrote for it."""

    path: str
    persons: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    files: list[str] = field(default_factory=list)

    def ranked(self) -> list[tuple[str, float]]:
        return [
            (f"person {k} (box {', '.join(f'{v:.0f}' for v in p['box'])})", p["score"])
            for k, p in enumerate(self.persons)
        ]

    def lines(self, topk: int) -> list[str]:
        """The title and the people, or a line saying that none was found."""
        lines = super().lines(topk)
        return lines if self.error or self.persons else [*lines, "  no person found"]

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "error": self.error, "persons": self.persons, "files": self.files}


def draw_people(
    image: torch.Tensor, persons: Sequence[dict[str, Any]], skeleton: Sequence[tuple[int, int]], vis_thr: float = 0.2
) -> torch.Tensor:
    """``image`` (3, H, W) uint8 with each person's skeleton drawn (keypoints above ``vis_thr`` only): in red, or,
    for people tracked through a video (an ``id`` each), in a colour of their own."""
    if not persons:
        return image
    radius = max(2, round(min(image.shape[-2:]) / 120))
    groups = [(persons, "red")] if "id" not in persons[0] else [([p], _id_colour(p["id"])) for p in persons]
    for group, colour in groups:
        points = torch.tensor([[kp[:2] for kp in p["keypoints"]] for p in group], dtype=torch.float32)
        visible = torch.tensor([[kp[2] > vis_thr for kp in p["keypoints"]] for p in group])
        image = draw_keypoints(
            image, points, connectivity=list(skeleton), colors=colour, radius=radius, width=radius, visibility=visible
        )
    return image


def _id_colour(track_id: int) -> tuple[int, int, int]:
    """A bright colour of its own for each tracked person (golden-ratio steps around the hue circle)."""
    hue = (track_id * 0.618033988749895) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.9, 1.0)
    return round(255 * red), round(255 * green), round(255 * blue)


def pose_image(path: str | os.PathLike[str], persons: Sequence[dict[str, Any]], setup: PredictionSetup) -> Image.Image:
    """The image at ``path`` with the skeletons of ``persons`` drawn (:func:`draw_people`)."""
    drawn = draw_people(read_image(os.fspath(path)), persons, setup.skeleton, setup.vis_thr)
    return Image.fromarray(drawn.permute(1, 2, 0).numpy())


class PosePredictTask(base.PredictTask[PredictionSetup, Prediction]):
    """The prediction half of the pose task."""

    def prediction_setup(
        self, info: ModelInfo, model: nn.Module, file: CheckpointFile | None, labels: Sequence[str] | None
    ) -> PredictionSetup:
        """Names (given, else stored with the weights, else the zoo's), the crop and normalisation of the weights'
        training run (else the zoo entry's)."""
        count = model.num_keypoints
        stored = None if file is None else file.class_names
        names = list(labels) if labels is not None else stored or (info.labels if info.num_classes == count else None)
        names = names or [f"keypoint {i}" for i in range(count)]
        if len(names) != count:
            raise ValueError(f"{len(names)} keypoint names for a {count}-keypoint model")
        data = ((file.config if file is not None else None) or {}).get("data") or {}
        return PredictionSetup(
            keypoints=names,
            skeleton=list(COCO_SKELETON) if count == len(COCO_SIGMAS) else [],  # COCO limbs for COCO keypoints
            input_size=list(data.get("input_size") or info.release().input_hw or (info.release().img_size,) * 2),
            mean=list(data.get("mean") or info.mean),
            std=list(data.get("std") or info.std),
        )

    options = (
        base.Option("--boxes", "FILE", "person boxes per image (JSON: image -> [[x, y, w, h(, score)], ...])"),
        base.Option("--detector", "NAME", "a detection zoo model finds the people (default: the whole image)"),
        base.Option("--detector-checkpoint", "FILE", "the detector's weights"),
        base.Option("--person-score-threshold", "T", "the detector's person boxes scoring above T (0.3)", type=float),
        base.Option("--out", "DIR", "skeleton PNGs and keypoints JSON per image"),
    )

    def prediction_options(self, setup: PredictionSetup, values: Mapping[str, Any]) -> PredictionSetup:
        """The people from ``--boxes FILE`` or from ``--detector NAME [--detector-checkpoint FILE]
        [--person-score-threshold T]`` (a request for the engine's detection predictor), and ``--out DIR``
        (skeleton PNGs and keypoints JSON per image)."""
        boxes, detector, threshold = values.get("boxes"), values.get("detector"), values.get("person_score_threshold")
        if boxes and detector:
            raise ValueError("pose options: give the people by --boxes FILE or by --detector NAME, not both")
        if detector is None and (values.get("detector_checkpoint") or threshold is not None):
            raise ValueError("pose options: --detector-checkpoint and --person-score-threshold need --detector NAME")
        request = None
        if detector:
            threshold = PERSON_SCORE_THRESHOLD if threshold is None else threshold
            if not 0 <= threshold <= 1:
                raise ValueError(f"--person-score-threshold must be in [0, 1], got {threshold}")
            checkpoint, options = values.get("detector_checkpoint"), {"score_threshold": threshold}
            request = PredictorRequest(detector, "detection", "--detector", checkpoint, options)
        return replace(
            setup,
            boxes=read_boxes(boxes) if boxes else None,
            boxes_source=f"--boxes {boxes}" if boxes else None,
            detector_request=request,
            detector=None,
            out_dir=base.check_folder(values["out"], "--out") if values.get("out") else None,
        )

    def check_out_dir(self, out_dir: Path) -> None:
        """Refused: a pose model writes its files with its own ``--out DIR``, as it predicts."""
        raise ValueError("pose models write their skeleton PNGs and keypoints JSON with --out DIR, not --out-dir")

    def predict(
        self, model: nn.Module, paths: Sequence[str], setup: PredictionSetup, run: base.Run, topk: int
    ) -> list[Prediction]:
        """The people of every image (boxes from ``setup.boxes`` or ``setup.detector``, else the whole image), in
        input order, best first (all of them: ``topk`` cuts the printed listing only); with ``setup.out_dir`` each image's skeletons (``<stem>_pose.png``) and keypoints
        (``<stem>_keypoints.json``)."""
        paths = image_files(paths)  # a folder: its images
        given, errors = setup.boxes, {}
        if given is not None:
            names = {*paths, *(os.path.basename(p) for p in paths)}
            unmatched = sorted(key for key in given if key not in names)
            if unmatched:
                logger.warning("--boxes: no input is named %s (those boxes are not used)", ", ".join(unmatched[:10]))
        if setup.detector is not None:
            given, errors = setup.detector.people(paths)
        instances, owner = [], []
        for n, path in enumerate(paths):
            if n in errors:
                continue
            if given is not None:
                boxes = given.get(path, given.get(os.path.basename(path)))
                if boxes is None and setup.boxes is not None:
                    errors[n] = _no_entry(path, given, setup.boxes_source)
                    continue
                boxes = boxes or []
                if boxes and setup.boxes is not None:  # a user's file: its boxes must lie on the image
                    try:
                        width, height = image_size(path)
                    except DecodeError as exc:
                        errors[n] = f"unreadable image ({exc})"
                        continue
                    wrong = [(k, box, why) for k, box in enumerate(boxes) if (why := _misplaced(box, width, height))]
                    if wrong:
                        k, box, why = wrong[0]
                        name = os.path.basename(path)
                        errors[n] = f"{setup.boxes_source}: {name!r}: box {k} {box} {why}"
                        continue
            else:
                try:
                    width, height = image_size(path)
                except DecodeError as exc:
                    errors[n] = f"unreadable image ({exc})"
                    continue
                boxes = [[0.0, 0.0, float(width), float(height)]]
            for box in boxes:
                instances.append(Instance(path, n, tuple(box[:4]), None, float(box[4]) if len(box) > 4 else 1.0))
                owner.append(n)
        height, width = setup.input_size
        persons = _Persons(len(instances), MSRAHeatmap((width, height)))
        if instances:
            transform = EvalTransform((width, height), setup.mean, setup.std)
            run(model, PoseDataset(instances, setup.keypoints, transform, train=False), persons, options=FLIP_TEST)
        out = []
        for n, path in enumerate(paths):
            mine = [i for i, o in enumerate(owner) if o == n]
            failure = errors.get(n) or next((persons.failed[i] for i in mine if i in persons.failed), None)
            if failure:
                out.append(Prediction(path, error=failure))
                continue
            people = []
            for i in mine:
                keypoints = persons.keypoints[i]
                score = rescore(keypoints[:, 2], instances[i].score, setup.vis_thr)
                people.append({"box": list(instances[i].box), "score": score, "keypoints": keypoints.tolist()})
            people.sort(key=lambda p: -p["score"])
            prediction = Prediction(path, people)
            if setup.out_dir is not None:
                setup.out_dir.mkdir(parents=True, exist_ok=True)
                stem = Path(path).stem
                pose_image(path, people, setup).save(setup.out_dir / f"{stem}_pose.png")
                record = {"image": path, "keypoint_names": setup.keypoints, "persons": people}
                atomic_write_text(setup.out_dir / f"{stem}_keypoints.json", json.dumps(record, indent=1) + "\n")
                prediction.files = [
                    str(setup.out_dir / f"{stem}_pose.png"),
                    str(setup.out_dir / f"{stem}_keypoints.json"),
                ]
            out.append(prediction)
        return out

    def requests(self, setup: PredictionSetup) -> tuple[PredictorRequest, ...]:
        """The detection model of ``--detector``, if any."""
        return () if setup.detector_request is None else (setup.detector_request,)

    def attach(
        self, setup: PredictionSetup, request: PredictorRequest, predictor: DetectionPredictor
    ) -> PredictionSetup:
        """``setup`` finding its people with ``predictor``, the engine's predictor of ``setup.detector_request``."""
        detector = PersonDetector.of(predictor, request.flag, request.model)
        return replace(setup, detector_request=None, detector=detector)

    def draw_prediction(self, prediction: Prediction, setup: PredictionSetup) -> Image.Image:
        """The skeletons over the image, as ``--out`` writes them."""
        return pose_image(prediction.path, prediction.persons, setup)
