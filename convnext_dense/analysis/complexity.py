"""Parameters and FLOPs of a detection or segmentation config's model, counted as the paper.

FLOPs are counted by :class:`mmengine.analysis.FlopAnalyzer`, the counter behind
:func:`mmengine.analysis.get_model_complexity_info` (fvcore's tracer: one fused multiply-add is
one FLOP, the ConvNeXt paper's convention; used directly to skip the activation count, a second
trace), on one random image in inference mode, the way mmdet's and mmseg's
``tools/analysis_tools/get_flops.py`` do:

* detection: ``model(inputs, data_samples, mode='tensor')`` -- backbone, neck, RPN head, RPN
  proposals (1000 at test time) and the RoI heads on them (the mask head on the first 100).
  For Cascade R-CNN, mmdet 3's tensor mode runs the three mask heads on all 1000 proposals
  (3x as many FLOPs as the whole rest of the model); the paper's counts (mmdet 2's
  ``forward_dummy``) run the three box heads on the 1000 proposals and the three mask heads on
  the first 100, which is what is counted here;
* segmentation: ``model(inputs, mode='tensor')`` -- backbone and decode head; the auxiliary
  head is a training-only branch and runs no FLOPs.

Parameters are those of the whole model as built, auxiliary head included (the paper's UperNet
counts include it; mmseg's tool drops it).

The model is built as every tool builds it (:func:`convnext_dense.engine.build_model`): without
pretrained weights (no ``init_weights``, ``init_cfg`` off) and with SyncBN reverted to BN, so it
runs on a CPU.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from mmengine.config import Config
from torch import nn

from ..engine import build_model

# (H, W) used when neither the caller nor the config (``flops_shape``) gives one: the paper's
# 1280x800 for detection, 2048x512 (512 crops) or 2560x640 (640 crops) for segmentation.
DET_SHAPE = (800, 1280)


def _scope(cfg: Config) -> str:
    scope = cfg.get('default_scope', None)
    if scope not in ('mmdet', 'mmseg'):
        raise ValueError(f"default_scope must be 'mmdet' or 'mmseg', got {scope!r}")
    return scope


def default_flops_shape(cfg: Config) -> tuple[int, int]:
    """(H, W) of the input to measure: ``cfg.flops_shape`` if set, else the paper's size."""
    if cfg.get('flops_shape', None) is not None:
        return tuple(int(v) for v in cfg.flops_shape)
    if _scope(cfg) == 'mmdet':
        return DET_SHAPE
    crop = cfg.get('crop_size', (512, 512))
    return (crop[0], 4 * crop[0])  # ADE20K's 4:1 test resize (2048x512, 2560x640)


def build_model_for_analysis(cfg: Config, model_cfg: dict | None = None) -> nn.Module:
    """Build ``cfg.model`` (or ``model_cfg``, in ``cfg``'s scope) as the tools build it: no
    pretrained weights, no ``init_weights`` call, SyncBN replaced by BN; left where torch
    creates tensors (``with torch.device('meta')`` builds it without memory)."""
    _scope(cfg)
    if model_cfg is not None:
        cfg = copy.copy(cfg)  # the top level only: the model is replaced, not changed
        cfg.model = model_cfg
    return build_model(cfg, device=None)


def _det_inputs(model: nn.Module, shape: Sequence[int]):
    from mmdet.structures import DetDataSample
    h, w = shape
    meta = dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1., 1.))
    batch = dict(inputs=[torch.randint(0, 256, (3, h, w), dtype=torch.uint8)],
                 data_samples=[DetDataSample(metainfo=meta)])
    return model.data_preprocessor(batch, False)


def _seg_inputs(model: nn.Module, shape: Sequence[int]):
    from mmseg.structures import SegDataSample
    h, w = shape
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w))
    batch = dict(inputs=[torch.randint(0, 256, (3, h, w), dtype=torch.uint8)],
                 data_samples=[SegDataSample(metainfo=meta)])
    return model.data_preprocessor(batch, False)


class _TensorForward(nn.Module):
    """``model(inputs, data_samples, mode='tensor')`` as a one-argument module to trace."""

    def __init__(self, model: nn.Module, data_samples) -> None:
        super().__init__()
        self.model = model
        self.data_samples = data_samples

    def forward(self, inputs: torch.Tensor):
        from mmdet.models.roi_heads import CascadeRoIHead
        if isinstance(getattr(self.model, 'roi_head', None), CascadeRoIHead):
            return self._cascade_forward(inputs)
        return self.model(inputs, self.data_samples, mode='tensor')

    def _cascade_forward(self, inputs: torch.Tensor):
        """mmdet 2's ``CascadeRoIHead.forward_dummy`` on the RPN's test proposals."""
        from mmdet.structures.bbox import bbox2roi
        model, roi_head = self.model, self.model.roi_head
        x = model.extract_feat(inputs)
        proposals = model.rpn_head.predict(x, self.data_samples, rescale=False)
        rois = bbox2roi([p.bboxes for p in proposals])
        outs = []
        for stage in range(roi_head.num_stages):
            bbox_results = roi_head._bbox_forward(stage, x, rois)
            outs += [bbox_results['cls_score'], bbox_results['bbox_pred']]
        if roi_head.with_mask:
            for stage in range(roi_head.num_stages):
                outs.append(roi_head._mask_forward(stage, x, rois[:100])['mask_preds'])
        return tuple(outs)


def model_complexity(cfg: Config | str, shape: Sequence[int] | None = None,
                     seed: int = 0) -> dict:
    """Parameters and FLOPs of ``cfg``'s model on one ``shape`` = (H, W) image.

    Returns:
        dict(params=int, flops=int, shape=(H, W), input_shape=(H, W) after the data
        preprocessor's padding, scope='mmdet'|'mmseg').
    """
    from mmengine.analysis import FlopAnalyzer
    if isinstance(cfg, str):
        cfg = Config.fromfile(cfg)
    shape = tuple(int(v) for v in (shape if shape is not None else default_flops_shape(cfg)))
    if len(shape) != 2:
        raise ValueError(f'shape must be (H, W), got {shape}')
    scope = _scope(cfg)
    model = build_model_for_analysis(cfg).eval()
    torch.manual_seed(seed)
    with torch.no_grad():
        data = (_det_inputs if scope == 'mmdet' else _seg_inputs)(model, shape)
        inputs = data['inputs']
        data_samples = data['data_samples'] if scope == 'mmdet' else None
        flops = FlopAnalyzer(_TensorForward(model, data_samples), inputs=(inputs, )).total()
    return dict(params=sum(p.numel() for p in model.parameters()), flops=int(flops),
                shape=shape, input_shape=tuple(inputs.shape[-2:]), scope=scope)
