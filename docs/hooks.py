"""MkDocs hook: the pages' generated parts, and the command that refreshes the demo results.

A page asks for a generated block with a marker on a line of its own:

* ``<!-- zoo:TASK -->`` (``image``, ``video``, ``segmentation``, ``detection``, ``pose``): the zoo table of that
  task, rendered by the zoo (``zoo_table``), so a model added to the zoo is in the docs on the next build;
* ``<!-- zoo:summary -->``: one row per task (its guide, models, datasets), the README's task table too;
* ``<!-- demos -->``: each demo's numbers, from ``docs/demo_results.json``.

The API pages (mkdocstrings) get the docstrings' Sphinx roles rendered as plain code.

``uniformer demo`` writes ``demo_out/TASK/result.json``; ``python docs/hooks.py demo_out`` copies them into
``docs/demo_results.json`` (committed, so the site builds without running the demos).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from uniformer.models.zoo.catalog import list_models, model_info
from uniformer.models.zoo.datasets import DATASETS
from uniformer.models.zoo.tables import zoo_table

DEMO_RESULTS = Path(__file__).resolve().parent / "demo_results.json"

# Task name of the zoo -> title and guide page (relative to docs/) of the zoo summary.
ZOO_TASKS: dict[str, tuple[str, str]] = {
    "image": ("Image classification", "guides/classification.md"),
    "video": ("Video classification", "guides/classification.md"),
    "segmentation": ("Semantic segmentation", "guides/segmentation.md"),
    "detection": ("Object detection, instance segmentation", "guides/detection.md"),
    "pose": ("Human pose estimation", "guides/pose.md"),
}

# Demo task -> what it learns and how its result.json names its numbers (key -> column title).
DEMOS: dict[str, tuple[str, dict[str, str]]] = {
    "classification": (
        "video UniFormer, 8 synthetic motions",
        {"value": "held-out top-1", "shuffled_frames": "frames shuffled in time", "chance": "chance"},
    ),
    "segmentation": (
        "dense UniFormer + UperNet, 5 synthetic shapes",
        {"value": "mIoU", "aacc": "aAcc", "macc": "mAcc", "chance": "chance"},
    ),
    "pose": (
        "dense UniFormer + top-down head, synthetic stick figures",
        {"value": "AP", "AP50": "AP50", "AP75": "AP75", "AR": "AR", "chance": "chance"},
    ),
    "detection": (
        "UniFormer Mask R-CNN, overlapping synthetic shapes",
        {"value": "box AP50", "bbox_AP": "box AP", "segm_AP50": "mask AP50", "segm_AP": "mask AP", "chance": "chance"},
    ),
}

_MARKER = re.compile(r"^<!-- (zoo:[a-z]+|demos) -->$", re.M)


def zoo_summary(link_prefix: str = "") -> str:
    """One Markdown row per task of the zoo: its guide, how many models, on which datasets.

    ``link_prefix`` is put before each guide's path (``"docs/"`` from the repository root)."""
    lines = ["| task | models | datasets |", "|---|---|---|"]
    for task, (title, guide) in ZOO_TASKS.items():
        names = list_models(task=task)  # type: ignore[arg-type]
        datasets = sorted({DATASETS[model_info(name).dataset].title for name in names})
        lines.append(f"| [{title}]({link_prefix}{guide}) | {len(names)} | {', '.join(datasets)} |")
    return "\n".join(lines)


def collect_demo_results(demo_out: Path) -> dict[str, dict[str, Any]]:
    """Every ``demo_out/TASK/result.json`` of the known demos, by task; ``FileNotFoundError`` names what is missing."""
    missing = [
        str(demo_out / task / "result.json") for task in DEMOS if not (demo_out / task / "result.json").is_file()
    ]
    if missing:
        raise FileNotFoundError(f"no demo result in {', '.join(missing)}: run `uniformer demo --out {demo_out}` first")
    return {task: json.loads((demo_out / task / "result.json").read_text()) for task in DEMOS}


def render_demo_results(results: dict[str, dict[str, Any]]) -> str:
    """A Markdown table per demo: the fractions of ``result.json`` as percentages (its time depends on the machine,
    so it stays out)."""
    blocks = []
    for task, (what, columns) in DEMOS.items():
        if task not in results:
            raise ValueError(f"{DEMO_RESULTS.name}: no entry for the {task} demo")
        result = results[task]
        absent = [key for key in columns if key not in result]
        if absent:
            raise ValueError(f"{DEMO_RESULTS.name}: the {task} demo's result has no {', '.join(absent)}")
        header = ["demo", *columns.values()]
        row = [f"`uniformer demo {task}` ({what})", *(f"{100 * result[key]:.2f}%" for key in columns)]
        blocks.append(
            "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header), "| " + " | ".join(row) + " |"])
        )
    return "\n\n".join(blocks)


def render_markers(markdown: str, demo_results: Path = DEMO_RESULTS) -> str:
    """``markdown`` with every generated-block marker replaced by its block; ``ValueError`` for an unknown one."""

    def block(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "demos":
            return render_demo_results(json.loads(demo_results.read_text()))
        task = name.removeprefix("zoo:")
        if task == "summary":
            return zoo_summary()
        if task not in ZOO_TASKS:
            raise ValueError(f"unknown zoo marker {match.group(0)!r}: the tasks are {', '.join(ZOO_TASKS)}")
        return zoo_table(list_models(task=task))  # type: ignore[arg-type]

    return _MARKER.sub(block, markdown)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """MkDocs event: fill the generated blocks of each page before it is rendered."""
    return render_markers(markdown)


# A Sphinx cross-reference role as the package's docstrings write it (``:func:`name```, ``:class:`~pkg.Name```),
# once Markdown has rendered its backticks as <code>: mkdocstrings shows the role's text verbatim otherwise.
_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj):<code>~?([^<]*)</code>")


def strip_roles(html: str) -> str:
    """``html`` with each Sphinx role reduced to its code text (``~pkg.mod.name`` to ``name``, as Sphinx shows it)."""
    return _ROLE.sub(
        lambda m: f"<code>{m.group(1).rsplit('.', 1)[-1] if '~' in m.group(0) else m.group(1)}</code>", html
    )


def on_page_content(html: str, **kwargs: Any) -> str:
    """MkDocs event: the API pages show ``:func:`x``` from the docstrings as the code ``x``."""
    return strip_roles(html)


def main(argv: list[str] | None = None) -> None:
    """``python docs/hooks.py DEMO_OUT``: copy the demos' ``result.json`` files into ``docs/demo_results.json``."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("demo_out", type=Path, help="the folder `uniformer demo --out` wrote (default demo_out)")
    args = parser.parse_args(argv)
    results = collect_demo_results(args.demo_out)
    DEMO_RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {DEMO_RESULTS}")


if __name__ == "__main__":
    main()
