"""Models built the way users build them: mmdet's and mmseg's own base configs with
``backbone=dict(type='ConvNeXt', ...)`` plugged in through ``custom_imports``."""
from __future__ import annotations

import copy

from mmengine.hub import get_config

from convnext_dense.models import ARCH_SETTINGS


def _dims(arch: str) -> list[int]:
    return ARCH_SETTINGS[arch]['dims']


def build_mask_rcnn(arch: str = 'tiny', fp32_roi: bool = False,
                    backbone_type: str = 'ConvNeXt', **backbone):
    """mmdet's Mask R-CNN base model with a ConvNeXt backbone: ours, or another registered one
    such as ``'mmpretrain.ConvNeXt'`` (mmdet 3.x's own ConvNeXt configs; import mmpretrain
    first)."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    cfg = get_config('mmdet::_base_/models/mask-rcnn_r50_fpn.py')
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone = dict(type=backbone_type, arch=arch, **backbone)
    model_cfg.neck.in_channels = _dims(arch)
    if fp32_roi:
        model_cfg.roi_head.bbox_roi_extractor.type = 'FP32SingleRoIExtractor'
        model_cfg.roi_head.mask_roi_extractor.type = 'FP32SingleRoIExtractor'
    return MODELS.build(model_cfg)


def build_upernet(arch: str = 'tiny', **backbone):
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules()
    cfg = get_config('mmseg::_base_/models/upernet_r50.py')
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.pretrained = None  # the base config's ResNet weights
    model_cfg.backbone = dict(type='ConvNeXt', arch=arch, **backbone)
    model_cfg.decode_head.in_channels = _dims(arch)
    model_cfg.auxiliary_head.in_channels = _dims(arch)[2]
    norm_cfg = dict(type='BN', requires_grad=True)  # SyncBN cannot run on CPU
    model_cfg.decode_head.norm_cfg = norm_cfg
    model_cfg.auxiliary_head.norm_cfg = norm_cfg
    model_cfg.data_preprocessor.size = (64, 64)
    return MODELS.build(model_cfg)
