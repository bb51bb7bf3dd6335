"""Dense-prediction heads on the UniFormer backbone, with mmseg 0.x / mmpose 0.x module and parameter names."""

from uniformer.models.heads.fcn import FCNHead
from uniformer.models.heads.fpn import FPN, FPNHead
from uniformer.models.heads.modules import ConvModule, DecodeHead, resize
from uniformer.models.heads.topdown import TopDownSimpleHead
from uniformer.models.heads.upernet import PPM, UPerHead

__all__ = ["ConvModule", "DecodeHead", "FCNHead", "FPN", "FPNHead", "PPM", "TopDownSimpleHead", "UPerHead", "resize"]
