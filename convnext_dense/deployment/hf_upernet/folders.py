"""Folders of transformers' UperNet-ConvNeXt written from, and read into, this project's
checkpoints: :func:`export_hf` (config + checkpoint -> ``save_pretrained`` folder) and
:func:`import_hf` (folder -> checkpoint, checked against a config)."""
from __future__ import annotations

import io
import os
from collections.abc import Mapping
from typing import Any

import torch
from mmengine.config import Config

from ...checkpoint import fit_model_state_dict, read_weights_folder, unwrap_checkpoint
from ...engine import build_model
from ...fileio import atomic_write, atomic_write_files, read_checkpoint, read_json
from .hf_config import (
    HF_BACKBONE_TYPES,
    HF_STAGES,
    check_against_hf_model,
    check_hf_compatible,
    compare_hf_configs,
    dataset_classes,
    hf_config_for,
    image_processor_for,
    import_transformers,
    load_upernet_config,
)
from .renaming import hf_to_upernet_state_dict, upernet_to_hf_state_dict

WEIGHTS_NAME = 'model.safetensors'


def _read_whole_model(checkpoint: str) -> tuple[dict[str, torch.Tensor], dict]:
    raw = read_checkpoint(checkpoint)
    state = unwrap_checkpoint(raw)
    if not state:
        keys = list(raw)[:6] if isinstance(raw, Mapping) else type(raw).__name__
        raise ValueError(f'checkpoint {checkpoint!r} has no state_dict (no tensors; top-level '
                         f'keys: {keys})')
    # DataParallel / DDP checkpoints, as mmengine's load_checkpoint strips
    state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
    meta = raw.get('meta') if isinstance(raw, Mapping) else None
    return state, dict(meta) if isinstance(meta, Mapping) else {}


def export_hf(config: str | Config, checkpoint: str, out_dir: str) -> dict[str, Any]:
    """Write an mmseg UperNet-ConvNeXt (``config`` + whole-model ``checkpoint``) as a folder
    that ``UperNetForSemanticSegmentation.from_pretrained(out_dir)`` loads: ``config.json``,
    ``model.safetensors`` and, for an RGB model, ``preprocessor_config.json``.

    The class names come from the checkpoint's ``meta.dataset_meta.classes`` (what mmengine's
    Runner saves), else from the config's dataset.

    Returns:
        ``dict(files=[...], classes=(...), backbone='convnext'|'convnextv2', notes=[...])``.
    """
    from safetensors.torch import save_file
    if not checkpoint.startswith(('http://', 'https://')) and not os.path.isfile(checkpoint):
        # before building the model, which takes a while for the large sizes
        raise FileNotFoundError(f'checkpoint file {checkpoint!r} does not exist')
    source = config if isinstance(config, str) else 'config'
    cfg = load_upernet_config(config, source)
    model = build_model(cfg).eval()
    check_hf_compatible(model, source)
    state, meta = _read_whole_model(checkpoint)
    model_state = model.state_dict()
    state, _ = fit_model_state_dict(model_state, state, source=f'checkpoint {checkpoint!r}')
    state = {k: state[k] for k in model_state}  # leaves out what the model does not have
    classes = (meta.get('dataset_meta') or {}).get('classes')
    classes_from = f'checkpoint {checkpoint!r} meta.dataset_meta.classes'
    if not classes:
        classes, classes_from = dataset_classes(cfg), f'{source} dataset metainfo'
    num_labels = model.decode_head.conv_seg.out_channels
    if not classes:
        raise ValueError(f'no class names: checkpoint {checkpoint!r} has no '
                         f'meta.dataset_meta.classes and {source} no dataset metainfo classes')
    if len(classes) != num_labels:
        raise ValueError(f'{classes_from} has {len(classes)} classes but the model predicts '
                         f'{num_labels} (model.decode_head.num_classes)')
    hf_config = hf_config_for(model, classes)
    hf_state = {k: v.contiguous() for k, v in upernet_to_hf_state_dict(state).items()}
    check_against_hf_model(hf_config, hf_state)
    processor = image_processor_for(model)
    notes = []
    if processor is None:
        notes.append('no preprocessor_config.json: the model reads BGR or unnormalised input '
                     '(model.data_preprocessor), which no transformers image processor gives')
    files = {
        'config.json': lambda path: hf_config.to_json_file(path),
        # transformers refuses a safetensors file without its format tag
        WEIGHTS_NAME: lambda path: save_file(hf_state, path, metadata={'format': 'pt'}),
    }
    if processor is not None:
        files['preprocessor_config.json'] = processor.to_json_file
    written = atomic_write_files(out_dir, files)
    return dict(files=written, classes=tuple(classes),
                backbone=hf_config.backbone_config.model_type, notes=notes)


