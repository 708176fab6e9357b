"""convnext_dense: ConvNeXt (V1/V2) for detection and segmentation, as an mmdet 3.x / mmseg 1.x
plugin.

Importing the package (``custom_imports=dict(imports=['convnext_dense'])`` in a config) registers
the ``ConvNeXt`` backbone and the ``ConvNeXtLayerDecayOptimWrapperConstructor`` in mmengine's root
registries, where mmdet's and mmseg's registries find them, and makes mmengine checkpoints load
under torch's ``weights_only=True`` default (see :mod:`convnext_dense.engine.torch_load`), and
writes checkpoints atomically (:mod:`convnext_dense.engine.atomic_io`), and keeps an installed
mmpretrain from breaking mmdet and lets mmcv's NMS take bf16 boxes (see
:mod:`convnext_dense.engine.compat`).
"""
from .engine import (
    allow_bf16_nms,
    allow_mmengine_checkpoints,
    guard_mmpretrain_import,
    register_atomic_local_backend,
    register_mmengine_loader,
)
from .models import ConvNeXt
from .optim import ConvNeXtLayerDecayOptimWrapperConstructor
from .version import __version__

allow_mmengine_checkpoints()
register_mmengine_loader()
register_atomic_local_backend()
guard_mmpretrain_import()
allow_bf16_nms()

__all__ = ['ConvNeXt', 'ConvNeXtLayerDecayOptimWrapperConstructor', '__version__']
