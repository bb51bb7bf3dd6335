"""Where the trained motion demo model's maps lie, and the explain guide's picture, from a demo's output folder.

Run ``uniformer demo classification`` first (it writes ``demo_out/classification``), then, from the repository
root::

    python -m benchmarks.explain_localisation demo_out/classification

For every method (Grad-CAM at each stage, the official CAM, attention at stages 3 and 4) it prints the mean over
the held-out videos of the mass ratio (:func:`uniformer.explain.mass_ratio`: the share of the map's mass on the
moving object over the object's share of the frame) and a centred blob's, as a Markdown table; ``--figure DIR``
also runs ``uniformer explain`` on the first held-out video of each class family and keeps its Grad-CAM strip
there (the guide's pictures under ``docs/assets/explain/``).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from uniformer.cli import main as uniformer
from uniformer.data import read_kinetics_list
from uniformer.engine import Predictor
from uniformer.explain import motion_localisation

MODEL = "uniformer_tiny_motion"
METHODS: tuple[tuple[str, int | None], ...] = (
    ("gradcam", None),
    ("gradcam", 1),
    ("gradcam", 3),
    ("gradcam", 4),
    ("cam", None),
    ("attention", 3),
    ("attention", 4),
)


def _checkpoint(demo: Path) -> Path:
    """The demo's last checkpoint (the one it tests), not ``best.pt``."""
    found = sorted((demo / "run" / "checkpoints").glob("checkpoint-*.pt"))
    if not found:
        raise FileNotFoundError(f"{demo}/run/checkpoints: no checkpoint-*.pt; run `uniformer demo classification`")
    return found[-1]


def table(demo: Path, seed: int = 0, limit: int | None = None) -> str:
    """The Markdown table of mass ratios over ``demo``'s held-out videos."""
    predictor = Predictor(MODEL, _checkpoint(demo))
    rows = ["| method | stage | map | centred blob | maps without mass |", "|---|---|---|---|---|"]
    for method, stage in METHODS:
        result = motion_localisation(
            predictor.model, predictor.setup.spec, demo / "data", method=method, stage=stage, seed=seed, limit=limit
        )
        default = " (default)" if stage is None and method == "gradcam" else ""
        rows.append(
            f"| {method} | {result.stage}{default} | {result.mean:.2f}x | {result.blob_mean:.2f}x | {result.empty} |"
        )
    return "\n".join(rows) + f"\n\n{len(result.ratios)} held-out videos, model {MODEL} ({_checkpoint(demo).name})\n"


def figures(demo: Path, out: Path) -> list[Path]:
    """``uniformer explain`` (Grad-CAM, default stage) on the first held-out video of ``moving_right`` and of
    ``rotating_clockwise``; their strips copied to ``out``."""
    records = read_kinetics_list(demo / "data" / "val.txt", demo / "data").records
    wanted = ("moving_right", "rotating_clockwise")
    chosen = [next(r for r in records if Path(r.path).parent.name == name) for name in wanted]
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for record in chosen:
            argv = ["explain", record.path, "--model", MODEL, "--checkpoint", str(_checkpoint(demo)), "--out", tmp]
            if uniformer([*argv, "--method", "gradcam", "--video-format"]) != 0:
                raise RuntimeError(f"uniformer explain failed on {record.path}")
            strip = Path(tmp) / f"{Path(record.path).stem}.gradcam.strip.png"
            target = out / f"{Path(record.path).parent.name}.gradcam.strip.png"
            out.mkdir(parents=True, exist_ok=True)
            shutil.copy(strip, target)
            written.append(target)
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("demo", type=Path, help="the classification demo's output folder")
    parser.add_argument("--seed", type=int, default=0, help="the seed the demo's data was made with")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N held-out videos")
    parser.add_argument("--figure", type=Path, default=None, help="folder for the guide's pictures")
    args = parser.parse_args(argv)
    print(table(args.demo, args.seed, args.limit))
    for path in figures(args.demo, args.figure) if args.figure else []:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
