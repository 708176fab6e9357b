"""convnext_dense: ConvNeXt (V1/V2) for detection and segmentation, as an mmdet 3.x / mmseg 1.x
plugin.

Importing the package (``custom_imports=dict(imports=['convnext_dense'])`` in a config) registers
the ``ConvNeXt`` backbone, its heads and layers, the ``ConvNeXtLayerDecayOptimWrapperConstructor``
and ``BF16OptimWrapper``, the ``FastCocoMetric`` evaluator and the hooks and model wrapper of
:mod:`convnext_dense.engine` in mmengine's root registries, where mmdet's and mmseg's registries
find them, and applies the work-arounds listed in :mod:`convnext_dense.compat.patches` (safe
checkpoint loading under torch >= 2.6, atomic checkpoint writes, mmpretrain beside current
transformers, bf16 NMS, OneDL config scopes). ``docs/architecture.md`` describes the layers of
the package.
"""
from . import engine  # noqa: F401  (registers the hooks and the channels-last DDP wrapper)
from .compat import apply_patches
from .compat.config_package import register_config_package
from .evaluation import build_fast_coco_metric  # noqa: F401  (registers FastCocoMetric)
from .models import ConvNeXt
from .optim import ConvNeXtLayerDecayOptimWrapperConstructor
from .version import __version__

apply_patches()  # what importing the plugin changes in mmengine/mmcv/mmdet: compat/patches.py
register_config_package()  # _base_ = ['convnext_dense::PATH']: compat/config_package.py

__all__ = ['ConvNeXt', 'ConvNeXtLayerDecayOptimWrapperConstructor', '__version__']
