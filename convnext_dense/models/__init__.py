from .convnext import ARCH_SETTINGS, V1_ARCHS, V2_ARCHS, Block, ConvNeXt, Stage
from .layers import GRN, LayerNorm2d

__all__ = ['ARCH_SETTINGS', 'V1_ARCHS', 'V2_ARCHS', 'Block', 'ConvNeXt', 'GRN', 'LayerNorm2d',
           'Stage']
