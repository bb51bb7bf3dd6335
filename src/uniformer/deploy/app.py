"""``uniformer app``: a web page (Gradio) that shows a model to people.

Classification: the user uploads a video or an image (or picks an example), presses *Classify*, and sees the top-5
classes with probabilities, the frames the model saw (the centre view after the test transforms, normalisation
undone) and the time the prediction took. Ticking *show where the model looks* adds, beside the prediction, the
Grad-CAM overlay of the top class on each frame (:func:`explained_view`: the :mod:`uniformer.explain` map and
overlay that ``uniformer explain`` draws). Segmentation, pose and detection: the user uploads an image, presses
*Predict*, and sees the task's picture of the prediction (:meth:`~uniformer.tasks.Task.draw_prediction`: the colour
overlay with the legend of the classes present, the skeletons of the people, the boxes and masks with class names), a
table of what it found (class shares, persons, detections with scores) and the time; a detector's page has a
score-threshold slider; a pose page takes person boxes typed for the image, else finds the people with the detector
the page was started with (``uniformer app --model POSE --detector NAME``, the pose task's ``predict`` options),
else takes the whole image as one person. The dense pages also take a short video and show it back annotated
(:func:`dense_video`: what ``uniformer predict VIDEO`` writes). The picture has no toolbar over it (it would hide the legend's top rows).
A page's heading names the zoo model's dataset only when its classes are that dataset's. Uploads above
``max_upload_mb`` are refused by the server and the page says so. Predictions go through
:class:`uniformer.engine.predict.Predictor`, i.e. the model's test mode on its :func:`~uniformer.optimize_for_inference`
copy, exactly as ``uniformer predict`` scores them. The server binds 127.0.0.1 unless told otherwise.

Needs the ``app`` extra (``pip install 'uniformer[app]'``).
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uniformer.data.decode import video_info
from uniformer.data.synth import MOTIONS, render_clip, write_video
from uniformer.engine.predict import Predictor
from uniformer.engine.video import predict_video
from uniformer.explain import default_stage, explain_files
from uniformer.explain.render import overlay
from uniformer.tasks.classification.data import build_inputs
from uniformer.tasks.pose.predict import check_boxes

try:
    import gradio as gr
except ImportError as exc:  # the app extra
    raise ImportError("uniformer app needs gradio: pip install 'uniformer[app]'") from exc

__all__ = [
    "DenseView",
    "ExplainedView",
    "build_app",
    "demo_examples",
    "dense_video",
    "dense_view",
    "explained_view",
    "page_boxes",
    "page_title",
    "seen_frames",
    "serve",
]

TOPK = 5
MAX_UPLOAD_MB = 200  # the default upload limit: a 48-megapixel JPEG is about 20 MB
_DEMO_DATASET = "synthetic-motion"
MAX_VIDEO_SECONDS = 30.0  # the page's videos; longer ones are for `uniformer predict VIDEO`
_ROWS = 100  # table rows of a dense prediction (a detector keeps at most 100 detections)
# the table of a dense page: its header, and how a row's value (a number of Prediction.ranked) is shown
_TABLES = {
    "segmentation": (["class", "share of the pixels"], lambda v: f"{100 * v:.1f}%"),
    "pose": (["person", "score"], lambda v: f"{v:.3f}"),
    "detection": (["detection", "score"], lambda v: f"{v:.3f}"),
}


@dataclass
class DenseView:
    """What a dense page shows for one image: the picture (H, W, 3) uint8, the table rows and the time taken."""

    picture: np.ndarray
    rows: list[list[str]]
    timing: str


def _request_setup(predictor: Predictor, score_threshold: float | None) -> Any:
    """The predictor's setup with a detector's ``score_threshold`` of one request (the shared one left as it is)."""
    if score_threshold is None:
        return predictor.setup
    return dataclasses.replace(predictor.setup, score_threshold=score_threshold)


def dense_view(
    predictor: Predictor,
    path: str,
    score_threshold: float | None = None,
    boxes: Sequence[Sequence[float]] | None = None,
) -> DenseView:
    """Predict ``path`` with ``predictor`` (a segmentation, pose or detection model) and render it: the task's
    :meth:`~uniformer.tasks.Task.draw_prediction` picture and one row per entry the prediction ranks
    (:meth:`~uniformer.tasks.Prediction.ranked`: largest class share, best person or detection first).
    ``score_threshold`` replaces a detector's and ``boxes`` (``[x, y, w, h(, score)]`` each) a pose model's people
    for this request only: the predictor is shared by every visitor of the page and is left as it is."""
    setup = _request_setup(predictor, score_threshold)
    if boxes is not None:
        people = check_boxes({Path(path).name: [list(box) for box in boxes]}, "person boxes")
        setup = dataclasses.replace(setup, boxes=people, boxes_source="person boxes", detector=None)
    start = time.perf_counter()
    (prediction,) = predictor.predict([path], topk=_ROWS, setup=setup)
    elapsed = time.perf_counter() - start
    if prediction.error:
        raise ValueError(f"{Path(path).name} could not be read: {prediction.error}")
    picture = np.asarray(predictor.task.draw_prediction(prediction, setup).convert("RGB"))
    show = _TABLES[predictor.task.name][1]
    rows = [[name, show(value)] for name, value in prediction.ranked()[:_ROWS]]
    return DenseView(picture, rows, f"{1000 * elapsed:.0f} ms")


def dense_video(
    predictor: Predictor, path: str, out_dir: str | os.PathLike[str], score_threshold: float | None = None
) -> tuple[Path, str]:
    """The annotated video of ``path`` (every frame, :func:`~uniformer.engine.video.predict_video`) written to
    ``out_dir``, and a line saying what was done; a video over :data:`MAX_VIDEO_SECONDS` is refused (the command
    line takes any length). ``score_threshold`` is for this request only, as in :func:`dense_view`."""
    info = video_info(path)
    seconds = info.num_frames / info.fps if info.fps > 0 else float("inf")
    if seconds > MAX_VIDEO_SECONDS:
        raise ValueError(
            f"{Path(path).name}: {seconds:.0f} s is longer than the page's {MAX_VIDEO_SECONDS:.0f} s; "
            "`uniformer predict VIDEO` takes any length"
        )
    setup = _request_setup(predictor, score_threshold)
    start = time.perf_counter()
    result = predict_video(predictor, path, out_dir, progress=False, setup=setup)
    elapsed = time.perf_counter() - start
    if result.video is None:
        raise ValueError(f"{Path(path).name}: no frame could be decoded")
    notes = [f"{result.processed} frames in {elapsed:.1f} s"]
    notes += [f"{len(result.skipped)} frames did not decode"] if result.skipped else []
    notes += [f"{len(result.failed)} frames could not be predicted"] if result.failed else []
    return result.video, "; ".join(notes)


def seen_frames(predictor: Predictor, path: str) -> list[np.ndarray]:
    """The frames of ``path``'s centre view as the model receives them, as (H, W, 3) uint8 pictures."""
    spec = predictor.setup.spec
    item = build_inputs([path], spec, model_name=predictor.info.name, single_view=True)[0]
    if not item.get("valid", True):
        return []
    clip = item["video"]
    clip = clip[:, None] if clip.ndim == 3 else clip  # an image is a clip of one frame
    mean = torch.tensor(spec.mean).view(3, 1, 1, 1)
    std = torch.tensor(spec.std).view(3, 1, 1, 1)
    pictures = ((clip * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)
    return list(pictures.permute(1, 2, 3, 0).numpy())


@dataclass
class ExplainedView:
    """Where a classifier looks on one input: the overlay of each clip frame ((H, W, 3) uint8, the frame's own
    size; one for an image) and a caption naming the method, the stage, the class and its score on that view."""

    overlays: list[np.ndarray]
    caption: str


def explained_view(predictor: Predictor, path: str, target: int) -> ExplainedView:
    """Grad-CAM of class ``target`` on ``path``'s centre view at the default stage
    (:func:`uniformer.explain.explain_files`), each frame drawn with :func:`uniformer.explain.render.overlay`:
    the pictures ``uniformer explain`` draws. Grad-CAM rather than the official CAM because CAM always reads the
    last stage (stride 32): at small inputs it is a grid of a few cells that cannot say where an object is, while
    Grad-CAM's default stage keeps at least 7 cells across. The page asks for the class it shows first (the
    prediction averages every test view; the map explains the centre view, whose own score the caption gives)."""
    (explanation,) = explain_files(predictor, [path], "gradcam", target=target)
    if explanation.error:
        raise ValueError(f"{Path(path).name} could not be read: {explanation.error}")
    frames, maps = explanation.frames.numpy(), explanation.map.numpy()
    overlays = [overlay(frame, heat, explanation.box) for frame, heat in zip(frames, maps, strict=True)]
    caption = (
        f"Grad-CAM at stage {explanation.stage} for {explanation.label} "
        f"({100 * explanation.score:.1f}% on the centre view)"
    )
    return ExplainedView(overlays, caption)


def _explain_help(crop_size: int) -> str:
    """The checkbox's help: which map, at which stage, and why not the official CAM, for this model's input."""
    stage, last = default_stage((crop_size, crop_size)), crop_size // 32
    chosen = (
        f"Grad-CAM of the top class at stage {stage}, the deepest stage with at least 7 cells across this model's "
        f"{crop_size} px input."
    )
    if stage == 4:
        return f"{chosen} Grad-CAM, not the official CAM: CAM reads only the last stage, too coarse at small inputs."
    return (
        f"{chosen} Not the official CAM: it reads the last stage, {last} x {last} cells here, too coarse to localise."
    )


def demo_examples(folder: str | os.PathLike[str], count: int = 3, seed: int = 0) -> list[str]:
    """Examples for the synthetic-motion demo model: ``count`` videos rendered by the shipped generator, one per
    motion class (as ``uniformer data synth`` renders them)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, motion in enumerate(MOTIONS[:count]):
        path = folder / f"{motion}.mp4"
        write_video(path, render_clip(motion, np.random.default_rng([seed, index])))
        paths.append(str(path))
    return paths


def page_boxes(text: str | None) -> list[list[float]] | None:
    """The person boxes typed on a pose page: one ``x, y, w, h`` (or ``x, y, w, h, score``) a line, numbers
    separated by commas or spaces; ``None`` for none typed. A line that is not 4 or 5 numbers is an error naming it."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    boxes = []
    for number, line in enumerate(lines, 1):
        try:
            box = [float(v) for v in line.replace(",", " ").split()]
        except ValueError:
            box = []
        if len(box) not in (4, 5):
            raise ValueError(f"person boxes, line {number} ({line!r}): expected x, y, w, h or x, y, w, h, score")
        boxes.append(box)
    return boxes or None


def page_title(predictor: Predictor) -> str:
    """The heading of a model's page: the zoo title (which names its dataset) when the model's classes are that
    dataset's, else the zoo name and its own class count (a model trained on other data is not an ADE20K model)."""
    info, setup = predictor.info, predictor.setup
    names = setup.keypoints if predictor.task.name == "pose" else setup.labels
    if list(names) == list(info.labels):
        return info.title
    return (
        f"{info.name} trained on {len(names)} {'keypoints' if predictor.task.name == 'pose' else 'classes'} of its own"
    )


def build_app(predictor: Predictor, examples: Sequence[str] = (), max_upload_mb: int = MAX_UPLOAD_MB) -> gr.Blocks:
    """The page around ``predictor`` (any task's model); ``examples`` are offered under the upload box, whose label
    states ``max_upload_mb`` (the limit :func:`serve` gives the server)."""
    if predictor.task.name != "classification":
        return _dense_page(predictor, examples, max_upload_mb)
    info, spec = predictor.info, predictor.setup.spec
    kind = "video" if info.task == "video" else "image"

    def where(path: str | None, target: int | None, show: bool) -> tuple[list[np.ndarray], str]:
        if not show or path is None or target is None:
            return [], ""
        try:
            view = explained_view(predictor, path, target)
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        return view.overlays, view.caption

    def classify(
        path: str | None, show: bool
    ) -> tuple[dict[str, float], list[np.ndarray], str, list[np.ndarray], str, tuple[str, int]]:
        if not path:
            raise gr.Error(f"upload a{'' if kind == 'video' else 'n'} {kind} first")
        start = time.perf_counter()
        (prediction,) = predictor.predict([path], topk=TOPK)
        elapsed = time.perf_counter() - start
        if prediction.error:
            raise gr.Error(f"{Path(path).name} could not be read: {prediction.error}")
        top = {name: probability for _, name, probability in prediction.top}
        frames = seen_frames(predictor, path)
        timing = f"{1000 * elapsed:.0f} ms for {prediction.views} view{'s' if prediction.views > 1 else ''}"
        shown = (path, prediction.top[0][0])  # the prediction on the page, which the checkbox explains later
        return top, frames, timing, *where(*shown, show), shown

    def toggle(shown: tuple[str, int] | None, show: bool) -> tuple[list[np.ndarray], str]:
        return where(*(shown or (None, None)), show)

    views = f"{spec.clips} clips x {spec.crops} crops"
    clip = f"{spec.num_frames} frames, " if spec.num_frames else ""
    with gr.Blocks(title=f"UniFormer: {info.name}", analytics_enabled=False) as page:
        gr.Markdown(
            f"## {page_title(predictor)}\n`{info.name}`: {clip}{spec.crop_size} px, {views}, "
            f"{len(predictor.setup.labels)} classes"
        )
        shown = gr.State(None)
        with gr.Row():
            with gr.Column():
                upload = gr.File(
                    label=f"a {kind} (at most {max_upload_mb} MB)", file_types=[kind], type="filepath", elem_id="upload"
                )
                show = gr.Checkbox(
                    label="show where the model looks", info=_explain_help(spec.crop_size), elem_id="explain"
                )
                button = gr.Button("Classify", variant="primary", elem_id="classify")
                if examples:
                    gr.Examples(examples=[[e] for e in examples], inputs=[upload], label="examples")
            with gr.Column():
                top = gr.Label(num_top_classes=TOPK, label="top-5", elem_id="top5")
                timing = gr.Textbox(label="time", interactive=False, elem_id="timing")
                caption = gr.Textbox(label="where the model looks", interactive=False, elem_id="explained")
                overlays = gr.Gallery(
                    label="the top class's map on each frame (white box: the centre view)",
                    format="png",  # lossless: the pictures are the overlays exactly
                    columns=4,
                    elem_id="overlay",
                )
        frames = gr.Gallery(label="the frames the model saw (centre view)", columns=8, elem_id="frames")
        button.click(classify, inputs=[upload, show], outputs=[top, frames, timing, overlays, caption, shown])
        show.change(toggle, inputs=[shown, show], outputs=[overlays, caption])
    return page


def _dense_page(predictor: Predictor, examples: Sequence[str], max_upload_mb: int) -> gr.Blocks:
    """The page of a segmentation, pose or detection model (see :func:`dense_view`)."""
    info, task = predictor.info, predictor.task.name
    if task not in _TABLES:
        raise ValueError(f"{info.name}: the page shows classification, segmentation, pose and detection models")
    threshold = getattr(predictor.setup, "score_threshold", None)

    def run(path: str | None, option: float | str | None = None) -> tuple[np.ndarray, list[list[str]], str]:
        if not path:
            raise gr.Error("upload an image first")
        try:
            if task == "pose":
                view = dense_view(predictor, path, boxes=page_boxes(option))  # type: ignore[arg-type]
            else:
                view = dense_view(predictor, path, option)  # type: ignore[arg-type]
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        return view.picture, view.rows, view.timing

    setup = predictor.setup
    if task == "pose":
        found = "without boxes, " + (
            "a detection model finds the people" if setup.detector else "the whole image is taken as one person"
        )
        about = f"{len(setup.keypoints)} keypoints; {found}"
    else:
        about = f"{len(setup.labels)} classes"
    with gr.Blocks(title=f"UniFormer: {info.name}", analytics_enabled=False) as page:
        gr.Markdown(f"## {page_title(predictor)}\n`{info.name}`: {about}")
        with gr.Row():
            with gr.Column():
                upload = gr.File(
                    label=f"an image (at most {max_upload_mb} MB)",
                    file_types=["image"],
                    type="filepath",
                    elem_id="upload",
                )
                sliders = []  # a detector's score threshold, shared by the image and the video rows
                if threshold is not None:
                    sliders.append(
                        gr.Slider(0.0, 1.0, value=threshold, step=0.05, label="score threshold", elem_id="threshold")
                    )
                inputs = [upload, *sliders]
                if task == "pose":
                    inputs.append(
                        gr.Textbox(
                            label="person boxes (optional): x, y, w, h in pixels, one person a line",
                            lines=3,
                            elem_id="boxes",
                        )
                    )
                button = gr.Button("Predict", variant="primary", elem_id="predict")
                if examples:
                    gr.Examples(examples=[[e] for e in examples], inputs=[upload], label="examples")
                table = gr.Dataframe(headers=_TABLES[task][0], interactive=False, label="found", elem_id="table")
                timing = gr.Textbox(label="time", interactive=False, elem_id="timing")
            with gr.Column():
                picture = gr.Image(
                    label="prediction", type="numpy", interactive=False, buttons=[], elem_id="picture"
                )  # no toolbar: it would cover the legend's top rows
        button.click(run, inputs=inputs, outputs=[picture, table, timing])
        _video_section(predictor, sliders, max_upload_mb)
    return page


def _video_section(predictor: Predictor, threshold: list[Any], max_upload_mb: int) -> None:
    """A dense page's video row: a short clip in, its annotated video back (see :func:`dense_video`)."""
    folder = tempfile.mkdtemp(prefix="uniformer_app_video_")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)

    def run(path: str | None, *score: float) -> tuple[str, str]:
        if not path:
            raise gr.Error("upload a video first")
        try:
            video, note = dense_video(predictor, path, tempfile.mkdtemp(dir=folder), *score)
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        return str(video), note

    with gr.Row():
        with gr.Column():
            upload = gr.File(
                label=f"a short video (up to {MAX_VIDEO_SECONDS:.0f} s, at most {max_upload_mb} MB)",
                file_types=["video"], type="filepath",
                elem_id="video_upload",
            )  # fmt: skip
            button = gr.Button("Predict every frame", variant="primary", elem_id="predict_video")
            note = gr.Textbox(label="video", interactive=False, elem_id="video_note")
        with gr.Column():
            annotated = gr.Video(label="annotated video", interactive=False, elem_id="annotated")
    button.click(run, inputs=[upload, *threshold], outputs=[annotated, note])


def serve(
    model_name: str,
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    examples: Sequence[str] | None = None,
    block: bool = True,
    task_options: Mapping[str, Any] | None = None,
    max_upload_mb: int = MAX_UPLOAD_MB,
) -> Any:
    """Serve the page of ``model_name`` at ``http://host:port``. ``block=False`` returns the running
    ``gr.Blocks`` (stop it with ``.close()``); the demo model gets rendered example videos by default.
    ``task_options`` are the task's ``uniformer predict`` options (a pose model's ``{"detector": NAME}``); the
    server refuses uploads above ``max_upload_mb`` megabytes."""
    if max_upload_mb <= 0:
        raise ValueError(f"max_upload_mb must be positive, got {max_upload_mb}")
    predictor = Predictor(model_name, checkpoint, task_options=task_options)
    if examples is None:
        examples = []
        if predictor.info.dataset == _DEMO_DATASET:
            folder = tempfile.mkdtemp(prefix="uniformer_app_")
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            examples = demo_examples(folder)
    page = build_app(predictor, examples, max_upload_mb)
    page.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=not block,
        show_error=True,
        max_file_size=f"{max_upload_mb}mb",
        allowed_paths=sorted({str(Path(e).parent) for e in examples}),
    )
    return page
