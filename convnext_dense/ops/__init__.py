"""Fused ConvNeXt block kernels (Triton) as PyTorch custom ops.

``dwconv7x7_layernorm`` (the block's depthwise conv + LayerNorm, NCHW in, NHWC out) and ``grn``
(ConvNeXt V2's Global Response Normalization) run Triton kernels on CUDA tensors when Triton is
installed (:func:`fused_kernels_available`) and their PyTorch reference elsewhere. Both are
``torch.library`` custom ops with fake implementations and autograd formulas, so a model using
them compiles with ``torch.compile(fullgraph=True)``.

:mod:`.roi_ops` runs the detectors' RoIAlign and NMS (mmcv's ops) on mmcv's or torchvision's
kernels, by the config key ``roi_ops`` and the tensor's device.
"""
from ._triton_utils import fused_kernels_available
from .dwconv_layernorm import dwconv7x7_layernorm
from .global_response_norm import grn
from .roi_ops import (
    ROI_OPS,
    check_roi_ops,
    get_roi_ops,
    mmcv_has_kernels,
    roi_ops_mode,
    roi_ops_route,
    route_mmcv_ops,
    set_roi_ops,
)

__all__ = ['ROI_OPS', 'check_roi_ops', 'dwconv7x7_layernorm', 'fused_kernels_available',
           'get_roi_ops', 'grn', 'mmcv_has_kernels', 'roi_ops_mode', 'roi_ops_route',
           'route_mmcv_ops', 'set_roi_ops']
