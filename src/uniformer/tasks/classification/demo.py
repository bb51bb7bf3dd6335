"""``uniformer demo classification``: train and explain a video UniFormer end to end, on a laptop CPU, in minutes.

What UniFormer is for is telling what happens *in time*. The demo makes a dataset where that is the only
thing to tell: synthetic videos whose class is a motion (moving right / left / down / up, rotating clockwise /
anticlockwise, approaching, receding), each with a random shape, texture, size and position, so that no single
frame gives the class away. It then runs the library's real commands, the way a user would:

1. ``uniformer data synth``     writes the mp4 files and the train / held-out lists;
2. ``uniformer train``          trains ``uniformer_tiny_motion`` (a reduced-width video UniFormer from the zoo,
                                 built by the same code) with the shipped recipe ``demo/motion_tiny``;
3. ``uniformer eval``           the multi-view test on the held-out videos, then the control: the same views
                                 with their frames shuffled in time, which must fall to about chance;
4. ``uniformer predict``        top-5 classes of one held-out video.

The output folder then holds the metrics, curves, confusion matrix, a contact sheet of test clips with their true
and predicted classes, ``report.md`` tying them together and ``result.json`` (held-out top-1 and chance as
fractions). Every number printed or written is measured in the run; the same seed gives the same numbers.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after choosing the non-interactive backend)

from uniformer._fileio import atomic_write_text  # noqa: E402
from uniformer.configs import find_config  # noqa: E402
from uniformer.data import read_frames, video_info  # noqa: E402
from uniformer.models import measure_model, model_info  # noqa: E402
from uniformer.tasks._demo import prepare_output, run_cli  # noqa: E402

MODEL = "uniformer_tiny_motion"
CONFIG = "demo/motion_tiny"  # the shipped recipe (uniformer/configs/demo/motion_tiny.yaml)


def _contact_sheet(predictions_csv: Path, out: Path, per_class: int = 1, frames: int = 6) -> Path:
    """A grid: one held-out clip per class, ``frames`` frames across, titled with true and predicted class."""
    with open(predictions_csv, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "ok"]
    chosen, seen = [], {}
    for row in rows:
        if seen.get(row["label"], 0) < per_class:
            seen[row["label"]] = seen.get(row["label"], 0) + 1
            chosen.append(row)
    height = 1.45 * len(chosen) + 0.8
    fig, axes = plt.subplots(len(chosen), frames, figsize=(1.3 * frames, height), squeeze=False)
    # fixed margins, not tight_layout: a row title as wide as the sheet would make it shrink every frame
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=1 - 0.8 / height, wspace=0.04, hspace=0.5)
    for axis_row, row in zip(axes, chosen, strict=True):
        length = video_info(row["path"]).num_frames
        indices = [round(i * (length - 1) / (frames - 1)) for i in range(frames)]
        for axis, frame, index in zip(axis_row, read_frames(row["path"], indices).numpy(), indices, strict=True):
            axis.imshow(frame)
            axis.set_xticks([])
            axis.set_yticks([])
            axis.set_xlabel(f"frame {index}", fontsize=7, labelpad=1)
        ok = row["label"] == row["prediction"]
        axis_row[0].text(
            0.0,
            1.06,
            f"true: {row['label_name']}   predicted: {row['prediction_name']}",
            transform=axis_row[0].transAxes,
            fontsize=9,
            va="bottom",
            color="darkgreen" if ok else "darkred",
        )
    fig.suptitle("Held-out clips (time runs left to right)", fontsize=11, y=1 - 0.12 / height)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def _report(out: Path, facts: dict) -> Path:
    plain, shuffled = facts["eval"], facts["shuffled"]
    lines = [
        "# UniFormer demo: motion classes learnt from scratch",
        "",
        f"Model `{MODEL}` ({facts['params_m']:.2f} M parameters, {facts['gmacs']:.3f} GMACs per "
        f"{facts['frames']}-frame {facts['size']}x{facts['size']} view), trained from scratch with "
        f"`{facts['config']}` on {facts['train_videos']} synthetic videos of {facts['classes']} motion classes, "
        f"tested on {facts['val_videos']} held-out videos, seed {facts['seed']}.",
        "",
        "| test | top-1 | top-5 | mean class accuracy |",
        "|---|---|---|---|",
        f"| held-out videos, {facts['views']} views each | {plain['top1']:.2f}% | {plain['top5']:.2f}% | "
        f"{plain['mean_class_accuracy']:.2f}% |",
        f"| same views, frames shuffled in time | {shuffled['top1']:.2f}% | {shuffled['top5']:.2f}% | "
        f"{shuffled['mean_class_accuracy']:.2f}% |",
        f"| chance | {facts['chance']:.2f}% | | |",
        "",
        "Every single frame of a clip is consistent with every class of its family (the same shape can move",
        "either way), so the model must compare frames. Shuffling the frames keeps every pixel and destroys the",
        f"order: top-1 falls from {plain['top1']:.2f}% to {shuffled['top1']:.2f}% (chance {facts['chance']:.2f}%), "
        "the evidence that the model uses time.",
        "",
        "## Training",
        "",
        f"{facts['train_summary']}",
        "",
        "![curves](curves.png)",
        "",
        "## Held-out predictions",
        "",
        "![confusion matrix](confusion_matrix.png)",
        "",
        "![contact sheet](contact_sheet.png)",
        "",
        f"`uniformer predict` on `{facts['predict_path']}` (true class: {facts['predict_true']}):",
        "",
        "| rank | class | probability |",
        "|---|---|---|",
        *[f"| {i} | {t['label']} | {100 * t['probability']:.2f}% |" for i, t in enumerate(facts["predict_top"], 1)],
        "",
        "## Time",
        "",
        "| step | seconds |",
        "|---|---|",
        *[f"| {name} | {seconds:.0f} |" for name, seconds in facts["times"].items()],
        "",
        "Files: `metrics.jsonl` (every step and epoch), `eval/` and `eval_shuffled/` (metrics.json, predictions.csv,",
        "per_class.csv, confusion matrices), `prediction.json`, `config.yaml` (the resolved training config).",
        "",
    ]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def _train_summary(summary: dict | None, records: list[dict]) -> str:
    """One sentence from the run's ``summary`` record of metrics.jsonl."""
    if summary is None:
        return "(the run wrote no summary record)"
    epochs = [r for r in records if r.get("kind") == "epoch"]
    best = summary.get("best_metric")
    best_text = f"best validation top-1 {best:.2f}% at epoch {summary['best_epoch'] + 1}" if best is not None else ""
    return (
        f"{summary['step']} steps ({len(epochs)} epochs) in {summary['train_seconds']:.0f} s of training, "
        f"{summary['clips_per_s']:.1f} clips/s; {best_text}; "
        f"peak memory {summary['peak_memory_bytes'] / 2**20:.0f} MiB. "
        "The checkpoint tested below is the last one, not the one with the best validation score: validation runs on "
        "the held-out videos, so choosing on it would flatter the test."
    )


