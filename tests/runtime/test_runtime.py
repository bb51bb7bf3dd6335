"""The runtime below the tasks: the world of one, the evaluation loop, seeds from keys."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from uniformer.runtime import DistContext, derive_seed, feed, isolated_rng, to_device


def test_a_world_of_one_returns_what_it_is_given() -> None:
    world = DistContext()
    tensor = torch.arange(3.0)
    assert world.all_reduce_sum(tensor) is tensor and tensor.tolist() == [0.0, 1.0, 2.0]
    assert world.all_gather_object({"a": 1}) == [{"a": 1}]
    assert world.is_main and not world.distributed and world.device == torch.device("cpu")


class _Seen:
    """An accumulator that takes the odd items of a dataset of numbers and records what the model returned."""

    def __init__(self, size: int) -> None:
        self.size, self.outputs = size, {}

    def indices(self, rank: int, world_size: int) -> list[int]:
        return list(range(1, self.size, 2))

    def update(self, output: torch.Tensor, batch: dict[str, Any]) -> None:
        self.outputs.update(zip(batch["index"].tolist(), output.tolist(), strict=True))


def test_feed_runs_the_accumulators_items_in_eval_mode_and_restores_the_mode() -> None:
    modes = []

    class Double(nn.Module):
        def forward(self, x: torch.Tensor, factor: float = 2.0) -> torch.Tensor:
            modes.append(self.training)
            return factor * x

    model = Double().train()
    dataset = [{"index": i, "x": float(i)} for i in range(7)]
    seen = _Seen(len(dataset))

    def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"index": torch.tensor([i["index"] for i in items]), "x": torch.tensor([i["x"] for i in items])}

    feed(model, dataset, seen, collate=collate, inputs=lambda batch: batch["x"], batch_size=2)
    assert seen.outputs == {1: 2.0, 3: 6.0, 5: 10.0}
    assert modes == [False, False] and model.training
    thrice = _Seen(len(dataset))  # options are keyword arguments of each call, for that loop only
    feed(model, dataset, thrice, collate=collate, inputs=lambda batch: batch["x"], options={"factor": 3.0})
    assert thrice.outputs == {1: 3.0, 3: 9.0, 5: 15.0}


def test_to_device_moves_the_tensors_inside_containers() -> None:
    moved = to_device({"a": [torch.ones(1), (torch.zeros(2), "x")]}, torch.device("meta"))
    assert moved["a"][0].is_meta and moved["a"][1][0].is_meta and moved["a"][1][1] == "x"


def test_seeds_depend_on_every_key_and_isolated_draws_leave_the_stream_alone() -> None:
    assert derive_seed(1, 2) == derive_seed(1, 2) != derive_seed(2, 1)
    torch.manual_seed(0)
    expected = torch.rand(2)
    torch.manual_seed(0)
    with isolated_rng(5):
        inside = torch.rand(1)
    assert torch.equal(torch.rand(2), expected)
    with isolated_rng(5):
        assert torch.equal(torch.rand(1), inside)
