"""Tolerances for comparing two floating-point computations of the same function, derived from
the arithmetic instead of from what one machine printed.

A sum of ``n`` products computed in a floating-point format with unit roundoff ``u = eps / 2``
is within ``n * u`` (relative to the sum of the magnitudes of its terms) of the exact value, in
any summation order (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., 3.1).
Two implementations (another library, another CPU's SIMD width, another thread count, a
channels-last kernel) each stay within that bound of the exact result, so they differ by at
most ``2 * n * u = n * eps`` of the scale. Through a network the errors of the successive
reductions add up, each carried forward at the scale of the activations (the LayerNorms keep
that scale near 1), so ``n`` is the **reduction depth**: the sum, over the layers a value passes
through, of the number of terms each layer adds up. The scale is the reference's largest
magnitude.

Where a comparison is exact by construction (a state dict round trip, the same kernel on the
same data), tests use ``torch.equal`` instead.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from convnext_dense.models import GRN


def reduction_depth(*modules: nn.Module, grn_positions: int = 0) -> int:
    """The number of terms summed along the layers of ``modules`` (an upper bound of the depth
    of any one path through them): ``C_in / groups * kh * kw`` per convolution, ``in_features``
    per Linear, twice the normalised size per LayerNorm (its mean, then its variance) and, per
    GRN, its spatial L2 norm over ``grn_positions`` (the largest feature map's H x W) plus its
    mean over the channels."""
    depth = 0
    for module in modules:
        for layer in module.modules():
            if isinstance(layer, nn.modules.conv._ConvNd):
                depth += layer.in_channels // layer.groups * math.prod(layer.kernel_size)
            elif isinstance(layer, nn.Linear):
                depth += layer.in_features
            elif isinstance(layer, nn.LayerNorm):
                depth += 2 * math.prod(layer.normalized_shape)
            elif isinstance(layer, GRN):
                depth += grn_positions + layer.gamma.numel()
    return depth


def rounding_depth(*modules: nn.Module) -> int:
    """The number of convolutions and Linear layers in ``modules``: under bf16/fp16 autocast each
    rounds its inputs and weights to the low-precision format (and accumulates in fp32)."""
    return sum(isinstance(layer, (nn.modules.conv._ConvNd, nn.Linear))
               for module in modules for layer in module.modules())


def tolerance(expected: torch.Tensor, depth: int, dtype: torch.dtype = torch.float32) -> float:
    """The largest difference two correct computations of ``expected`` may show: ``eps(dtype) *
    depth * max|expected|`` (see the module docstring)."""
    if depth <= 0:
        raise ValueError(f'depth must be positive, got {depth}')
    return torch.finfo(dtype).eps * depth * expected.detach().abs().max().item()


def assert_close_to_reference(actual: torch.Tensor, expected: torch.Tensor, depth: int,
                              dtype: torch.dtype = torch.float32, name: str = '') -> None:
    """Assert ``max|actual - expected| <= tolerance(expected, depth, dtype)``, saying by how much
    it was missed."""
    assert actual.shape == expected.shape, (name, actual.shape, expected.shape)
    limit = tolerance(expected, depth, dtype)
    diff = (actual.detach().double() - expected.detach().double()).abs().max().item()
    assert diff <= limit, (f'{name}: max |difference| {diff:.3g} exceeds {limit:.3g} = '
                           f'eps({dtype}) x depth {depth} x scale '
                           f'{expected.abs().max().item():.3g}')


def assert_backbone_outputs_close(ours, theirs, model: nn.Module, x: torch.Tensor) -> None:
    """Two float32 computations of a ConvNeXt's outputs on ``x`` agree within its reduction
    depth (GRN sums over the largest map, at stride 4)."""
    assert len(ours) == len(theirs), (len(ours), len(theirs))
    depth = reduction_depth(model, grn_positions=x.shape[2] * x.shape[3] // 16)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert_close_to_reference(a, b, depth, name=f'output {i}')
