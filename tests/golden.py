"""Helpers for the golden cases of the official implementation (tests/assets/golden)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from uniformer.models.checkpoint import read_state_dict

GOLDEN = Path(__file__).parent / "assets" / "golden"


def golden_cases() -> list[dict]:
    return json.loads((GOLDEN / "cases.json").read_text())["cases"]


def golden_model_kwargs(case: dict) -> dict:
    """UniFormer constructor arguments for a golden case's architecture description."""
    arch = case["architecture"]
    kwargs = dict(
        depth=tuple(arch["depth"]),
        embed_dim=tuple(arch["embed_dim"]),
        head_dim=arch["head_dim"],
        mlp_ratio=arch["mlp_ratio"],
        qkv_bias=arch["qkv_bias"],
        num_classes=arch.get("num_classes", 0),
        video=arch["video"],
        conv_stem=arch.get("conv_stem", False),
        token_labeling=arch.get("token_labeling", False),
        split=arch.get("split_attention", False),
    )
    if arch.get("light"):
        # the official per-stage lists leave stages 1-2 empty; ours name stages 3 and 4
        light = dict(light=True, keep_ratio=tuple(arch["prune_ratio"][2:]), trade_off=tuple(arch["trade_off"][2:]))
        kwargs.update(light, conv_stem=False, dense=arch["dense"])
        if arch["layer_scale"]:
            kwargs["layer_scale"] = "all"  # the light video models scale both block types
        return kwargs
    if arch.get("dense"):
        kwargs.update(dense=True, attn_mode=arch["attn_mode"], window_size=arch["window_size"])
    if arch.get("layer_scale"):
        # the token-labeling case has layer scale in both block types (like UniFormer-L-ls)
        kwargs["layer_scale"] = "all" if arch.get("token_labeling") else "global"
    return kwargs


def golden_state_dict(case: dict) -> dict[str, torch.Tensor]:
    """A case's official state dict, without its key prefix (the dense cases' ``backbone.``)."""
    prefix = case.get("key_prefix", "")
    return {k.removeprefix(prefix): v for k, v in read_state_dict(GOLDEN / case["checkpoint"]).items()}


def golden_output_keys(case: dict) -> list[str]:
    """The names of a case's official outputs in its .io file: one per dense map, else ``output``."""
    return case.get("outputs", ["output"])


def assert_outputs_match_golden(out: torch.Tensor | tuple[torch.Tensor, ...], case: dict, io: dict) -> None:
    """A model's output (one tensor, or a dense backbone's tuple of maps) against a case's official outputs."""
    maps = out if isinstance(out, tuple) else (out,)
    keys = golden_output_keys(case)
    assert len(maps) == len(keys)
    for ours, key in zip(maps, keys):
        assert_close_to_golden(ours, io[key])


def assert_close_to_golden(ours: torch.Tensor, expected: torch.Tensor) -> None:
    """The golden tolerance: max|ours - expected| <= 1e-4 * max(1, max|expected|)."""
    assert ours.shape == expected.shape
    tol = 1e-4 * max(1.0, expected.abs().max().item())
    err = (ours - expected).abs().max().item()
    assert err <= tol, f"max abs error {err:.3g} > tolerance {tol:.3g}"
