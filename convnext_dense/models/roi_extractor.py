"""RoI feature extraction in fp32, for Mask R-CNN under bf16 autocast.

mmcv 2.1.0's RoIAlign has no bfloat16 kernel ("ROIAlign_forward not implemented for
'BFloat16'", CPU and CUDA alike), so a Mask R-CNN fails as soon as it runs under bf16 autocast.
``FP32SingleRoIExtractor`` is mmdet's ``SingleRoIExtractor`` with its inputs cast to fp32 and
autocast off inside; the heads after it run under autocast again. bf16 needs no loss scaling.

It is registered as a builder function so that ``import convnext_dense`` does not import
mmdet's model zoo (seconds) for mmseg users; mmdet is imported when the first one is built.
"""
from __future__ import annotations

import functools

import torch
from mmengine.registry import MODELS


@functools.cache
def _extractor_class() -> type:
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor

    class FP32SingleRoIExtractor(SingleRoIExtractor):

        def forward(self, feats, rois, roi_scale_factor=None):
            with torch.autocast(device_type=rois.device.type, enabled=False):
                return super().forward(tuple(f.float() for f in feats), rois.float(),
                                       roi_scale_factor)

    return FP32SingleRoIExtractor


@MODELS.register_module(name='FP32SingleRoIExtractor')
def build_fp32_roi_extractor(**kwargs) -> torch.nn.Module:
    """mmdet's ``SingleRoIExtractor`` that runs RoIAlign in fp32 (same arguments)."""
    return _extractor_class()(**kwargs)
