"""The first half of a ConvNeXt block (Liu et al., 2022, Fig. 4) as one op: 7x7 depthwise
convolution + bias, then LayerNorm over the channels, returning the NHWC tensor the pointwise
Linear layers read.

Unfused, the depthwise conv writes its output, LayerNorm reads it back and writes its own, and the
permute to NHWC is one more copy unless the input is channels_last: each a full pass over memory
that the GPU's arithmetic does not hide. Here one Triton program computes the convolution of a
row segment for all channels in fp32 registers, normalises it and writes the NHWC result once,
with the per-pixel mean and 1/std kept for the backward pass (the convolution output itself is
recomputed there rather than stored).

This file owns the kernels, their launch functions and the ``convnext_dense::dwconv7x7_layernorm``
custom op (and its backward op), whose default implementation is the PyTorch reference (CPU, or
no Triton) and whose CUDA implementation launches the kernels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

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

KERNEL_SIZE = 7
TAPS = KERNEL_SIZE * KERNEL_SIZE
# fp32 elements of the (pixels x channels) tile one program holds in registers: the LayerNorm
# needs every channel of a pixel at once, so wide stages get fewer pixels per program. 4096 is
# 32 fp32 registers per thread at 4 warps (8 beyond 2048 elements), leaving room for the loads.
TILE_ELEMENTS = 4096
# Rows of one image that a weight-gradient program reduces over: its partial sum is TAPS x C
# fp32, so fewer rows per program would write partials larger than the activations.
WEIGHT_GRAD_ROWS = 8
WEIGHT_GRAD_BLOCK_C = 32
WEIGHT_GRAD_BLOCK_W = 16  # x 8 kernel-column lanes x 32 channels: 4096 elements


# --- Triton kernels ---------------------------------------------------------------------------

if HAS_TRITON:

    @triton.jit
    def _dwconv7x7_row(x_ptr, w_ptr, b_ptr, n, h, cols, chans, chan_ok, H, W,
                       stride_n, stride_c, stride_h, stride_w,
                       ACC: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr):
        """Depthwise 7x7 convolution + bias at pixels (n, h, cols) for channels ``chans``, zero
        padding, accumulated in ``ACC``; any input strides (channels_last reads coalesced)."""
        # Loop-invariant pointers and masks are hoisted (kw outer, as the column masks depend on
        # kw only): Triton's interpreter pays per operation, the compiler would hoist them too.
        x_rows = x_ptr + n.to(tl.int64) * stride_n + chans[None, :] * stride_c + (h - 3) * stride_h
        w_taps = w_ptr + chans * 49
        acc = tl.zeros((BLOCK_W, BLOCK_C), ACC)
        for kw in tl.static_range(7):
            iw = cols + (kw - 3)
            x_cols = x_rows + iw[:, None] * stride_w
            tap_ok = ((iw >= 0) & (iw < W))[:, None] & chan_ok[None, :]
            for kh in tl.static_range(7):
                ih = h + (kh - 3)
                xv = tl.load(x_cols + kh * stride_h, mask=tap_ok & ((ih >= 0) & (ih < H)),
                             other=0.)
                wv = tl.load(w_taps + (kh * 7 + kw), mask=chan_ok, other=0.)
                acc += xv.to(ACC) * wv.to(ACC)[None, :]
        bias = tl.load(b_ptr + chans, mask=chan_ok, other=0.).to(ACC)
        return acc + bias[None, :]

    @triton.jit
    def _forward_kernel(x_ptr, w_ptr, b_ptr, lw_ptr, lb_ptr, out_ptr, mean_ptr, rstd_ptr,
                        H, W, C, stride_n, stride_c, stride_h, stride_w, eps,
                        ACC: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr):
        row = tl.program_id(0)  # n * H + h
        n = row // H
        h = row % H
        cols = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)
        chans = tl.arange(0, BLOCK_C)
        col_ok = cols < W
        chan_ok = chans < C
        y = _dwconv7x7_row(x_ptr, w_ptr, b_ptr, n, h, cols, chans, chan_ok, H, W,
                           stride_n, stride_c, stride_h, stride_w, ACC, BLOCK_W, BLOCK_C)
        # Padded channels hold exactly 0 (masked loads), so the sums over BLOCK_C are over C.
        mean = tl.sum(y, axis=1) / C
        centered = tl.where(chan_ok[None, :], y - mean[:, None], 0.)
        var = tl.sum(centered * centered, axis=1) / C
        rstd = 1. / tl.sqrt(var + eps)
        lw = tl.load(lw_ptr + chans, mask=chan_ok, other=0.).to(ACC)
        lb = tl.load(lb_ptr + chans, mask=chan_ok, other=0.).to(ACC)
        out = centered * rstd[:, None] * lw[None, :] + lb[None, :]
        pixels = row.to(tl.int64) * W + cols
        tl.store(out_ptr + pixels[:, None] * C + chans[None, :],
                 out.to(out_ptr.dtype.element_ty), mask=col_ok[:, None] & chan_ok[None, :])
        tl.store(mean_ptr + pixels, mean, mask=col_ok)
        tl.store(rstd_ptr + pixels, rstd, mask=col_ok)

    @triton.jit
    def _layernorm_backward_kernel(x_ptr, w_ptr, b_ptr, lw_ptr, grad_ptr, mean_ptr, rstd_ptr,
                                   dy_ptr, partial_ptr, H, W, C,
                                   stride_n, stride_c, stride_h, stride_w,
                                   ACC: tl.constexpr, BLOCK_W: tl.constexpr,
                                   BLOCK_C: tl.constexpr):
        """Gradient at the convolution output (``dy``, NHWC) from the output gradient, with the
        convolution recomputed, and per-program partial sums of the LayerNorm weight, LayerNorm
        bias and depthwise bias gradients."""
        row = tl.program_id(0)
        n = row // H
        h = row % H
        cols = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)
        chans = tl.arange(0, BLOCK_C)
        col_ok = cols < W
        chan_ok = chans < C
        ok = col_ok[:, None] & chan_ok[None, :]
        y = _dwconv7x7_row(x_ptr, w_ptr, b_ptr, n, h, cols, chans, chan_ok, H, W,
                           stride_n, stride_c, stride_h, stride_w, ACC, BLOCK_W, BLOCK_C)
        pixels = row.to(tl.int64) * W + cols
        mean = tl.load(mean_ptr + pixels, mask=col_ok, other=0.)
        rstd = tl.load(rstd_ptr + pixels, mask=col_ok, other=0.)
        xhat = tl.where(ok, (y - mean[:, None]) * rstd[:, None], 0.)
        offsets = pixels[:, None] * C + chans[None, :]
        g = tl.load(grad_ptr + offsets, mask=ok, other=0.).to(ACC)
        lw = tl.load(lw_ptr + chans, mask=chan_ok, other=0.).to(ACC)
        dxhat = g * lw[None, :]
        mean_dxhat = tl.sum(dxhat, axis=1) / C
        mean_dxhat_xhat = tl.sum(dxhat * xhat, axis=1) / C
        dy = (dxhat - mean_dxhat[:, None] - xhat * mean_dxhat_xhat[:, None]) * rstd[:, None]
        dy = tl.where(ok, dy, 0.)
        tl.store(dy_ptr + offsets, dy.to(dy_ptr.dtype.element_ty), mask=ok)
        program = row.to(tl.int64) * tl.num_programs(1) + tl.program_id(1)
        partial = partial_ptr + program * 3 * C + chans
        tl.store(partial, tl.sum(g * xhat, axis=0), mask=chan_ok)
        tl.store(partial + C, tl.sum(g, axis=0), mask=chan_ok)
        tl.store(partial + 2 * C, tl.sum(dy, axis=0), mask=chan_ok)

    @triton.jit
    def _input_grad_kernel(dy_ptr, w_ptr, gx_ptr, H, W, C,
                           stride_n, stride_c, stride_h, stride_w,
                           ACC: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr):
        """Input gradient: the transposed depthwise convolution of ``dy``, written with the
        input's strides."""
        row = tl.program_id(0)
        n = row // H
        h = row % H
        cols = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)
        chans = tl.arange(0, BLOCK_C)
        col_ok = cols < W
        chan_ok = chans < C
        dy_image = dy_ptr + n.to(tl.int64) * H * W * C + chans[None, :]
        w_taps = w_ptr + chans * 49
        acc = tl.zeros((BLOCK_W, BLOCK_C), ACC)
        for kw in tl.static_range(7):
            ow = cols - (kw - 3)
            dy_cols = dy_image + ((h + 3) * W + ow)[:, None] * C
            tap_ok = ((ow >= 0) & (ow < W))[:, None] & chan_ok[None, :]
            for kh in tl.static_range(7):
                oh = h - (kh - 3)
                d = tl.load(dy_cols - kh * W * C, mask=tap_ok & ((oh >= 0) & (oh < H)), other=0.)
                wv = tl.load(w_taps + (kh * 7 + kw), mask=chan_ok, other=0.)
                acc += d.to(ACC) * wv.to(ACC)[None, :]
        gx = (gx_ptr + n.to(tl.int64) * stride_n + chans[None, :] * stride_c + h * stride_h
              + cols[:, None] * stride_w)
        tl.store(gx, acc.to(gx_ptr.dtype.element_ty), mask=col_ok[:, None] & chan_ok[None, :])

    @triton.jit
    def _weight_grad_kernel(x_ptr, dy_ptr, partial_ptr, H, W, C,
                            stride_n, stride_c, stride_h, stride_w,
                            ROWS: tl.constexpr, ACC: tl.constexpr, BLOCK_W: tl.constexpr,
                            BLOCK_C: tl.constexpr):
        """Partial sums of the depthwise weight gradient, ``sum_p dy[p] * x[p + tap]``, over
        ``ROWS`` rows of one image and a block of channels: one (49, C) slice per program.
        The 7 taps of a kernel row are a tensor axis (8 lanes), so each ``dy`` tile is loaded
        once per kernel row instead of once per tap."""
        program = tl.program_id(0)  # n * cdiv(H, ROWS) + row chunk
        chunks = tl.cdiv(H, ROWS)
        n = program // chunks
        h0 = (program % chunks) * ROWS
        chans = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        chan_ok = chans < C
        kws = tl.arange(0, 8)
        kw_ok = kws < 7
        x_image = x_ptr + n.to(tl.int64) * stride_n + chans[None, None, :] * stride_c
        dy_image = dy_ptr + n.to(tl.int64) * H * W * C + chans[None, :]
        partial = partial_ptr + program.to(tl.int64) * 49 * C + chans[None, :]
        for kh in tl.static_range(7):
            acc = tl.zeros((8, BLOCK_C), ACC)
            for r in range(ROWS):
                h = h0 + r
                ih = h + (kh - 3)
                row_ok = (h < H) & (ih >= 0) & (ih < H)
                for w0 in range(0, W, BLOCK_W):
                    cols = w0 + tl.arange(0, BLOCK_W)
                    dy_ok = ((cols < W) & row_ok)[:, None] & chan_ok[None, :]
                    d = tl.load(dy_image + (h * W + cols)[:, None] * C, mask=dy_ok, other=0.)
                    iw = cols[:, None] + (kws[None, :] - 3)
                    x_ok = (kw_ok[None, :] & (iw >= 0) & (iw < W))[:, :, None] & dy_ok[:, None, :]
                    xv = tl.load(x_image + ih * stride_h + iw[:, :, None] * stride_w, mask=x_ok,
                                 other=0.)
                    acc += tl.sum(d.to(ACC)[:, None, :] * xv.to(ACC), axis=0)
            tl.store(partial + (kh * 7 + kws)[:, None] * C, acc,
                     mask=kw_ok[:, None] & chan_ok[None, :])


