"""Whole-model checkpoints (a detector, a segmentor) for ``tools/test.py`` and ``tools/demo.py``:
checked against the model, tensor by tensor, with a ConvNeXt backbone stored in another layout
converted on the way.

mmengine loads ``load_from`` with ``strict=False``: a checkpoint of another model only logs a
warning, and an evaluation then measures untrained weights. Here that is an error naming the
checkpoint and the keys.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from ..fileio import read_checkpoint
from .layouts import OFFICIAL, convert_state_dict, detect_layout, unwrap_checkpoint
from .loading import shape_mismatch


def fit_model_state_dict(model_state: Mapping[str, torch.Tensor],
                         state_dict: Mapping[str, torch.Tensor],
                         source: str = 'checkpoint') -> tuple[dict[str, torch.Tensor], list[str]]:
    """Check that a whole-model state dict (a detector, a segmentor) fits a model's, converting
    a ConvNeXt backbone stored in another layout.

    mmengine loads ``load_from`` with ``strict=False``: a checkpoint of another model only logs
    a warning, and an evaluation then measures untrained weights. Here that is an error naming
    the checkpoint and the keys. The paper's fine-tuned mmdet 2.x / mmseg 0.x models already
    use this project's names; a model whose ``backbone.`` keys are in another layout (mmdet
    3.x's and mmseg 1.x's own ConvNeXt configs save mmpretrain names) is converted.

    Args:
        model_state: The model's ``state_dict()``.
        state_dict: The checkpoint's tensors (unwrapped, without a ``module.`` prefix).
        source: How to name the checkpoint in messages.

    Returns:
        ``(state_dict to load, notes)``; notes say what was converted or left out.
    """
    state = dict(state_dict)
    notes: list[str] = []
    has_our_backbone = any(re.match(r'backbone\.' + OFFICIAL.anchor, k)
                           for k in model_state)
    if has_our_backbone and not any(k.startswith('backbone.') for k in state):
        try:
            layout, _ = detect_layout(state)
        except ValueError:
            layout = None
        if layout is not None:
            raise ValueError(
                f'{source} holds only a ConvNeXt backbone ({layout} layout), not a whole model; '
                f'to initialise training from it use --cfg-options '
                f'model.backbone.init_cfg.checkpoint=FILE (tools/train.py)')
    if has_our_backbone:
        backbone = {k[len('backbone.'):]: v for k, v in state.items()
                    if k.startswith('backbone.')}
        try:
            layout, prefix = detect_layout(backbone)
        except ValueError:
            layout, prefix = 'official', ''  # not a ConvNeXt: the key check below says so
        if layout != 'official' or prefix:
            converted, report = convert_state_dict(backbone, layout, prefix)
            state = {k: v for k, v in state.items() if not k.startswith('backbone.')}
            state.update({f'backbone.{k}': v for k, v in converted.items()})
            notes.append(f'backbone converted from the {layout} layout ({len(converted)} '
                         'tensors)')
    mismatch = shape_mismatch(model_state, state)
    if mismatch:
        raise ValueError(f'{source} does not fit this model: {mismatch}')
    missing = [k for k in model_state if k not in state]
    if missing:
        raise ValueError(f'{source} lacks {len(missing)} of the model\'s {len(model_state)} '
                         f'tensors, e.g. {missing[:4]}: it is a checkpoint of another model '
                         f'(first keys in it: {list(state)[:4]})')
    unexpected = [k for k in state if k not in model_state]
    if unexpected:
        notes.append(f'{len(unexpected)} tensors not in the model, not loaded: '
                     f'{unexpected[:4]}')
    return state, notes


def load_model_checkpoint(model: nn.Module, checkpoint: str) -> tuple[list[str], dict]:
    """Read a whole-model checkpoint (``weights_only``), fit it to ``model`` with
    :func:`fit_model_state_dict` and load it.

    Returns:
        ``(notes of the fit, the checkpoint's meta dict or {})``.
    """
    raw = read_checkpoint(checkpoint)
    state = unwrap_checkpoint(raw)
    # DataParallel / DDP checkpoints, as mmengine's load_checkpoint also strips
    state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
    state, notes = fit_model_state_dict(model.state_dict(), state,
                                        source=f'checkpoint {checkpoint!r}')
    model.load_state_dict(state, strict=False)  # every tensor of the model is in `state`
    meta = raw.get('meta') if isinstance(raw, Mapping) else None
    return notes, dict(meta) if isinstance(meta, Mapping) else {}
