"""Global Response Normalization (ConvNeXt V2, Woo et al., 2023, Eq. 1-3) on NHWC activations as
one op, forward and backward:

    norm[n, c] = ||x[n, :, :, c]||_2,   nx = norm / (mean_c norm + eps),
    out = x + beta + gamma * (x * nx) = x * (1 + gamma * nx) + beta.

Each direction is a reduction pass over the activations (sum of x^2, or of grad * x and grad,
per image and channel, in fp32) and a scaling pass that writes the result; the (N, C) statistics
between them are a few kilobytes, combined with PyTorch ops. A single pass is not possible: every
output needs the norms of all channels over the whole image. Unfused, the same takes the norm,
its mean, the division, the product, the addcmul and the residual sum as separate passes.

This file owns the kernels, their launch functions and the ``convnext_dense::grn`` custom op (and
its backward op), whose default implementation is the PyTorch reference (CPU, or no Triton) and
whose CUDA implementation launches the kernels.
"""
from __future__ import annotations

import torch

from ._triton_utils import (
    HAS_TRITON,
    accumulation_dtype,
    check_channel_vector,
    check_floating,
    fresh_like,
    launch_device,
    tl,
    triton,
    triton_accumulation_dtype,
)

# fp32 elements of a program's (pixels x channels) tile: up to 128 contiguous channels of 32
# pixels, 32 registers per thread at 4 warps.
TILE_ELEMENTS = 4096
MAX_BLOCK_C = 128
# Pixels one reduction program sums: enough programs to fill a GPU for a single detection-size
# image (200 x 336 pixels: 66 splits per channel block) with partials far smaller than x.
PIXELS_PER_SPLIT = 1024


# --- Triton kernels ---------------------------------------------------------------------------

