"""The data preprocessor's steps inside the exported graphs."""
from __future__ import annotations

import torch
from torch import nn


def preprocess(preprocessor: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """The data preprocessor's steps on a float batch: channel swap, then mean/std (padding is
    the caller's: mmdet pads after normalising, with ``pad_value``). mmengine's
    ``ImgDataPreprocessor`` (mmdet's base) names the swap ``_channel_conversion``, mmseg's
    ``SegDataPreProcessor`` ``channel_conversion``."""
    swap = getattr(preprocessor, '_channel_conversion', None)
    if swap is None:
        swap = preprocessor.channel_conversion
    if swap:
        image = image[:, [2, 1, 0]]
    if preprocessor._enable_normalize:
        image = (image - preprocessor.mean) / preprocessor.std
    return image
