"""The pure renamings between an mmseg UperNet-ConvNeXt state dict and transformers' UperNet:
state dict in, state dict out, no files and no transformers import."""
from __future__ import annotations

from collections.abc import Mapping

import torch

from ...checkpoint.layouts import convert_state_dict, export_state_dict

HEAD_PREFIXES = ('decode_head.', 'auxiliary_head.')
# Module names in the heads, ours (mmseg / mmcv ConvModule) -> transformers'.
HEAD_MODULE_NAMES = {'conv_seg': 'classifier', 'bn': 'batch_norm'}


def _rename_head_key(key: str, mapping: Mapping[str, str]) -> str:
    *modules, param = key.split('.')
    return '.'.join([mapping.get(name, name) for name in modules] + [param])


def upernet_to_hf_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An mmseg UperNet-ConvNeXt state dict (``backbone.``, ``decode_head.``,
    ``auxiliary_head.``) in the names and shapes of transformers' UperNet."""
    backbone = {k[len('backbone.'):]: v for k, v in state_dict.items()
                if k.startswith('backbone.')}
    if not backbone:
        raise ValueError(f'the state dict has no backbone.* keys (first keys: '
                         f'{list(state_dict)[:4]}); it is not a whole UperNet model')
    hf = {f'backbone.{k}': v for k, v in export_state_dict(backbone, 'hf').items()}
    for key, value in state_dict.items():
        if key.startswith('backbone.'):
            continue
        if not key.startswith(HEAD_PREFIXES):
            raise ValueError(f'{key!r} is neither in the backbone nor in a head; transformers\' '
                             'UperNet has no counterpart for it')
        hf[_rename_head_key(key, HEAD_MODULE_NAMES)] = value
    return hf


def hf_to_upernet_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`upernet_to_hf_state_dict`: transformers' UperNet-ConvNeXt names to
    this project's backbone and mmseg's heads."""
    backbone = {k[len('backbone.'):]: v for k, v in state_dict.items()
                if k.startswith('backbone.')}
    converted, report = convert_state_dict(backbone, layout='hf', prefix='')
    unknown = report.ignored + report.dropped_classifier
    if unknown:
        raise ValueError(f'backbone keys without a ConvNeXt counterpart: '
                         f'{["backbone." + k for k in unknown[:4]]}')
    ours = {f'backbone.{k}': v for k, v in converted.items()}
    to_ours = {theirs: name for name, theirs in HEAD_MODULE_NAMES.items()}
    for key, value in state_dict.items():
        if key.startswith('backbone.'):
            continue
        if not key.startswith(HEAD_PREFIXES):
            raise ValueError(f'{key!r} is neither in the backbone nor in a head of a UperNet')
        ours[_rename_head_key(key, to_ours)] = value
    return ours