if HAS_TRITON:

    @triton.jit
    def _channel_sums_kernel(a_ptr, b_ptr, partial_ptr, HW, C, pixels_per_split,
                             SQUARE: tl.constexpr, WITH_SUM_A: tl.constexpr,
                             ACC: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
        """Partial sums over a range of pixels of ``a * b`` (``a * a`` if SQUARE) and of ``a``
        per (image, channel): partial[n, split, 0 or 1, c]."""
        n = tl.program_id(0)
        split = tl.program_id(1)
        chans = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
        chan_ok = chans < C
        start = split * pixels_per_split
        end = tl.minimum(start + pixels_per_split, HW)
        image = n.to(tl.int64) * HW * C + chans[None, :]
        products = tl.zeros((BLOCK_P, BLOCK_C), ACC)
        sums = tl.zeros((BLOCK_P, BLOCK_C), ACC)
        for p0 in range(start, end, BLOCK_P):
            pixels = p0 + tl.arange(0, BLOCK_P)
            ok = (pixels < end)[:, None] & chan_ok[None, :]
            offsets = image + pixels[:, None] * C
            a = tl.load(a_ptr + offsets, mask=ok, other=0.).to(ACC)
            if SQUARE:
                products += a * a
            else:
                products += a * tl.load(b_ptr + offsets, mask=ok, other=0.).to(ACC)
            if WITH_SUM_A:
                sums += a
        partial = partial_ptr + ((n.to(tl.int64) * tl.num_programs(1) + split) * 2) * C + chans
        tl.store(partial, tl.sum(products, axis=0), mask=chan_ok)
        if WITH_SUM_A:
            tl.store(partial + C, tl.sum(sums, axis=0), mask=chan_ok)

    @triton.jit
    def _scale_kernel(a_ptr, s_ptr, b_ptr, t_ptr, bias_ptr, out_ptr, HW, C,
                      WITH_B: tl.constexpr, WITH_BIAS: tl.constexpr, ACC: tl.constexpr,
                      BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
        """``out[n, p, c] = a * s[n, c] (+ b * t[n, c]) (+ bias[c])``: the forward output
        (a = x, s = 1 + gamma * nx, bias = beta) and the input gradient (a = grad, b = x)."""
        n = tl.program_id(0)
        pixels = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
        chans = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
        chan_ok = chans < C
        ok = (pixels < HW)[:, None] & chan_ok[None, :]
        offsets = n.to(tl.int64) * HW * C + pixels[:, None] * C + chans[None, :]
        stats = n * C + chans
        s = tl.load(s_ptr + stats, mask=chan_ok, other=0.).to(ACC)
        out = tl.load(a_ptr + offsets, mask=ok, other=0.).to(ACC) * s[None, :]
        if WITH_B:
            t = tl.load(t_ptr + stats, mask=chan_ok, other=0.).to(ACC)
            out += tl.load(b_ptr + offsets, mask=ok, other=0.).to(ACC) * t[None, :]
        if WITH_BIAS:
            out += tl.load(bias_ptr + chans, mask=chan_ok, other=0.).to(ACC)[None, :]
        tl.store(out_ptr + offsets, out.to(out_ptr.dtype.element_ty), mask=ok)


# --- the (N, C) statistics, shared by the kernels' launch functions and the reference ---------

def _normalized(norm: torch.Tensor, eps: float) -> torch.Tensor:
    return norm / (norm.mean(dim=-1, keepdim=True) + eps)


def _input_grad_coefficient(norm: torch.Tensor, grad_x_sum: torch.Tensor, gamma: torch.Tensor,
                            eps: float) -> torch.Tensor:
    """``t[n, c]`` with ``grad_x = grad * (1 + gamma * nx) + x * t``: the chain rule through
    ``nx = norm / (mean_c norm + eps)`` and ``norm = ||x||`` (d norm / dx = x / norm; 0 where the
    norm is 0, as torch's ``vector_norm`` backward)."""
    denominator = norm.mean(dim=-1, keepdim=True) + eps
    grad_nx = gamma * grad_x_sum
    grad_norm = (grad_nx / denominator
                 - (grad_nx * norm).sum(-1, keepdim=True) / (denominator ** 2 * norm.shape[-1]))
    return torch.where(norm > 0, grad_norm / torch.where(norm > 0, norm, 1), 0)


# --- launch functions (the CUDA implementation; on CPU tensors under TRITON_INTERPRET=1 they
# run in Triton's interpreter) -------------------------------------------------------------------

def _tiles(channels: int) -> tuple[int, int]:
    block_c = min(triton.next_power_of_2(channels), MAX_BLOCK_C)
    return TILE_ELEMENTS // block_c, block_c


def _channel_sums(a: torch.Tensor, b: torch.Tensor | None, with_sum_a: bool,
                  pixels_per_split: int) -> torch.Tensor:
    """(N, 2, C): sums over the pixels of a * b (a * a when b is None) and of a."""
    N, H, W, C = a.shape
    block_p, block_c = _tiles(C)
    splits = triton.cdiv(H * W, pixels_per_split)
    partial = a.new_zeros((N, splits, 2, C), dtype=accumulation_dtype(a.dtype))
    with launch_device(a):
        _channel_sums_kernel[(N, splits, triton.cdiv(C, block_c))](
            a, a if b is None else b, partial, H * W, C, pixels_per_split, SQUARE=b is None,
            WITH_SUM_A=with_sum_a, ACC=triton_accumulation_dtype(a.dtype), BLOCK_P=block_p,
            BLOCK_C=block_c, num_warps=4)
    return partial.sum(1)


def _scale(a: torch.Tensor, s: torch.Tensor, b: torch.Tensor | None = None,
           t: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
    N, H, W, C = a.shape
    block_p, block_c = _tiles(C)
    out = torch.empty_like(a)
    s = s.contiguous()
    with launch_device(a):
        _scale_kernel[(N, triton.cdiv(H * W, block_p), triton.cdiv(C, block_c))](
            a, s, a if b is None else b, s if t is None else t.contiguous(),
            s if bias is None else bias.contiguous(), out, H * W, C, WITH_B=b is not None,
            WITH_BIAS=bias is not None, ACC=triton_accumulation_dtype(a.dtype), BLOCK_P=block_p,
            BLOCK_C=block_c, num_warps=4)
    return out


def triton_forward(x: torch.Tensor,
                   gamma: torch.Tensor,
                   beta: torch.Tensor,
                   eps: float,
                   pixels_per_split: int = PIXELS_PER_SPLIT) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the forward kernels: ``(out NHWC in x.dtype, norm (N, C))``, the norm in the
    accumulation dtype."""
    x = x.contiguous()
    acc = accumulation_dtype(x.dtype)
    norm = _channel_sums(x, None, False, pixels_per_split)[:, 0].sqrt()
    scale = 1 + gamma.reshape(-1).to(acc) * _normalized(norm, eps)
    return _scale(x, scale, bias=beta.reshape(-1)), norm


def triton_backward(grad_out: torch.Tensor,
                    x: torch.Tensor,
                    gamma: torch.Tensor,
                    norm: torch.Tensor,
                    eps: float,
                    pixels_per_split: int = PIXELS_PER_SPLIT) -> tuple[torch.Tensor, ...]:
    """Launch the backward kernels: gradients of x, gamma and beta (gamma's and beta's shape and
    dtype)."""
    grad_out, x = grad_out.contiguous(), x.contiguous()
    acc = accumulation_dtype(x.dtype)
    sums = _channel_sums(grad_out, x, True, pixels_per_split)
    gamma_acc = gamma.reshape(-1).to(acc)
    nx = _normalized(norm, eps)
    coefficient = _input_grad_coefficient(norm, sums[:, 0], gamma_acc, eps)
    grad_x = _scale(grad_out, 1 + gamma_acc * nx, x, coefficient)
    grad_gamma = (sums[:, 0] * nx).sum(0).reshape(gamma.shape)
    return (grad_x, fresh_like(gamma, grad_gamma),
            fresh_like(gamma, sums[:, 1].sum(0).reshape(gamma.shape)))


# --- PyTorch reference -------------------------------------------------------------------------

def reference_forward(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                      eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The GRN of :class:`convnext_dense.models.GRN` in the accumulation dtype, returning what
    :func:`triton_forward` returns."""
    acc = accumulation_dtype(x.dtype)
    x_acc = x.to(acc)
    norm = torch.linalg.vector_norm(x_acc, ord=2, dim=(1, 2))
    nx = _normalized(norm, eps)[:, None, None, :]
    gamma, beta = gamma.reshape(-1).to(acc), beta.reshape(-1).to(acc)
    return (x_acc + beta + gamma * (x_acc * nx)).to(x.dtype).contiguous(), norm


def reference_backward(grad_out: torch.Tensor, x: torch.Tensor, gamma: torch.Tensor,
                       norm: torch.Tensor, eps: float) -> tuple[torch.Tensor, ...]:
    """The gradients :func:`triton_backward` computes, with PyTorch ops."""
    acc = accumulation_dtype(x.dtype)
    g, x_acc = grad_out.to(acc), x.to(acc)
    gamma_acc = gamma.reshape(-1).to(acc)
    grad_x_sum = (g * x_acc).sum((1, 2))
    nx = _normalized(norm, eps)
    coefficient = _input_grad_coefficient(norm, grad_x_sum, gamma_acc, eps)
    grad_x = g * (1 + gamma_acc * nx)[:, None, None, :] + x_acc * coefficient[:, None, None, :]
    return (grad_x.to(x.dtype).contiguous(),
            fresh_like(gamma, (grad_x_sum * nx).sum(0).reshape(gamma.shape)),
            fresh_like(gamma, g.sum((0, 1, 2)).reshape(gamma.shape)))


# --- custom ops --------------------------------------------------------------------------------

@torch.library.custom_op('convnext_dense::grn', mutates_args=())
def _grn_op(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
            eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    return reference_forward(x, gamma, beta, eps)


@_grn_op.register_fake
def _(x, gamma, beta, eps):
    N, _, _, C = x.shape
    return x.new_empty(x.shape), x.new_empty((N, C), dtype=accumulation_dtype(x.dtype))


@torch.library.custom_op('convnext_dense::grn_backward', mutates_args=())
def _grn_backward_op(grad_out: torch.Tensor, x: torch.Tensor, gamma: torch.Tensor,
                     norm: torch.Tensor, eps: float,
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return reference_backward(grad_out, x, gamma, norm, eps)


@_grn_backward_op.register_fake
def _(grad_out, x, gamma, norm, eps):
    return x.new_empty(x.shape), torch.empty_like(gamma), torch.empty_like(gamma)


if HAS_TRITON:
    _grn_op.register_kernel('cuda')(triton_forward)
    _grn_backward_op.register_kernel('cuda')(triton_backward)


def _setup_context(ctx, inputs, output):
    x, gamma, _, eps = inputs
    _, norm = output
    ctx.save_for_backward(x, gamma, norm)
    ctx.eps = eps
    ctx.mark_non_differentiable(norm)


def _backward(ctx, grad_out, _grad_norm):
    x, gamma, norm = ctx.saved_tensors
    return (*_grn_backward_op(grad_out, x, gamma, norm, ctx.eps), None)


_grn_op.register_autograd(_backward, setup_context=_setup_context)


def grn(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
        eps: float = 1e-6) -> torch.Tensor:
    """Global Response Normalization of :class:`convnext_dense.models.GRN` as one op,
    differentiable in ``x``, ``gamma`` and ``beta``.

    Args:
        x: (N, H, W, C) activations, float16/bfloat16/float32 (float64 for gradient checks).
        gamma, beta: the C per-channel parameters, any shape with C as last dimension (the
            module's (1, 1, 1, C)).
        eps: Added to the mean response.

    Returns:
        The (N, H, W, C) contiguous result in ``x.dtype``, computed in fp32 (fp64 for fp64
        input); on CUDA with Triton by the fused kernels (see :func:`fused_kernels_available`).
    """
    check_floating('x', x)
    if x.dim() != 4:
        raise ValueError(f'x must be (N, H, W, C) channels-last activations, '
                         f'got shape {tuple(x.shape)}')
    check_channel_vector('gamma', gamma, x.shape[-1])
    check_channel_vector('beta', beta, x.shape[-1])
    return _grn_op(x, gamma, beta, float(eps))[0]
