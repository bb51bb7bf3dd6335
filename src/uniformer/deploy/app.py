"""``uniformer app``: a web page (Gradio) that shows a classification model to people.

The user uploads a video or an image (or picks an example), presses *Classify*, and sees the top-5 classes
with probabilities, the frames the model saw (the centre view after the test transforms, normalisation undone)
and the time the prediction took. Predictions go through :class:`uniformer.engine.predict.Predictor`, i.e. the
model's official test views on its :func:`~uniformer.optimize_for_inference` copy, exactly as
``uniformer predict`` scores them. The server binds 127.0.0.1 unless told otherwise.

Needs the ``app`` extra (``pip install 'uniformer[app]'``).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uniformer.data.synth import MOTIONS, render_clip, write_video
from uniformer.engine.predict import Predictor
from uniformer.tasks.classification.data import build_inputs

try:
    import gradio as gr
except ImportError as exc:  # the app extra
    raise ImportError("uniformer app needs gradio: pip install 'uniformer[app]'") from exc

__all__ = ["build_app", "demo_examples", "seen_frames", "serve"]

TOPK = 5
_DEMO_DATASET = "synthetic-motion"


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


def build_app(predictor: Predictor, examples: Sequence[str] = ()) -> gr.Blocks:
    """The page around ``predictor`` (a classification model); ``examples`` are offered under the upload box."""
    if predictor.task.name != "classification":
        raise ValueError(f"{predictor.info.name}: the page shows classification models (image and video)")
    info, spec = predictor.info, predictor.setup.spec
    kind = "video" if info.task == "video" else "image"

    def classify(path: str | None) -> tuple[dict[str, float], list[np.ndarray], str]:
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
        return top, frames, timing

    views = f"{spec.clips} clips x {spec.crops} crops"
    clip = f"{spec.num_frames} frames, " if spec.num_frames else ""
    with gr.Blocks(title=f"UniFormer: {info.name}", analytics_enabled=False) as page:
        gr.Markdown(
            f"## {info.title}\n`{info.name}`: {clip}{spec.crop_size} px, {views}, {len(predictor.setup.labels)} classes"
        )
        with gr.Row():
            with gr.Column():
                upload = gr.File(label=f"a {kind}", file_types=[kind], type="filepath", elem_id="upload")
                button = gr.Button("Classify", variant="primary", elem_id="classify")
                if examples:
                    gr.Examples(examples=[[e] for e in examples], inputs=[upload], label="examples")
            with gr.Column():
                top = gr.Label(num_top_classes=TOPK, label="top-5", elem_id="top5")
                timing = gr.Textbox(label="time", interactive=False, elem_id="timing")
        frames = gr.Gallery(label="the frames the model saw (centre view)", columns=8, elem_id="frames")
        button.click(classify, inputs=[upload], outputs=[top, frames, timing])
    return page


def serve(
    model_name: str,
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    examples: Sequence[str] | None = None,
    block: bool = True,
) -> Any:
    """Serve the page of ``model_name`` at ``http://host:port``. ``block=False`` returns the running
    ``gr.Blocks`` (stop it with ``.close()``); the demo model gets rendered example videos by default."""
    predictor = Predictor(model_name, checkpoint)
    if examples is None:
        examples = []
        if predictor.info.dataset == _DEMO_DATASET:
            folder = tempfile.mkdtemp(prefix="uniformer_app_")
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            examples = demo_examples(folder)
    page = build_app(predictor, examples)
    page.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=not block,
        show_error=True,
        allowed_paths=sorted({str(Path(e).parent) for e in examples}),
    )
    return page
