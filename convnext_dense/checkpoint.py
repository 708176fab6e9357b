"""Checkpoint layouts of ConvNeXt and their conversion to this project's (the official) names.

Every published ConvNeXt / ConvNeXt V2 checkpoint uses one of five key layouts:

* ``official``: facebookresearch ConvNeXt / ConvNeXt-V2 releases (``{'model': ...}``,
  ``downsample_layers.*``, ``stages.{i}.{j}.dwconv``, final ``norm`` and ``head``), and the
  paper's fine-tuned mmdet 2.x / mmseg 0.x models (the same names under ``backbone.``). This
  is the project's own layout.
* ``timm``: ``stem.*``, ``stages.{i}.downsample.*``, ``stages.{i}.blocks.{j}.conv_dw``,
  ``mlp.fc1``, ``mlp.grn.weight``.
* ``mmpretrain``: ``backbone.`` prefix, ``depthwise_conv``, ``pointwise_conv1``, ``grn.gamma``
  of shape (C,).
* ``hf``: Hugging Face transformers, ``convnext.embeddings.*``,
  ``convnext.encoder.stages.{i}.layers.{j}.dwconv``, ``layer_scale_parameter``,
  ``hidden_states_norms.stage{k}``.

:func:`convert_state_dict` is a pure ``state_dict -> state_dict`` function (timm's
``checkpoint_filter_fn`` habit); :func:`export_state_dict` goes the other way, and
:func:`load_pretrained` reads a file or URL safely, converts and loads it into a backbone.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from mmengine.logging import print_log
from torch import nn

from .engine.torch_load import read_checkpoint

LAYOUTS = ('official', 'timm', 'mmpretrain', 'hf')
_PLACEHOLDERS = {'i': r'(?P<i>\d+)', 'j': r'(?P<j>\d+)', 'k': r'(?P<k>\d+)',
                 'p': r'(?P<p>weight|bias)'}

# (project name, layout name) templates. GRN parameters are reshaped on the way.
_BLOCK_RULES = {
    'timm': [
        ('downsample_layers.0.{k}.{p}', 'stem.{k}.{p}'),
        ('downsample_layers.{i}.{k}.{p}', 'stages.{i}.downsample.{k}.{p}'),
        ('stages.{i}.{j}.dwconv.{p}', 'stages.{i}.blocks.{j}.conv_dw.{p}'),
        ('stages.{i}.{j}.norm.{p}', 'stages.{i}.blocks.{j}.norm.{p}'),
        ('stages.{i}.{j}.pwconv1.{p}', 'stages.{i}.blocks.{j}.mlp.fc1.{p}'),
        ('stages.{i}.{j}.pwconv2.{p}', 'stages.{i}.blocks.{j}.mlp.fc2.{p}'),
        ('stages.{i}.{j}.gamma', 'stages.{i}.blocks.{j}.gamma'),
        ('stages.{i}.{j}.grn.gamma', 'stages.{i}.blocks.{j}.mlp.grn.weight'),
        ('stages.{i}.{j}.grn.beta', 'stages.{i}.blocks.{j}.mlp.grn.bias'),
        # timm has no per-stage norms; ours are kept under their own names.
        ('norm{i}.{p}', 'norm{i}.{p}'),
    ],
    'mmpretrain': [
        ('downsample_layers.{i}.{k}.{p}', 'downsample_layers.{i}.{k}.{p}'),
        ('stages.{i}.{j}.dwconv.{p}', 'stages.{i}.{j}.depthwise_conv.{p}'),
        ('stages.{i}.{j}.norm.{p}', 'stages.{i}.{j}.norm.{p}'),
        ('stages.{i}.{j}.pwconv1.{p}', 'stages.{i}.{j}.pointwise_conv1.{p}'),
        ('stages.{i}.{j}.pwconv2.{p}', 'stages.{i}.{j}.pointwise_conv2.{p}'),
        ('stages.{i}.{j}.gamma', 'stages.{i}.{j}.gamma'),
        ('stages.{i}.{j}.grn.gamma', 'stages.{i}.{j}.grn.gamma'),
        ('stages.{i}.{j}.grn.beta', 'stages.{i}.{j}.grn.beta'),
        ('norm{i}.{p}', 'norm{i}.{p}'),
    ],
    'hf': [
        ('downsample_layers.0.0.{p}', 'embeddings.patch_embeddings.{p}'),
        ('downsample_layers.0.1.{p}', 'embeddings.layernorm.{p}'),
        ('downsample_layers.{i}.{k}.{p}', 'encoder.stages.{i}.downsampling_layer.{k}.{p}'),
        ('stages.{i}.{j}.dwconv.{p}', 'encoder.stages.{i}.layers.{j}.dwconv.{p}'),
        ('stages.{i}.{j}.norm.{p}', 'encoder.stages.{i}.layers.{j}.layernorm.{p}'),
        ('stages.{i}.{j}.pwconv1.{p}', 'encoder.stages.{i}.layers.{j}.pwconv1.{p}'),
        ('stages.{i}.{j}.pwconv2.{p}', 'encoder.stages.{i}.layers.{j}.pwconv2.{p}'),
        ('stages.{i}.{j}.gamma', 'encoder.stages.{i}.layers.{j}.layer_scale_parameter'),
        ('stages.{i}.{j}.grn.gamma', 'encoder.stages.{i}.layers.{j}.grn.weight'),
        ('stages.{i}.{j}.grn.beta', 'encoder.stages.{i}.layers.{j}.grn.bias'),
    ] + [(f'norm{k}.{{p}}', f'hidden_states_norms.stage{k + 1}.{{p}}') for k in range(4)],
    'official': [
        ('downsample_layers.{i}.{k}.{p}', 'downsample_layers.{i}.{k}.{p}'),
        ('stages.{i}.{j}.dwconv.{p}', 'stages.{i}.{j}.dwconv.{p}'),
        ('stages.{i}.{j}.norm.{p}', 'stages.{i}.{j}.norm.{p}'),
        ('stages.{i}.{j}.pwconv1.{p}', 'stages.{i}.{j}.pwconv1.{p}'),
        ('stages.{i}.{j}.pwconv2.{p}', 'stages.{i}.{j}.pwconv2.{p}'),
        ('stages.{i}.{j}.gamma', 'stages.{i}.{j}.gamma'),
        ('stages.{i}.{j}.grn.gamma', 'stages.{i}.{j}.grn.gamma'),
        ('stages.{i}.{j}.grn.beta', 'stages.{i}.{j}.grn.beta'),
        ('norm{i}.{p}', 'norm{i}.{p}'),
    ],
}
# Classification-only parameters: the head and the final norm after global pooling, which
# the paper's dense-prediction code does not use (its per-stage norms start fresh).
_CLASSIFIER_KEYS = {
    'official': r'(head\..*|norm\.(weight|bias))',
    'timm': r'(head\..*|norm_pre\..*)',
    'mmpretrain': r'(head\..*)',
    'hf': r'(classifier\..*|layernorm\.(weight|bias))',
}
# Keys that identify a layout, matched at the end of a (possibly prefixed) key.
_ANCHORS = {
    'timm': r'stem\.0\.weight',
    'hf': r'embeddings\.patch_embeddings\.weight',
    'mmpretrain': r'stages\.0\.0\.depthwise_conv\.weight',
    'official': r'stages\.0\.0\.dwconv\.weight',
}
# timm and mmpretrain store GRN parameters as (C,), the official code and HF as (1, 1, 1, C).
_FLAT_GRN = {'timm': True, 'mmpretrain': True, 'hf': False, 'official': False}
_WRAPPER_KEYS = ('state_dict', 'model', 'module', 'model_state', 'net')


def _template_regex(template: str) -> re.Pattern:
    pattern = re.escape(template)
    for name, group in _PLACEHOLDERS.items():
        pattern = pattern.replace(re.escape('{' + name + '}'), group)
    return re.compile(pattern + '$')


_COMPILED = {
    layout: [(ours, theirs, _template_regex(ours), _template_regex(theirs))
             for ours, theirs in rules]
    for layout, rules in _BLOCK_RULES.items()
}


@dataclass
class ConversionReport:
    """What :func:`convert_state_dict` did, for one readable log message."""
    layout: str
    prefix: str
    dropped_classifier: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # not backbone keys (neck, heads, ...)


def unwrap_checkpoint(checkpoint: Mapping) -> dict[str, torch.Tensor]:
    """Return the state dict inside a checkpoint (``{'model': ...}``, ``{'state_dict': ...}``)."""
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f'a checkpoint must be a dict, got {type(checkpoint).__name__}')
    for key in _WRAPPER_KEYS:
        inner = checkpoint.get(key)
        if isinstance(inner, Mapping) and any(torch.is_tensor(v) for v in inner.values()):
            return dict(inner)
    return {k: v for k, v in checkpoint.items() if torch.is_tensor(v)}


def detect_layout(state_dict: Mapping[str, torch.Tensor]) -> tuple[str, str]:
    """Return ``(layout, prefix)`` of a ConvNeXt state dict, e.g. ``('timm', '')`` or
    ``('official', 'backbone.')`` for a fine-tuned mmdet 2.x detector."""
    for layout, anchor in _ANCHORS.items():
        regex = re.compile(r'(?P<prefix>.*?)' + anchor + '$')
        for key in state_dict:
            match = regex.match(key)
            if match:
                return layout, match.group('prefix')
    sample = ', '.join(list(state_dict)[:5]) or '(empty)'
    raise ValueError(f'not a ConvNeXt state dict: no key of a known layout {LAYOUTS} was '
                     f'found (first keys: {sample})')


def _reshape_grn(name: str, value: torch.Tensor, flat: bool) -> torch.Tensor:
    if '.grn.' not in name:
        return value
    return value.reshape(-1) if flat else value.reshape(1, 1, 1, -1)


def _to_project_shape(ours: str, value: torch.Tensor) -> torch.Tensor:
    if '.grn.' in ours:
        return value.reshape(1, 1, 1, -1)
    if ours.endswith(('pwconv1.weight', 'pwconv2.weight')) and value.ndim == 4:
        # timm's small V1/V2 models (conv_mlp=True) store the MLP as 1x1 convolutions.
        return value.flatten(1)
    return value


def convert_state_dict(state_dict: Mapping[str, torch.Tensor],
                       layout: str | None = None,
                       prefix: str | None = None) -> tuple[dict[str, torch.Tensor],
                                                           ConversionReport]:
    """Convert a ConvNeXt state dict of any published layout to this project's names.

    Args:
        state_dict: Tensors by name, already unwrapped (see :func:`unwrap_checkpoint`).
        layout: One of :data:`LAYOUTS`; detected when None.
        prefix: Prefix of the backbone's keys (``'backbone.'``, ``'convnext.'``); detected
            when None. Keys outside it (a detector's neck and heads) are ignored.

    Returns:
        The converted state dict and a :class:`ConversionReport`.
    """
    detected_layout, detected_prefix = detect_layout(state_dict)
    layout = layout or detected_layout
    if layout not in LAYOUTS:
        raise ValueError(f'layout={layout!r} is not supported; use one of {LAYOUTS}')
    prefix = detected_prefix if prefix is None else prefix
    report = ConversionReport(layout=layout, prefix=prefix)
    classifier = re.compile(_CLASSIFIER_KEYS[layout] + '$')
    converted: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            report.ignored.append(key)
            continue
        name = key[len(prefix):]
        if classifier.match(name):
            report.dropped_classifier.append(key)
            continue
        for ours, _, _, theirs_regex in _COMPILED[layout]:
            match = theirs_regex.match(name)
            if match:
                target = ours.format(**match.groupdict())
                converted[target] = _to_project_shape(target, value)
                break
        else:
            report.ignored.append(key)
    return converted, report


def export_state_dict(state_dict: Mapping[str, torch.Tensor],
                      layout: str) -> dict[str, torch.Tensor]:
    """Write this project's state dict in another layout's names (the inverse of
    :func:`convert_state_dict` on the backbone's keys)."""
    if layout not in LAYOUTS:
        raise ValueError(f'layout={layout!r} is not supported; use one of {LAYOUTS}')
    exported = {}
    for name, value in state_dict.items():
        for _, theirs, ours_regex, _ in _COMPILED[layout]:
            match = ours_regex.match(name)
            if match:
                exported[theirs.format(**match.groupdict())] = _reshape_grn(
                    name, value, flat=_FLAT_GRN[layout])
                break
        else:
            raise KeyError(f'{name!r} has no counterpart in the {layout} layout')
    return exported


def _shape_mismatch(model_state: Mapping[str, torch.Tensor],
                    state_dict: Mapping[str, torch.Tensor]) -> str | None:
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
    mismatch = _shape_mismatch(model_state, converted)
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
    ``{'state_dict': ...}`` in ``layout`` names (default: this project's, the official ones).

    The file is written next to ``dst`` first and renamed, so an interrupted run leaves no
    half-written ``dst``.
    """
    state_dict, report = convert_state_dict(unwrap_checkpoint(read_checkpoint(src)),
                                            prefix=prefix)
    if layout != 'official':
        state_dict = export_state_dict(state_dict, layout)
    partial = f'{dst}.partial'
    torch.save({'state_dict': state_dict,
                'meta': dict(converted_from=os.path.basename(src), source_layout=report.layout,
                             layout=layout)}, partial)
    os.replace(partial, dst)
    return report


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
    has_our_backbone = any(re.match(r'backbone\.' + _ANCHORS['official'], k)
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
    mismatch = _shape_mismatch(model_state, state)
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
