"""The SimpleBaseline heatmap head of the top-down pose models (mmpose 0.x ``TopDownSimpleHead``).

Facts from mmpose 0.16 as vendored by Sense-X/UniFormer (``pose_estimation/mmpose/models/keypoint_heads/
top_down_simple_head.py`` and ``top_down_base_head.py``), configured by ``pose_estimation/exp/top_down_*/config.py``
(``in_channels=512``, 17 outputs, ``extra=dict(final_conv_kernel=1)``); read for reference only.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from uniformer.models.layers.batchnorm import fold_sequential_batchnorms

__all__ = ["TopDownSimpleHead"]


class TopDownSimpleHead(nn.Module):
    """``num_deconv`` x (ConvTranspose2d 4x4 stride 2 padding 1 without bias, BatchNorm, ReLU), then a 1x1 conv to
    one heatmap per keypoint: a stride-32 map becomes stride-4 heatmaps.

    Keys as released: ``deconv_layers.{3i}.weight`` (transposed convs), ``deconv_layers.{3i+1}.*`` (BatchNorm),
    ``final_layer.weight`` / ``.bias``. Initialisation as mmpose's ``init_weights``: transposed and final conv
    weights normal with std 0.001, final bias 0, BatchNorm weight 1 and bias 0.
    """

    def __init__(self, in_channels: int, num_keypoints: int, channels: int = 256, num_deconv: int = 3) -> None:
        super().__init__()
        if num_deconv < 1:
            raise ValueError(f"TopDownSimpleHead needs at least one deconvolution, got num_deconv={num_deconv}")
        self.num_keypoints = num_keypoints
        layers: list[nn.Module] = []
        for i in range(num_deconv):
            deconv = nn.ConvTranspose2d(in_channels if i == 0 else channels, channels, 4, 2, padding=1, bias=False)
            nn.init.normal_(deconv.weight, std=0.001)
            layers += [deconv, nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = nn.Conv2d(channels, num_keypoints, kernel_size=1)
        nn.init.normal_(self.final_layer.weight, std=0.001)
        nn.init.zeros_(self.final_layer.bias)

    def reparameterize(self) -> None:
        """Fold the eval-mode BatchNorms into the transposed convolutions before them, in place (inference copies;
        see :func:`uniformer.models.optimize.fold_batchnorms`)."""
        fold_sequential_batchnorms(self.deconv_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Heatmaps (B, num_keypoints, H * 2**num_deconv, W * 2**num_deconv) of a map (B, in_channels, H, W)."""
        return self.final_layer(self.deconv_layers(x))
