"""convnext_dense: ConvNeXt (V1/V2) for detection and segmentation, as an mmdet 3.x / mmseg 1.x
plugin.

Importing the package (``custom_imports=dict(imports=['convnext_dense'])`` in a config) registers
the ``ConvNeXt`` backbone and the ``ConvNeXtLayerDecayOptimWrapperConstructor`` in mmengine's root
registries, where mmdet's and mmseg's registries find them, and applies the work-arounds listed
in :mod:`convnext_dense.engine.patches` (safe checkpoint loading under torch >= 2.6, atomic
checkpoint writes, mmpretrain beside current transformers, bf16 NMS, OneDL config scopes).
"""
from .engine.patches import apply_patches
from .evaluation import build_fast_coco_metric  # noqa: F401  (registers FastCocoMetric)
from .models import ConvNeXt
from .optim import ConvNeXtLayerDecayOptimWrapperConstructor
from .version import __version__

apply_patches()  # what importing the plugin changes in mmengine/mmcv/mmdet: engine/patches.py

__all__ = ['ConvNeXt', 'ConvNeXtLayerDecayOptimWrapperConstructor', '__version__']
