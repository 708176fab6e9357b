from .convnext import ARCH_SETTINGS, V1_ARCHS, V2_ARCHS, Block, ConvNeXt, Stage
from .layers import GRN, LayerNorm2d
from .roi_extractor import build_fp32_roi_extractor

__all__ = ['ARCH_SETTINGS', 'V1_ARCHS', 'V2_ARCHS', 'Block', 'ConvNeXt', 'GRN', 'LayerNorm2d',
           'Stage', 'build_fp32_roi_extractor']
