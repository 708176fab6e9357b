"""Reading a ConvNeXt checkpoint of any layout into a backbone, and converting files between
layouts.

:func:`load_pretrained` is what ``init_cfg=dict(type='Pretrained', checkpoint=...)`` runs: it
reads the file (or a Hugging Face ``save_pretrained`` folder) with ``weights_only``
(:mod:`convnext_dense.fileio.torch_load`), detects the layout, converts and loads it, naming
the file and keys when it does not fit, and logs where every key of the file went and, for
DINOv3 and EUPE weights, their licence (:mod:`.families`).
"""
from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping

import torch
from mmengine.logging import print_log
from torch import nn

from ..fileio import atomic_write, read_checkpoint, read_json
from .families import licence_notice, weight_families
from .layouts import (
    ConversionReport,
    convert_state_dict,
    export_state_dict,
    get_layout,
    unwrap_checkpoint,
)

# What transformers' save_pretrained writes: one file, or shards listed in an index.
HF_WEIGHT_FILES = ('model.safetensors', 'pytorch_model.bin')
HF_WEIGHT_INDEXES = ('model.safetensors.index.json', 'pytorch_model.bin.index.json')


def read_weights_folder(folder: str) -> dict[str, torch.Tensor]:
    """The tensors of a Hugging Face ``save_pretrained`` folder: ``model.safetensors`` or
    ``pytorch_model.bin``, or the shards their ``*.index.json`` lists, read without running
    any pickled code."""
    for index_name in HF_WEIGHT_INDEXES:
        index_path = os.path.join(folder, index_name)
        if os.path.isfile(index_path):
            shards = sorted(set(read_json(index_path).get('weight_map', {}).values()))
            if not shards:
                raise ValueError(f'{index_path} has an empty weight_map')
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(unwrap_checkpoint(read_checkpoint(os.path.join(folder, shard))))
            return state
    for name in HF_WEIGHT_FILES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return unwrap_checkpoint(read_checkpoint(path))
    raise FileNotFoundError(f'{folder} has no weights: none of '
                            f'{HF_WEIGHT_FILES + HF_WEIGHT_INDEXES} is in it')


def read_state_dict(checkpoint: str) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, URL or Hugging Face folder (``weights_only``)."""
    if os.path.isdir(checkpoint):
        return read_weights_folder(checkpoint)
    return unwrap_checkpoint(read_checkpoint(checkpoint))


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
                         prefix: str | None = None,
                         final_norm: str = 'auto') -> ConversionReport:
    """Convert ``state_dict`` from any layout and load it into a ConvNeXt ``model``.

    Raises ``ValueError`` naming the first mismatching key and both shapes when the checkpoint
    is of another arch, or listing the backbone weights it lacks. Per-stage norms ``norm{i}``
    missing from a classification checkpoint start fresh, as in the paper's code. The file's
    final norm becomes the stage-4 output norm where it normalises patch tokens (DINOv3,
    EUPE), see :func:`~convnext_dense.checkpoint.convert_state_dict` and ``final_norm``.
    """
    converted, report = convert_state_dict(state_dict, prefix=prefix, final_norm=final_norm)
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
    print_log('; '.join(_report_lines(report, len(converted) - len(unexpected), source,
                                      fresh_norms, unexpected)), logger='current')
    notice = licence_notice(weight_families(report.layout, state_dict, source,
                                            report.final_norm))
    if notice:
        print_log(notice, logger='current')
    return report


def _report_lines(report: ConversionReport, loaded: int, source: str, fresh_norms: list[str],
                  unexpected: list[str]) -> list[str]:
    """Where every key of the file went, one clause each."""
    where = f', prefix {report.prefix!r}' if report.prefix else ''
    lines = [f'loaded {loaded} tensors from {source} ({report.layout} layout{where})']
    if report.final_norm == 'stage4':
        lines.append(f'final norm {report.final_norm_keys} normalises the patch tokens: loaded '
                     f'as the stage-4 output norm norm3')
    if fresh_norms:
        lines.append(f'newly initialised (absent from a classification checkpoint): '
                     f'{sorted({k.split(".")[0] for k in fresh_norms})}')
    if report.dropped_classifier:
        what = 'head, final norm after pooling' if report.final_norm == 'classifier' else 'head'
        lines.append(f'dropped {len(report.dropped_classifier)} classifier tensors ({what})')
    for reason, keys in report.dropped.items():
        lines.append(f'dropped {len(keys)} tensors: {reason}, e.g. {keys[:3]}')
    if unexpected:
        lines.append(f'unexpected, not loaded: {unexpected}')
    if report.ignored:
        lines.append(f'ignored {len(report.ignored)} tensors outside the backbone, '
                     f'e.g. {report.ignored[:3]}')
    return lines


def load_pretrained(model: nn.Module, checkpoint: str, prefix: str | None = None,
                    final_norm: str = 'auto') -> ConversionReport:
    """Read ``checkpoint`` (path, URL or Hugging Face folder, ``weights_only``), convert and load
    it into ``model``."""
    state_dict = read_state_dict(checkpoint)
    return load_state_dict_into(model, state_dict, source=f'checkpoint {checkpoint!r}',
                                prefix=prefix, final_norm=final_norm)


def convert_checkpoint_file(src: str, dst: str, layout: str = 'official',
                            prefix: str | None = None,
                            final_norm: str = 'auto') -> ConversionReport:
    """Read a ConvNeXt checkpoint of any layout (a file, URL or Hugging Face folder) and write
    its backbone as ``{'state_dict': ...}`` in ``layout`` names, shapes and key prefix (default:
    this project's, the official ones), all at once or not at all."""
    source = read_state_dict(src)
    state_dict, report = convert_state_dict(source, prefix=prefix, final_norm=final_norm)
    notice = licence_notice(weight_families(report.layout, source, src, report.final_norm))
    if notice:
        print_log(notice, logger='current')
    record = get_layout(layout)
    state_dict = {record.file_prefix + k: v
                  for k, v in export_state_dict(state_dict, layout).items()}
    buffer = io.BytesIO()
    torch.save({'state_dict': state_dict,
                'meta': dict(converted_from=os.path.basename(os.path.normpath(src)),
                             source_layout=report.layout, layout=layout)}, buffer)
    atomic_write(buffer.getvalue(), dst)
    return report
