"""The hook that applies the fast path when a run starts (:class:`FastPathHook`), and what it
keeps as the plain model has it: checkpoints' parameter names (:func:`plain_state_dict`) and the
resumed optimizer state's memory layout (:func:`match_optimizer_state`)."""
from __future__ import annotations

from collections import OrderedDict

import torch
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper
from mmengine.registry import HOOKS

from .transforms import apply_fast_path

# A compiled module is reached through an OptimizedModule whose parameters live under this
# prefix; checkpoints keep the plain model's names.
COMPILED_PREFIX = '_orig_mod.'


def match_optimizer_state(optimizer: torch.optim.Optimizer) -> int:
    """Give each optimizer state tensor its parameter's memory layout; returns how many moved.

    Fused AdamW on the CPU steps a channels-last parameter whose state was resumed in NCHW
    (or the reverse) element by element over the raw memory, so the update lands on the wrong
    elements with no error (torch 2.14; the foreach path steps it right; CUDA's fused kernel
    not checked on a GPU yet).
    """
    moved = 0
    for param, state in optimizer.state.items():
        for key, value in state.items():
            if (isinstance(value, torch.Tensor) and value.shape == param.shape
                    and value.stride() != param.stride()):
                state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)
                moved += 1
    return moved


def plain_state_dict(state_dict: dict) -> dict:
    """``state_dict`` with compiled modules' ``_orig_mod.`` taken out of its keys (and of its
    version metadata), as the uncompiled model names them."""
    if not any(COMPILED_PREFIX in key for key in state_dict):
        return state_dict
    plain = OrderedDict((key.replace(COMPILED_PREFIX, ''), value)
                        for key, value in state_dict.items())
    metadata = getattr(state_dict, '_metadata', None)
    if metadata is not None:
        plain._metadata = OrderedDict((key.replace(COMPILED_PREFIX.rstrip('.'), '')
                                       .replace('..', '.').strip('.'), value)
                                      for key, value in metadata.items())
    return plain


@HOOKS.register_module()
class FastPathHook(Hook):
    """Apply the config's ``fast_path`` to the runner's model when training, validation or
    testing starts: after the weights are initialised, loaded or resumed, so that resumed
    optimizer state can take the parameters' layout. Checkpoints keep the plain model's
    parameter names."""

    priority = 'LOW'

    def _apply(self, runner) -> None:
        fast_path = runner.cfg.get('fast_path')
        if not fast_path:
            return
        apply_fast_path(runner.model, fast_path)
        optim_wrapper = getattr(runner, 'optim_wrapper', None)
        optimizers = [] if not isinstance(optim_wrapper, OptimWrapper) else \
            [optim_wrapper.optimizer]
        if hasattr(optim_wrapper, 'optim_wrappers'):  # OptimWrapperDict
            optimizers = [w.optimizer for w in optim_wrapper.optim_wrappers.values()]
        for optimizer in optimizers:
            match_optimizer_state(optimizer)

    def before_train(self, runner) -> None:
        self._apply(runner)

    def before_val(self, runner) -> None:
        self._apply(runner)

    def before_test(self, runner) -> None:
        self._apply(runner)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if 'state_dict' in checkpoint:
            checkpoint['state_dict'] = plain_state_dict(checkpoint['state_dict'])
