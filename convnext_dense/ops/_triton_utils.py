"""What the Triton kernels of :mod:`convnext_dense.ops` share: whether Triton can be imported,
which devices launch it, and the accumulation dtype of a storage dtype."""
from __future__ import annotations

import contextlib

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # torch wheels for CPU-only or non-Linux platforms come without Triton
    triton = None
    tl = None

HAS_TRITON = triton is not None


def fused_kernels_available(device: torch.device | str) -> bool:
    """Whether the custom ops run their Triton kernels on ``device`` (a CUDA device with Triton
    installed); elsewhere they compute the PyTorch reference."""
    device = torch.device(device)
    return HAS_TRITON and device.type == 'cuda' and torch.cuda.is_available()


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 for fp32/fp16/bf16 storage; fp64 stays fp64 so that ``gradcheck`` can run the
    kernels at its precision."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def triton_accumulation_dtype(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def check_floating(name: str, tensor: torch.Tensor) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f'{name} must be a torch.Tensor, got {type(tensor).__name__}')
    if tensor.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise TypeError(f'{name} must be float16, bfloat16, float32 or float64, '
                        f'got {tensor.dtype}')


def check_channel_vector(name: str, tensor: torch.Tensor, channels: int) -> None:
    """``tensor`` holds one value per channel (shape (C,), or GRN's (1, 1, 1, C))."""
    check_floating(name, tensor)
    if tensor.numel() != channels or tensor.shape[-1] != channels:
        raise ValueError(f'{name} must have {channels} values along its last dimension (one '
                         f'per channel), got shape {tuple(tensor.shape)}')


def fresh_like(like: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``value`` in a new tensor of ``like``'s dtype and strides, as a fake implementation's
    ``torch.empty_like(like)`` describes it: an op's outputs must not be views of one tensor
    (torch.library refuses outputs that alias each other)."""
    return torch.empty_like(like).copy_(value)


def launch_device(tensor: torch.Tensor):
    """The device context a launch needs: Triton launches on the current CUDA device, which need
    not be the tensors'. CPU tensors (Triton's interpreter) need none."""
    if tensor.is_cuda:
        return torch.cuda.device(tensor.device)
    return contextlib.nullcontext()