def read_hf_folder(hf_dir: str):
    """``(UperNetConfig, state dict)`` of a transformers UperNet-ConvNeXt folder
    (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``, or their sharded
    ``*.index.json`` form), read without running any pickled code
    (:func:`convnext_dense.checkpoint.read_weights_folder`)."""
    transformers = import_transformers()
    config_path = os.path.join(hf_dir, 'config.json')
    raw = read_json(config_path)
    if raw.get('model_type') != 'upernet':
        raise ValueError(f'{config_path}: model_type={raw.get("model_type")!r}; expected '
                         "'upernet' (UperNetForSemanticSegmentation)")
    backbone_type = (raw.get('backbone_config') or {}).get('model_type')
    if backbone_type not in HF_BACKBONE_TYPES.values():
        raise ValueError(f'{config_path}: backbone_config.model_type={backbone_type!r}; expected '
                         f'one of {tuple(HF_BACKBONE_TYPES.values())} (ConvNeXt V1 / V2)')
    config = transformers.UperNetConfig.from_pretrained(hf_dir)
    backbone_config = config.backbone_config
    if list(backbone_config.out_features) != HF_STAGES:
        raise ValueError(f'{config_path}: backbone_config.out_features='
                         f'{backbone_config.out_features}; UperNet reads {HF_STAGES}')
    if backbone_config.hidden_act != 'gelu':
        raise ValueError(f'{config_path}: backbone_config.hidden_act='
                         f'{backbone_config.hidden_act!r}; ConvNeXt uses exact GELU (\'gelu\')')
    return config, read_weights_folder(hf_dir)


def import_hf(hf_dir: str, out: str, config: str | Config | None = None) -> dict[str, Any]:
    """Write a transformers UperNet-ConvNeXt folder as an mmengine checkpoint
    (``{'state_dict': ..., 'meta': {'dataset_meta': {'classes': ...}}}``) that ``tools/test.py``
    evaluates with an mmseg config of the same model.

    Args:
        hf_dir: Folder with ``config.json`` and the weights (``save_pretrained``'s output).
        out: The checkpoint to write (all at once or not at all).
        config: The mmseg config it will be evaluated with; when given, its model is built and
            the folder is checked against it (every field of ``config.json`` that changes the
            computation, then every tensor and shape), naming the first difference.

    Returns:
        ``dict(classes=(...), backbone='convnext'|'convnextv2', notes=[...])``.
    """
    hf_config, hf_state = read_hf_folder(hf_dir)
    config_path = os.path.join(hf_dir, 'config.json')
    check_against_hf_model(hf_config, hf_state, f'the weights in {hf_dir}')
    state = hf_to_upernet_state_dict(hf_state)
    id2label = {int(k): v for k, v in hf_config.id2label.items()}
    if sorted(id2label) != list(range(hf_config.num_labels)):
        raise ValueError(f'{config_path}: id2label has the ids {sorted(id2label)[:8]}; expected '
                         f'0..{hf_config.num_labels - 1}')
    classes = tuple(id2label[i] for i in range(len(id2label)))
    notes: list[str] = []
    if config is not None:
        source = config if isinstance(config, str) else 'config'
        cfg = load_upernet_config(config, source)
        model = build_model(cfg).eval()
        check_hf_compatible(model, source)
        compare_hf_configs(hf_config, hf_config_for(model, classes), config_path, source)
        _, notes = fit_model_state_dict(model.state_dict(), state, source=hf_dir)
        config_classes = dataset_classes(cfg)
        if config_classes and tuple(config_classes) != classes:
            notes.append(f'the class names of {config_path} (id2label, kept in the checkpoint\'s '
                         f'meta) differ from the dataset\'s of {source}: {classes[:3]}... vs '
                         f'{tuple(config_classes)[:3]}...')
    buffer = io.BytesIO()
    torch.save({'state_dict': state,
                'meta': {'dataset_meta': {'classes': classes},
                         'converted_from': os.path.basename(os.path.normpath(hf_dir)),
                         'source_format': 'transformers UperNetForSemanticSegmentation'}},
               buffer)
    atomic_write(buffer.getvalue(), out)
    return dict(classes=classes, backbone=hf_config.backbone_config.model_type, notes=notes)