def run_demo(
    out: Path,
    *,
    config: Path | None = None,
    videos_per_class: int = 64,
    seed: int = 0,
    train_overrides: Sequence[str] = (),
) -> dict:
    """Run the whole demo into ``out`` and return the measured facts; ``facts["result"]`` is what
    ``out/result.json`` holds (written with ``out/report.md``)."""
    config = find_config(config or CONFIG)
    started = time.perf_counter()
    info = model_info(MODEL)
    complexity = measure_model(MODEL)
    prepare_output(out, "data/train.txt")
    data, run = out / "data", out / "run"
    print(
        f"UniFormer demo: {info.num_classes} motion classes, {videos_per_class} synthetic videos each; "
        f"train {MODEL} ({complexity.params / 1e6:.2f} M parameters) from scratch on this CPU, test it on "
        f"held-out videos with and without time order, classify one video. Output: {out}/",
        flush=True,
    )
    times = {}
    times["make the data (uniformer data synth)"], _ = run_cli(
        "1/4 synthetic motion videos",
        [
            "data",
            "synth",
            str(data),
            "--classes",
            str(info.num_classes),
            "--videos-per-class",
            str(videos_per_class),
            "--seed",
            str(seed),
            "--workers",
            str(os.cpu_count() or 1),
        ],
    )
    common = [f"data.root={data}", f"output_dir={run}", f"seed={seed}"]
    times["train (uniformer train)"], _ = run_cli("2/4 training", ["train", str(config), *common, *train_overrides])
    # the last checkpoint, not best.pt: best.pt was chosen on the held-out videos, testing it there would flatter it
    final = max((run / "checkpoints").glob("checkpoint-*.pt"))
    times["test (uniformer eval)"], _ = run_cli(
        "3/4 held-out test, multi-view",
        ["eval", str(config), *common, f"checkpoint={final}", f"eval.output_dir={out / 'eval'}"],
    )
    times["control: frames shuffled (uniformer eval)"], _ = run_cli(
        "3/4 control: the same views with frames shuffled in time",
        [
            "eval",
            str(config),
            *common,
            f"checkpoint={final}",
            "eval.shuffle_frames=true",
            f"eval.output_dir={out / 'eval_shuffled'}",
        ],
    )
    with open(out / "eval" / "predictions.csv", newline="") as f:
        sample = next(r for r in csv.DictReader(f) if r["status"] == "ok")
    times["classify one video (uniformer predict)"], predicted = run_cli(
        "4/4 one held-out video",
        ["predict", sample["path"], "--model", MODEL, "--checkpoint", str(final), "--json"],
        capture=True,
    )
    top = json.loads(predicted)["predictions"][0]["top"]
    atomic_write_text(out / "prediction.json", predicted)
    print(f"true class: {sample['label_name']}")
    for rank, entry in enumerate(top, 1):
        print(f"  {rank}. {entry['label']:<24s} {100 * entry['probability']:6.2f}%")

    for name in ("metrics.jsonl", "curves.png", "config.yaml"):
        if (run / name).is_file():
            shutil.copy(run / name, out / name)
    shutil.copy(out / "eval" / "confusion_matrix.png", out / "confusion_matrix.png")
    _contact_sheet(out / "eval" / "predictions.csv", out / "contact_sheet.png")
    plain = json.loads((out / "eval" / "metrics.json").read_text())
    shuffled = json.loads((out / "eval_shuffled" / "metrics.json").read_text())
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    summary = next((r for r in reversed(records) if r.get("kind") == "summary"), None)
    facts = dict(
        eval=plain,
        shuffled=shuffled,
        chance=100.0 / info.num_classes,
        params_m=complexity.params / 1e6,
        gmacs=complexity.gmacs,
        frames=info.num_frames,
        size=info.release().img_size,
        views=f"{info.test_clips}x{info.test_crops}",
        config=str(config),
        classes=info.num_classes,
        train_videos=len((data / "train.txt").read_text().splitlines()),
        val_videos=len((data / "val.txt").read_text().splitlines()),
        seed=seed,
        train_summary=_train_summary(summary, records),
        predict_path=sample["path"],
        predict_true=sample["label_name"],
        predict_top=top,
        times=times,
    )
    report = _report(out, facts)
    result = {
        "metric": "top1",
        "value": plain["top1"] / 100,
        "chance": 1 / info.num_classes,
        "seconds": round(time.perf_counter() - started, 1),
        "shuffled_frames": shuffled["top1"] / 100,
    }
    atomic_write_text(out / "result.json", json.dumps(result, indent=2) + "\n")
    facts["result"] = result
    print(
        f"\n=== result\nheld-out top-1 {plain['top1']:.2f}% ({facts['views']} views)   |   frames shuffled in time: "
        f"{shuffled['top1']:.2f}%   |   chance: {facts['chance']:.2f}%\n"
        f"total {sum(times.values()) / 60:.1f} min; report: {report}"
    )
    return facts
