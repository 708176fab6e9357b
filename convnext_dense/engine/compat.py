"""Work-arounds for incompatibilities of the pinned OpenMMLab stack with current packages.

mmpretrain 1.2.0 does not import beside current transformers (4.5x and 5.x): its BLIP code
subclasses ``PreTrainedModel`` names that are now None and fails with ``TypeError: NoneType takes
no arguments``. mmdet 3.3 imports mmpretrain whenever it is installed (its ReID data
preprocessor guards only against ``ImportError``), so the mere presence of both packages breaks
``import mmdet.models`` for every mmdet user. :func:`import_mmpretrain` imports mmpretrain with
its dependency probe told that transformers is absent: mmpretrain then registers placeholders
for its multimodal models (broken anyway) and everything else works.

mmcv 2.1.0's NMS has no bfloat16 kernel: :func:`allow_bf16_nms` runs it on fp32 copies, so that
a detector trains under bf16 autocast (with ``FP32SingleRoIExtractor`` for RoIAlign).
"""
from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def import_mmpretrain() -> ModuleType | None:
    """Import ``mmpretrain.models`` safely; None when mmpretrain is not installed."""
    if 'mmpretrain.models' in sys.modules:
        return sys.modules['mmpretrain.models']
    if importlib.util.find_spec('mmpretrain') is None:
        return None
    import importlib_metadata
    real_distribution = importlib_metadata.distribution

    def distribution(name: str):
        if name == 'transformers':
            raise importlib_metadata.PackageNotFoundError(name)
        return real_distribution(name)

    importlib_metadata.distribution = distribution
    try:
        import mmpretrain.models
    finally:
        importlib_metadata.distribution = real_distribution
    return mmpretrain.models


def guard_mmpretrain_import() -> None:
    """Import mmpretrain safely now if transformers is installed beside it, so that mmdet's
    later ``import mmpretrain`` finds it in ``sys.modules`` instead of failing."""
    if importlib.util.find_spec('transformers') is not None:
        import_mmpretrain()


class _FP32NmsOps:
    """Proxy of mmcv's compiled ops module whose ``nms`` runs on fp32 boxes and scores."""

    def __init__(self, ops) -> None:
        self._ops = ops

    def nms(self, bboxes, scores, **kwargs):
        return self._ops.nms(bboxes.float(), scores.float(), **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._ops, name)


def allow_bf16_nms() -> None:
    """Let mmcv's NMS take bf16 boxes (as they come out of an RPN under bf16 autocast).

    mmcv 2.1.0's NMS kernels have no bfloat16 version ("expected scalar type Float but found
    BFloat16"); NMS returns indices, so computing it on fp32 copies changes nothing else. Only
    ``nms`` of the ``mmcv.ops.nms`` module is wrapped; fp32/fp16 inputs behave as before (fp16
    is cast to fp32 too, which the kernels then compare in fp32).
    """
    try:  # `mmcv.ops.nms` the attribute is the function; the module is in sys.modules
        nms_module = importlib.import_module('mmcv.ops.nms')
    except ImportError:  # mmcv without compiled ops
        return
    if not isinstance(nms_module.ext_module, _FP32NmsOps):
        nms_module.ext_module = _FP32NmsOps(nms_module.ext_module)