# --- launch functions (the CUDA implementation; on CPU tensors under TRITON_INTERPRET=1 they
# run in Triton's interpreter) -------------------------------------------------------------------

def _row_tiles(channels: int, width: int, block_w: int | None) -> tuple[int, int, int]:
    block_c = triton.next_power_of_2(channels)
    if block_w is None:
        block_w = max(1, min(triton.next_power_of_2(width), TILE_ELEMENTS // block_c))
    num_warps = 4 if block_w * block_c <= 2048 else 8
    return block_w, block_c, num_warps


def triton_forward(x: torch.Tensor,
                   dw_weight: torch.Tensor,
                   dw_bias: torch.Tensor,
                   ln_weight: torch.Tensor,
                   ln_bias: torch.Tensor,
                   eps: float,
                   block_w: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch the forward kernel: ``(out NHWC in x.dtype, mean, rstd)``, the statistics
    (N, H, W) in the accumulation dtype. ``block_w`` overrides the pixels per program."""
    N, C, H, W = x.shape
    acc = accumulation_dtype(x.dtype)
    out = x.new_empty((N, H, W, C))
    mean = x.new_empty((N, H, W), dtype=acc)
    rstd = x.new_empty((N, H, W), dtype=acc)
    block_w, block_c, num_warps = _row_tiles(C, W, block_w)
    with launch_device(x):
        _forward_kernel[(N * H, triton.cdiv(W, block_w))](
            x, dw_weight.contiguous(), dw_bias.contiguous(), ln_weight.contiguous(),
            ln_bias.contiguous(), out, mean, rstd, H, W, C, *x.stride(), eps,
            ACC=triton_accumulation_dtype(x.dtype), BLOCK_W=block_w, BLOCK_C=block_c,
            num_warps=num_warps)
    return out, mean, rstd


def triton_backward(grad_out: torch.Tensor,
                    x: torch.Tensor,
                    dw_weight: torch.Tensor,
                    dw_bias: torch.Tensor,
                    ln_weight: torch.Tensor,
                    mean: torch.Tensor,
                    rstd: torch.Tensor,
                    block_w: int | None = None,
                    rows_per_program: int = WEIGHT_GRAD_ROWS) -> tuple[torch.Tensor, ...]:
    """Launch the backward kernels: gradients of x (x's strides), dw weight, dw bias, LN weight
    and LN bias (in their tensors' dtypes). Weight and bias gradients are summed from fixed
    per-program partials, so they do not depend on scheduling (no atomics)."""
    N, C, H, W = x.shape
    acc = accumulation_dtype(x.dtype)
    ACC = triton_accumulation_dtype(x.dtype)
    grad_out = grad_out.contiguous()
    weight_like = dw_weight
    dw_weight = dw_weight.contiguous()
    # dy is stored at the activations' precision, as an unfused backward would hand it on.
    dy = torch.empty_like(grad_out, dtype=x.dtype)
    grad_x = torch.empty_like(x)
    block_w, block_c, num_warps = _row_tiles(C, W, block_w)
    row_grid = (N * H, triton.cdiv(W, block_w))
    row_partials = x.new_empty((N * H * row_grid[1], 3, C), dtype=acc)
    weight_grid = (N * triton.cdiv(H, rows_per_program), triton.cdiv(C, WEIGHT_GRAD_BLOCK_C))
    weight_partials = x.new_empty((weight_grid[0], TAPS, C), dtype=acc)
    with launch_device(x):
        _layernorm_backward_kernel[row_grid](
            x, dw_weight, dw_bias.contiguous(), ln_weight.contiguous(), grad_out, mean, rstd,
            dy, row_partials, H, W, C, *x.stride(), ACC=ACC, BLOCK_W=block_w, BLOCK_C=block_c,
            num_warps=num_warps)
        _input_grad_kernel[row_grid](
            dy, dw_weight, grad_x, H, W, C, *grad_x.stride(), ACC=ACC, BLOCK_W=block_w,
            BLOCK_C=block_c, num_warps=num_warps)
        _weight_grad_kernel[weight_grid](
            x, dy, weight_partials, H, W, C, *x.stride(), ROWS=rows_per_program, ACC=ACC,
            BLOCK_W=min(WEIGHT_GRAD_BLOCK_W, triton.next_power_of_2(W)),
            BLOCK_C=WEIGHT_GRAD_BLOCK_C, num_warps=4)
    sums = row_partials.sum(0)
    # The (TAPS, C) partials' transpose has transposed strides; fresh_like gives each gradient
    # the fake implementation's strides, in a tensor of its own.
    grad_w = weight_partials.sum(0).t().reshape(dw_weight.shape)
    return (grad_x, fresh_like(weight_like, grad_w), fresh_like(dw_bias, sums[2]),
            fresh_like(ln_weight, sums[0]), fresh_like(ln_weight, sums[1]))


# --- PyTorch reference -------------------------------------------------------------------------

def reference_forward(x: torch.Tensor,
                      dw_weight: torch.Tensor,
                      dw_bias: torch.Tensor,
                      ln_weight: torch.Tensor,
                      ln_bias: torch.Tensor,
                      eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``F.conv2d`` + ``F.layer_norm`` in the accumulation dtype, returning what
    :func:`triton_forward` returns."""
    acc = accumulation_dtype(x.dtype)
    channels = x.shape[1]
    y = F.conv2d(x.to(acc), dw_weight.to(acc), dw_bias.to(acc), padding=KERNEL_SIZE // 2,
                 groups=channels).permute(0, 2, 3, 1)
    var, mean = torch.var_mean(y, dim=-1, correction=0)
    out = F.layer_norm(y, (channels,), ln_weight.to(acc), ln_bias.to(acc), eps)
    return (out.to(x.dtype).contiguous(), mean.contiguous(),
            torch.rsqrt(var + eps).contiguous())


def reference_backward(grad_out: torch.Tensor,
                       x: torch.Tensor,
                       dw_weight: torch.Tensor,
                       dw_bias: torch.Tensor,
                       ln_weight: torch.Tensor,
                       mean: torch.Tensor,
                       rstd: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The gradients :func:`triton_backward` computes, with PyTorch ops (LayerNorm backward
    written out, convolution gradients from ``torch.nn.grad``)."""
    acc = accumulation_dtype(x.dtype)
    channels = x.shape[1]
    padding = KERNEL_SIZE // 2
    x_acc, w_acc = x.to(acc), dw_weight.to(acc)
    y = F.conv2d(x_acc, w_acc, dw_bias.to(acc), padding=padding,
                 groups=channels).permute(0, 2, 3, 1)
    xhat = (y - mean[..., None]) * rstd[..., None]
    g = grad_out.to(acc)
    dxhat = g * ln_weight.to(acc)
    dy = rstd[..., None] * (dxhat - dxhat.mean(-1, keepdim=True)
                            - xhat * (dxhat * xhat).mean(-1, keepdim=True))
    dy = dy.to(x.dtype).to(acc).permute(0, 3, 1, 2)  # stored at the activations' precision
    grad_x = torch.nn.grad.conv2d_input(x.shape, w_acc, dy, padding=padding, groups=channels)
    grad_w = torch.nn.grad.conv2d_weight(x_acc, dw_weight.shape, dy, padding=padding,
                                         groups=channels)
    return (fresh_like(x, grad_x), fresh_like(dw_weight, grad_w),
            dy.sum((0, 2, 3)).to(dw_bias.dtype), (g * xhat).sum((0, 1, 2)).to(ln_weight.dtype),
            g.sum((0, 1, 2)).to(ln_weight.dtype))


# --- custom ops --------------------------------------------------------------------------------

@torch.library.custom_op('convnext_dense::dwconv7x7_layernorm', mutates_args=())
def _dwconv7x7_layernorm_op(x: torch.Tensor,
                            dw_weight: torch.Tensor,
                            dw_bias: torch.Tensor,
                            ln_weight: torch.Tensor,
                            ln_bias: torch.Tensor,
                            eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return reference_forward(x, dw_weight, dw_bias, ln_weight, ln_bias, eps)


@_dwconv7x7_layernorm_op.register_fake
def _(x, dw_weight, dw_bias, ln_weight, ln_bias, eps):
    N, C, H, W = x.shape
    acc = accumulation_dtype(x.dtype)
    return (x.new_empty((N, H, W, C)), x.new_empty((N, H, W), dtype=acc),
            x.new_empty((N, H, W), dtype=acc))


@torch.library.custom_op('convnext_dense::dwconv7x7_layernorm_backward', mutates_args=())
def _dwconv7x7_layernorm_backward_op(
        grad_out: torch.Tensor, x: torch.Tensor, dw_weight: torch.Tensor, dw_bias: torch.Tensor,
        ln_weight: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return reference_backward(grad_out, x, dw_weight, dw_bias, ln_weight, mean, rstd)


@_dwconv7x7_layernorm_backward_op.register_fake
def _(grad_out, x, dw_weight, dw_bias, ln_weight, mean, rstd):
    return (torch.empty_like(x), torch.empty_like(dw_weight), torch.empty_like(dw_bias),
            torch.empty_like(ln_weight), torch.empty_like(ln_weight))


if HAS_TRITON:
    _dwconv7x7_layernorm_op.register_kernel('cuda')(triton_forward)
    _dwconv7x7_layernorm_backward_op.register_kernel('cuda')(triton_backward)


def _setup_context(ctx, inputs, output):
    x, dw_weight, dw_bias, ln_weight, _, _ = inputs
    _, mean, rstd = output
    ctx.save_for_backward(x, dw_weight, dw_bias, ln_weight, mean, rstd)
    ctx.mark_non_differentiable(mean, rstd)


def _backward(ctx, grad_out, _grad_mean, _grad_rstd):
    grads = _dwconv7x7_layernorm_backward_op(grad_out, *ctx.saved_tensors)
    return (*grads, None)


_dwconv7x7_layernorm_op.register_autograd(_backward, setup_context=_setup_context)


def dwconv7x7_layernorm(x: torch.Tensor,
                        dw_weight: torch.Tensor,
                        dw_bias: torch.Tensor,
                        ln_weight: torch.Tensor,
                        ln_bias: torch.Tensor,
                        eps: float = 1e-6) -> torch.Tensor:
    """``F.layer_norm(F.conv2d(x, dw_weight, dw_bias, padding=3, groups=C).permute(0, 2, 3, 1),
    (C,), ln_weight, ln_bias, eps)`` as one op, differentiable in every tensor.

    Args:
        x: (N, C, H, W) input in any memory format (channels_last is the one the kernel reads
            coalesced), float16/bfloat16/float32 (float64 for gradient checks).
        dw_weight: (C, 1, 7, 7) depthwise weight.
        dw_bias, ln_weight, ln_bias: (C,) conv bias and LayerNorm affine parameters.
        eps: LayerNorm epsilon.

    Returns:
        The (N, H, W, C) contiguous result in ``x.dtype``, computed in fp32 (fp64 for fp64
        input); on CUDA with Triton by the fused kernel (see :func:`fused_kernels_available`).
    """
    check_floating('x', x)
    if x.dim() != 4:
        raise ValueError(f'x must be (N, C, H, W), got shape {tuple(x.shape)}')
    channels = x.shape[1]
    check_floating('dw_weight', dw_weight)
    if tuple(dw_weight.shape) != (channels, 1, KERNEL_SIZE, KERNEL_SIZE):
        raise ValueError(f'dw_weight must be ({channels}, 1, 7, 7) for a depthwise 7x7 conv of '
                         f'{channels} channels, got shape {tuple(dw_weight.shape)}')
    for name, value in (('dw_bias', dw_bias), ('ln_weight', ln_weight), ('ln_bias', ln_bias)):
        check_channel_vector(name, value, channels)
        if value.dim() != 1:
            raise ValueError(f'{name} must be ({channels},), got shape {tuple(value.shape)}')
    return _dwconv7x7_layernorm_op(x, dw_weight, dw_bias, ln_weight, ln_bias, float(eps))[0]
