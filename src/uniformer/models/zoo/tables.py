"""The model-zoo table (README, docs and ``uniformer models``) rendered from the entries."""

from __future__ import annotations

from uniformer.models.zoo.catalog import list_models, model_info
from uniformer.models.zoo.datasets import DATASETS
from uniformer.models.zoo.schema import Release
from uniformer.models.zoo.sources import HubFile, UrlFile

__all__ = ["zoo_table"]


def _metric_cell(release: Release) -> str:
    """The headline published number: box / mask AP, single-scale mIoU, keypoint AP or top-1, marked as such."""
    metrics = release.metrics
    if "box_ap" in metrics:
        return f"{metrics['box_ap']:.1f} box / {metrics['mask_ap']:.1f} mask AP"
    if "miou" in metrics:
        return f"{metrics['miou']:.1f} mIoU"
    if "ap" in metrics:
        return f"{metrics['ap']:.1f} AP"
    return f"{metrics['top1']:.1f}" if "top1" in metrics else "-"


def _auto_cell(release: Release) -> str:
    kinds = {source.kind for source in release.sources}
    return "-" if not kinds else "gdown" if kinds == {"drive"} else "yes"


def _weights_cell(release: Release, markdown: bool) -> str:
    """Where ``pretrained=True`` gets the weights first (``Hub ORG/REPO``, ``URL HOST``, ``Google Drive``), and how
    many other sources back it up."""
    if not release.sources:
        return "not released"
    first = release.sources[0]
    if isinstance(first, HubFile):
        cell = f"Hub {first.repo}"
    elif isinstance(first, UrlFile):
        cell = f"URL {first.host}"
    else:
        cell = "Google Drive"
    cell = f"[{cell}]({first.url})" if markdown else cell
    more = len(release.sources) - 1
    return cell + (f" (+{more})" if more else "")


def zoo_table(names: list[str] | None = None, markdown: bool = True) -> str:
    """The model-zoo table (one row per release) as Markdown or aligned plain text.

    Columns: name, dataset, frames x stride (or segments), test views (clips x crops), crop size (a pose model's
    H x W), the headline published metric (top-1, mIoU, AP), published parameters, published GFLOPs per view,
    where ``pretrained=True`` fetches the weights first (and how many other sources it falls back on), and whether
    it downloads them by itself (``yes``; ``gdown``: from Google Drive once ``gdown`` is installed).
    """
    header = [
        "model",
        "dataset",
        "frames",
        "views",
        "crop",
        "published",
        "params (M)",
        "GFLOPs/view",
        "weights",
        "auto",
    ]
    rows = []
    for name in names if names is not None else list_models():
        info = model_info(name)
        for rel in info.releases:
            label = name if rel is info.releases[0] else f"{name} (img_size={rel.img_size})"
            rows.append(
                [
                    f"`{label}`" if markdown else label,
                    DATASETS[info.dataset].title,
                    info.frames_label,
                    f"{info.test_clips}x{info.test_crops}",
                    "x".join(map(str, rel.input_hw)) if info.task == "pose" and rel.input_hw else str(rel.img_size),
                    _metric_cell(rel),
                    f"{info.params_m:g}",
                    f"{rel.gflops:g}",
                    _weights_cell(rel, markdown),
                    _auto_cell(rel),
                ]
            )
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows])
