"""RoI feature extraction in fp32, for Mask R-CNN under bf16 autocast.

Neither library's RoIAlign has a bfloat16 kernel, on the CPU or on CUDA (mmcv 2.1.0:
"ROIAlign_forward not implemented for 'BFloat16'"; torchvision 0.29: fp32, fp64 and fp16, and its
autocast rule runs the op in fp32), and mmdet's ``SingleRoIExtractor`` casts the RoIs to the
features' dtype: in bf16 a box corner at x = 1001 px becomes 1000 (8 significant bits).
``FP32SingleRoIExtractor`` is mmdet's ``SingleRoIExtractor`` with its inputs cast to fp32 and
autocast off inside, on whichever kernels ``roi_ops`` picks (:mod:`convnext_dense.ops.roi_ops`);
the heads after it run under autocast again. bf16 needs no loss scaling. ``--bf16`` puts it in
place of mmdet's extractor.

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
