"""How often the optimized bf16 model's top-1 equals the fp32 one, on random weights and inputs."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from uniformer.benchmarks.models import input_shape, plain_model
from uniformer.models.optimize import optimize_for_inference

__all__ = ["bf16_agreement"]


def bf16_agreement(
    name: str = "uniformer_small_k400_16x4",
    *,
    samples: int = 200,
    batch_size: int = 4,
    calibration: int = 32,
    img_size: int | None = None,
    num_frames: int | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Top-1 agreement and largest logit error of the optimized bf16 model against fp32, with two heads.

    The fp32 side is the optimized fp32 copy (equal to the plain model to float rounding, tested to 1e-4 of
    the largest logit, and faster). Random weights (seed 0) and ``samples`` fixed random inputs (seed 1). Both
    models return their pooled features, and two heads read them (in bf16 on the bf16 side, as the bf16
    model's own head does):

    - ``model``: the network's own randomly initialised classifier. A random network maps every input to
      nearly the same features, so its top-1 falls on very few classes and agreement is easy;
    - ``centred``: random directions over the features standardised with the mean and spread of
      ``calibration`` other inputs (seed 2), so that decisions depend only on what differs between inputs
      and spread over the classes. Since those differences are small in a random network (the
      ``feature_spread`` returned: between-input standard deviation over mean magnitude, a few percent),
      this head amplifies bf16 rounding far more than a trained classifier reading trained features would.
    """
    plain = plain_model(name)
    head = copy.deepcopy(plain.head)
    plain.reset_classifier(0)
    fp32, fast = optimize_for_inference(plain), optimize_for_inference(plain, torch.bfloat16)

    def inputs(count: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(input_shape(name, count, img_size, num_frames), generator=generator)

    with torch.no_grad():
        generator = torch.Generator().manual_seed(2)
        calib = torch.cat([fp32(inputs(batch_size, generator)) for _ in range(-(-calibration // batch_size))])
        mean, spread = calib.mean(0), calib.std(0)
        directions = torch.randn(head.out_features, calib.shape[1], generator=generator.manual_seed(3))
        weight = directions / calib.shape[1] ** 0.5 / spread
        heads = {"model": (head.weight, head.bias), "centred": (weight, -weight @ mean)}
        stats = {key: {"agree": 0, "abs": 0.0, "rel": 0.0, "winners": set()} for key in heads}
        generator = torch.Generator().manual_seed(1)
        for start in range(0, samples, batch_size):
            x = inputs(min(batch_size, samples - start), generator)
            reference, low = fp32(x), fast(x)
            for key, (w, b) in heads.items():
                ref, out = F.linear(reference, w, b), F.linear(low, w.bfloat16(), b.bfloat16()).float()
                error = (out - ref).abs().amax(1)
                entry = stats[key]
                entry["agree"] += int((ref.argmax(1) == out.argmax(1)).sum())
                entry["winners"].update(ref.argmax(1).tolist())
                entry["abs"] = max(entry["abs"], error.max().item())
                entry["rel"] = max(entry["rel"], (error / ref.abs().amax(1)).max().item())
            log(f"bf16 agreement: {start + x.shape[0]}/{samples}")
    result: dict[str, Any] = {"samples": samples, "feature_spread": (spread.mean() / mean.abs().mean()).item()}
    for key, entry in stats.items():
        result[key] = {
            "top1_agreement": entry["agree"] / samples,
            "max_abs_logit_error": entry["abs"],
            "max_rel_logit_error": entry["rel"],
            "distinct_fp32_top1": len(entry["winners"]),
        }
    return result
