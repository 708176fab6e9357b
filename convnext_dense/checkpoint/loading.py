"""Reading a ConvNeXt checkpoint of any layout into a backbone, and converting files between
layouts.

:func:`load_pretrained` is what ``init_cfg=dict(type='Pretrained', checkpoint=...)`` runs: it
reads the file with ``weights_only`` (:mod:`convnext_dense.engine.torch_load`), detects the
layout, converts and loads it, naming the file and keys when it does not fit.
"""
from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping

import torch
from mmengine.logging import print_log
from torch import nn

from ..engine.atomic_io import atomic_write
from ..engine.torch_load import read_checkpoint
from .layouts import (
    ConversionReport,
    convert_state_dict,
    export_state_dict,
    get_layout,
    unwrap_checkpoint,
)


def shape_mismatch(model_state: Mapping[str, torch.Tensor],
                   state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """Describe the first key of ``state_dict`` whose shape differs from the model's, or None."""
    for key, value in state_dict.items():
        if key in model_state and model_state[key].shape != value.shape:
            return (f'{key!r} has shape {tuple(value.shape)} in the checkpoint but '
                    f'{tuple(model_state[key].shape)} in the model')
    return None


def load_state_dict_into(model: nn.Module,
                         state_dict: Mapping[str, torch.Tensor],
                         source: str = 'state dict',
                         prefix: str | None = None) -> ConversionReport:
    """Convert ``state_dict`` from any layout and load it into a ConvNeXt ``model``.

    Raises ``ValueError`` naming the first mismatching key and both shapes when the checkpoint
    is of another arch, or listing the backbone weights it lacks. Per-stage norms ``norm{i}``
    missing from a classification checkpoint start fresh, as in the paper's code.
    """
    converted, report = convert_state_dict(state_dict, prefix=prefix)
    model_state = model.state_dict()
    mismatch = shape_mismatch(model_state, converted)
    if mismatch:
        arch = f'depths={getattr(model, "depths", "?")}, dims={getattr(model, "dims", "?")}'
        raise ValueError(f'{source} is for another ConvNeXt arch than this model ({arch}): '
                         f'{mismatch}')
    missing = [k for k in model_state if k not in converted]
    fresh_norms = [k for k in missing if re.match(r'norm\d\.', k)]
    missing = [k for k in missing if k not in fresh_norms]
    unexpected = [k for k in converted if k not in model_state]
    if missing:
        raise ValueError(f'{source} ({report.layout} layout) lacks {len(missing)} weights of '
                         f'this ConvNeXt, e.g. {missing[:4]}; it is for another arch or '
                         f'version (V1 has layer-scale gamma, V2 has grn)')
    model.load_state_dict(converted, strict=False)
    where = f', prefix {report.prefix!r}' if report.prefix else ''
    lines = [f'loaded {len(converted) - len(unexpected)} tensors from {source} '
             f'({report.layout} layout{where})']
    if fresh_norms:
        lines.append(f'newly initialised (absent from a classification checkpoint): '
                     f'{sorted({k.split(".")[0] for k in fresh_norms})}')
    if report.dropped_classifier:
        lines.append(f'dropped {len(report.dropped_classifier)} classifier tensors '
                     f'(head, final norm)')
    if unexpected:
        lines.append(f'unexpected, not loaded: {unexpected}')
    if report.ignored:
        lines.append(f'ignored {len(report.ignored)} tensors outside the backbone, '
                     f'e.g. {report.ignored[:3]}')
    print_log('; '.join(lines), logger='current')
    return report


def load_pretrained(model: nn.Module, checkpoint: str, prefix: str | None = None
                    ) -> ConversionReport:
    """Read ``checkpoint`` (path or URL, ``weights_only``), convert and load it into ``model``."""
    state_dict = unwrap_checkpoint(read_checkpoint(checkpoint))
    return load_state_dict_into(model, state_dict, source=f'checkpoint {checkpoint!r}',
                                prefix=prefix)


def convert_checkpoint_file(src: str, dst: str, layout: str = 'official',
                            prefix: str | None = None) -> ConversionReport:
    """Read a ConvNeXt checkpoint of any layout and write its backbone as
    ``{'state_dict': ...}`` in ``layout`` names, shapes and key prefix (default: this
    project's, the official ones), all at once or not at all."""
    state_dict, report = convert_state_dict(unwrap_checkpoint(read_checkpoint(src)),
                                            prefix=prefix)
    record = get_layout(layout)
    state_dict = {record.file_prefix + k: v
                  for k, v in export_state_dict(state_dict, layout).items()}
    buffer = io.BytesIO()
    torch.save({'state_dict': state_dict,
                'meta': dict(converted_from=os.path.basename(src), source_layout=report.layout,
                             layout=layout)}, buffer)
    atomic_write(buffer.getvalue(), dst)
    return report
