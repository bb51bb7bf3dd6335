"""The classification objective: one cross entropy, or the light models' two heads at 0.5 + 0.5."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from uniformer import UniFormer
from uniformer.engine.config import load_config
from uniformer.tasks.classification import TASK

CONFIGS = Path(__file__).resolve().parents[2] / "src" / "uniformer" / "configs"
TINY_LIGHT = dict(depth=(1, 1, 2, 1), embed_dim=(16, 32, 48, 64), head_dim=16, mlp_ratio=3, light=True)


def _objective(recipe: str, classes: int):
    cfg = load_config(CONFIGS / recipe, ["mixup.prob=0", "loss.label_smoothing=0"])
    return TASK.objective(cfg, classes, 2)


def test_a_light_recipe_trains_both_heads_half_and_half() -> None:
    torch.manual_seed(0)
    model = UniFormer(**TINY_LIGHT, num_classes=5).train()
    objective = _objective("image/in1k_uniformer_xxs_160.yaml", 5)
    x, targets = torch.randn(2, 3, 64, 64), torch.tensor([1, 4])
    output = objective.forward(model, x)
    loss = objective.loss(output, targets)
    torch.manual_seed(0)
    pooled, score_token = model.forward_train(x)
    expected = 0.5 * F.cross_entropy(pooled, targets) + 0.5 * F.cross_entropy(score_token, targets)
    torch.testing.assert_close(loss, expected)
    assert not torch.allclose(pooled, score_token)
    loss.backward()
    assert model.head.weight.grad.abs().sum() > 0 and model.head_cls.weight.grad.abs().sum() > 0


def test_other_recipes_train_one_head() -> None:
    objective = _objective("image/in1k_uniformer_small.yaml", 5)
    model = UniFormer(depth=(1, 1, 1, 1), embed_dim=(16, 32, 64, 128), head_dim=16, num_classes=5).train()
    x, targets = torch.randn(2, 3, 64, 64), torch.tensor([0, 3])
    output = objective.forward(model, x)
    torch.testing.assert_close(objective.loss(output, targets), F.cross_entropy(output, targets))
    with pytest.raises(ValueError, match="two heads"):
        _objective("image/in1k_uniformer_xxs_160.yaml", 5).loss(output, targets)
