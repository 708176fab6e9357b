"""Fused ConvNeXt block kernels (Triton) as PyTorch custom ops.

``dwconv7x7_layernorm`` (the block's depthwise conv + LayerNorm, NCHW in, NHWC out) and ``grn``
(ConvNeXt V2's Global Response Normalization) run Triton kernels on CUDA tensors when Triton is
installed (:func:`fused_kernels_available`) and their PyTorch reference elsewhere. Both are
``torch.library`` custom ops with fake implementations and autograd formulas, so a model using
them compiles with ``torch.compile(fullgraph=True)``.
"""
from ._triton_utils import fused_kernels_available
from .dwconv_layernorm import dwconv7x7_layernorm
from .global_response_norm import grn

__all__ = ['dwconv7x7_layernorm', 'fused_kernels_available', 'grn']
