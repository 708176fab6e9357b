"""Normalisation layers of ConvNeXt (Liu et al., 2022) and ConvNeXt V2 (Woo et al., 2023).

Parameter names and shapes follow the official facebookresearch releases, so their checkpoints
load without conversion: ``LayerNorm2d.weight/bias`` of shape (C,) and ``GRN.gamma/beta`` of
shape (1, 1, 1, C).
"""
import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor (the official ``channels_first`` LayerNorm).

    Runs ``F.layer_norm`` on a channels-last view: when the input is already in
    ``torch.channels_last`` memory format both permutes are free (no copy).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class GRN(nn.Module):
    """Global Response Normalization (ConvNeXt V2, Eq. 1-3) on an NHWC tensor.

    Args:
        dim: Number of channels (the last dimension of the input).
        eps: Added to the mean response, as in the official code.
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The L2 norm is reduced in fp32: under fp16 autocast the sum of squares over a
        # 200x336 map overflows the fp16 range.
        spatial_norm = torch.linalg.vector_norm(x, ord=2, dim=(1, 2), keepdim=True,
                                                dtype=torch.float32)
        normalized = spatial_norm / (spatial_norm.mean(dim=-1, keepdim=True) + self.eps)
        # Parameters are cast to the activation dtype so that under autocast the block stays in
        # bf16/fp16 instead of being promoted to fp32 by the fp32 parameters.
        return x + torch.addcmul(self.beta.to(x.dtype), self.gamma.to(x.dtype),
                                 x * normalized.to(x.dtype))
