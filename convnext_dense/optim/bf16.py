"""bf16 training without a loss scaler: :class:`BF16OptimWrapper`.

bfloat16 has fp32's exponent range, so the dynamic loss scale of fp16 AMP only adds its inf
checks and host syncs; the fast path's ``bf16`` switch (:mod:`convnext_dense.engine.fast_path`)
and training without CUDA under ``AmpOptimWrapper(dtype='bfloat16')``
(:func:`convnext_dense.engine.run_config.adapt_to_cpu`) train with this wrapper.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from torch import nn


@OPTIM_WRAPPERS.register_module()
class BF16OptimWrapper(OptimWrapper):
    """mmengine's ``OptimWrapper`` with the forward under bfloat16 autocast and no loss scaler.

    mmengine's ``AmpOptimWrapper(dtype='bfloat16')`` refuses to be built without a GPU and
    always creates a ``GradScaler``, whose unscale and inf checks bf16 does not need (it has
    fp32's exponent range); this runs on every device autocast supports, CPU included.
    """

    @contextmanager
    def optim_context(self, model: nn.Module):
        from mmengine.runner.amp import autocast
        with super().optim_context(model), autocast(dtype=torch.bfloat16):
            yield

    def load_state_dict(self, state_dict: dict) -> None:
        # A checkpoint of fp16 AMP training carries its loss scaler, which bf16 has no use for.
        state_dict = {k: v for k, v in state_dict.items() if k != 'loss_scaler'}
        super().load_state_dict(state_dict)
