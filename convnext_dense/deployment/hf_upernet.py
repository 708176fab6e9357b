"""UperNet with a ConvNeXt backbone to and from Hugging Face transformers.

transformers' ``UperNetForSemanticSegmentation`` over ``ConvNextBackbone`` (V1) or
``ConvNextV2Backbone`` (V2) is the model of mmseg's ``EncoderDecoder`` with this project's
``ConvNeXt``, mmseg's ``UPerHead`` (Xiao et al., "Unified Perceptual Parsing for Scene
Understanding", ECCV 2018; or this project's ``ChunkedLossUPerHead``, the same inference) and an
``FCNHead`` auxiliary head on stage 2, the ADE20K setup of the
ConvNeXt papers (Liu et al. 2022, Appendix A.4; Woo et al. 2023, Appendix A.4); the hub's
``openmmlab/upernet-convnext-*`` models are the paper's mmseg 0.x checkpoints renamed.
transformers fixes what mmseg leaves to the config (LayerNorm eps 1e-6, BatchNorm eps 1e-5,
ReLU, ``align_corners=False``, the auxiliary head on the third feature map with 3x3
convolutions), so :func:`check_hf_compatible` refuses a model that transformers would compute
differently, naming the config key.

This file owns:

* :func:`upernet_to_hf_state_dict` / :func:`hf_to_upernet_state_dict`: the pure renamings. The
  backbone goes through the ``hf`` layout of :mod:`convnext_dense.checkpoint.layouts`; in the
  heads mmcv's ``ConvModule.bn`` is transformers' ``batch_norm`` and ``conv_seg`` its
  ``classifier``, everything else keeps its name.
* :func:`hf_config_for`: the ``UperNetConfig`` of a built mmseg model;
  :func:`image_processor_for`: the image processor of its data preprocessor.
* :func:`export_hf` (``tools/deployment/export_hf.py``): config + checkpoint -> a folder that
  ``UperNetForSemanticSegmentation.from_pretrained`` loads; :func:`import_hf`
  (``tools/deployment/import_hf.py``): such a folder -> a checkpoint that ``tools/test.py``
  evaluates, checked against a config when one is given.

transformers is imported only by the functions that need it.
"""
from __future__ import annotations

import copy
import io
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from mmengine.config import Config
from torch import nn

from ..checkpoint.layouts import convert_state_dict, export_state_dict, unwrap_checkpoint
from ..checkpoint.model_fit import fit_model_state_dict
from ..engine.atomic_io import atomic_write
from ..engine.torch_load import read_checkpoint
from ..models.convnext import NUM_STAGES, ConvNeXt
from ..models.decode_heads import CHUNKED_LOSS_HEADS

HEAD_PREFIXES = ('decode_head.', 'auxiliary_head.')
# Module names in the heads, ours (mmseg / mmcv ConvModule) -> transformers'.
HEAD_MODULE_NAMES = {'conv_seg': 'classifier', 'bn': 'batch_norm'}
HF_BACKBONE_TYPES = {'v1': 'convnext', 'v2': 'convnextv2'}
HF_STAGES = [f'stage{i + 1}' for i in range(NUM_STAGES)]
# What transformers hard-codes: every ConvNeXt LayerNorm (ConvNextLayerNorm(eps=1e-6)),
# nn.BatchNorm2d's default eps, and UperNetFCNHead's stage, kernel and dilation.
HF_LAYER_NORM_EPS = 1e-6
HF_BATCH_NORM_EPS = 1e-5
HF_AUX_IN_INDEX = 2
HF_AUX_KERNEL_SIZE = 3
WEIGHTS_NAME = 'model.safetensors'
WEIGHT_FILES = ('model.safetensors', 'pytorch_model.bin')
WEIGHT_INDEXES = ('model.safetensors.index.json', 'pytorch_model.bin.index.json')


def _import_transformers():
    try:
        import transformers
    except ImportError as error:  # not a requirement of the package: the tests extra has it
        raise ImportError('the Hugging Face export and import need transformers 4.x '
                          '(pip install "transformers>=4.40,<5")') from error
    return transformers


# -- state dicts -----------------------------------------------------------------------------
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


# -- what transformers can compute -----------------------------------------------------------
def _head_type(head_cfg: Any) -> Any:
    """The mmseg head a head config builds, by name: this project's chunked-loss heads keep
    mmseg's forward and inference (``CHUNKED_LOSS_HEADS``)."""
    head_type = head_cfg.get('type') if isinstance(head_cfg, Mapping) else None
    if isinstance(head_type, str):
        head_type = head_type.split('.')[-1]  # a scope prefix such as 'mmseg.'
        return CHUNKED_LOSS_HEADS.get(head_type, head_type)
    return head_type


def check_upernet_config(cfg: Config, source: str) -> None:
    """Refuse a config whose model is not mmseg's UperNet over this project's ConvNeXt, before
    anything is built; messages name ``source`` and the key."""
    model = cfg.get('model')
    if not isinstance(model, Mapping):
        raise ValueError(f'{source}: no model dict')
    found = {'model.type': model.get('type'),
             'model.backbone.type': (model.get('backbone') or {}).get('type'),
             'model.decode_head.type': model.get('decode_head')}
    expected = {'model.type': ('EncoderDecoder', 'mmseg.EncoderDecoder'),
                'model.backbone.type': ('ConvNeXt', 'convnext_dense.ConvNeXt'),
                'model.decode_head.type': ('UPerHead', )}
    found['model.decode_head.type'] = _head_type(found['model.decode_head.type'])
    for key, allowed in expected.items():
        if found[key] not in allowed:
            raise ValueError(f'{source}: {key}={found[key]!r}; a transformers UperNet-ConvNeXt '
                             f'is {key}={allowed[0]!r}')
    if model.get('neck') is not None:
        raise ValueError(f'{source}: model.neck={model.neck!r}; transformers\' UperNet feeds the '
                         'backbone to the heads directly')
    aux = model.get('auxiliary_head')
    if aux is not None and _head_type(aux) != 'FCNHead':
        raise ValueError(f'{source}: model.auxiliary_head must be one FCNHead or None for '
                         f'transformers\' UperNet, got {aux!r}')


def _check_conv_modules(head: nn.Module, key: str, source: str) -> None:
    from mmcv.cnn import ConvModule
    for name, module in head.named_modules():
        if not isinstance(module, ConvModule):
            continue
        where = f'{source}: {key}.{name}'
        if type(module.conv) is not nn.Conv2d or module.conv.bias is not None:
            raise ValueError(f'{where} is {module.conv}; transformers\' UperNet has bias-free '
                             f'nn.Conv2d there (conv_cfg=None with a norm_cfg)')
        norm = module.norm if module.with_norm else None
        if not isinstance(norm, nn.modules.batchnorm._BatchNorm) or not norm.affine or \
                not norm.track_running_stats or norm.eps != HF_BATCH_NORM_EPS:
            raise ValueError(f'{where} has the norm {norm}; transformers\' UperNet has '
                             f'BatchNorm2d(eps={HF_BATCH_NORM_EPS}) there '
                             f"(norm_cfg=dict(type='BN') or 'SyncBN')")
        if not (module.with_activation and isinstance(module.activate, nn.ReLU)) or \
                module.order != ('conv', 'norm', 'act'):
            raise ValueError(f'{where}: transformers\' UperNet runs conv -> BatchNorm -> ReLU '
                             "there (act_cfg=dict(type='ReLU'), the default order)")


def check_hf_compatible(model: nn.Module, source: str) -> None:
    """Raise ``ValueError`` naming the config key where transformers' UperNet-ConvNeXt would
    compute something else than the mmseg ``model`` built from ``source``."""
    backbone = model.backbone
    if not isinstance(backbone, ConvNeXt):
        raise ValueError(f'{source}: model.backbone is {type(backbone).__name__}, not ConvNeXt')
    if backbone.out_indices != tuple(range(NUM_STAGES)):
        raise ValueError(f'{source}: model.backbone.out_indices={backbone.out_indices}; '
                         f'transformers\' UperNet takes all {NUM_STAGES} stages')
    if backbone.norm_eps != HF_LAYER_NORM_EPS:
        raise ValueError(f'{source}: model.backbone.norm_cfg eps={backbone.norm_eps}; '
                         f'transformers\' ConvNeXt LayerNorms use eps={HF_LAYER_NORM_EPS}')
    has_layer_scale = backbone.stages[0][0].gamma is not None
    if backbone.use_grn and has_layer_scale:
        raise ValueError(f'{source}: model.backbone has both GRN (use_grn=True) and layer scale '
                         f'(layer_scale_init_value={backbone.layer_scale_init_value}); '
                         'transformers has ConvNeXt V1 (layer scale) and V2 (GRN), not both')
    from mmseg.models.decode_heads import FCNHead, UPerHead
    head = model.decode_head
    if not isinstance(head, UPerHead):
        raise ValueError(f'{source}: model.decode_head is {type(head).__name__}, not UPerHead')
    if model.with_neck:
        raise ValueError(f'{source}: model.neck is set; transformers\' UperNet has none')
    if list(head.in_index) != list(range(NUM_STAGES)):
        raise ValueError(f'{source}: model.decode_head.in_index={head.in_index}; transformers\' '
                         f'UperNet reads the stages {list(range(NUM_STAGES))} in order')
    if head.align_corners:
        raise ValueError(f'{source}: model.decode_head.align_corners=True; transformers\' '
                         'UperNet resizes with align_corners=False')
    _check_conv_modules(head, 'model.decode_head', source)
    if not model.with_auxiliary_head:
        return
    aux = model.auxiliary_head
    if not isinstance(aux, FCNHead):
        raise ValueError(f'{source}: model.auxiliary_head is {type(aux).__name__}; '
                         "transformers' UperNet has one FCNHead")
    if aux.in_index != HF_AUX_IN_INDEX or aux.input_transform is not None:
        raise ValueError(f'{source}: model.auxiliary_head.in_index={aux.in_index}; '
                         f'transformers\' auxiliary head reads stage {HF_AUX_IN_INDEX}')
    if aux.align_corners:
        raise ValueError(f'{source}: model.auxiliary_head.align_corners=True; transformers\' '
                         'UperNet resizes with align_corners=False')
    for conv in aux.modules():
        if isinstance(conv, nn.Conv2d) and conv is not aux.conv_seg and (
                conv.kernel_size != (HF_AUX_KERNEL_SIZE, ) * 2 or conv.dilation != (1, 1)):
            raise ValueError(f'{source}: model.auxiliary_head has kernel_size='
                             f'{conv.kernel_size[0]}, dilation={conv.dilation[0]}; '
                             f'transformers\' auxiliary head uses {HF_AUX_KERNEL_SIZE} and 1')
    _check_conv_modules(aux, 'model.auxiliary_head', source)


def hf_config_for(model: nn.Module, classes: Sequence[str]):
    """The ``UperNetConfig`` of an mmseg UperNet-ConvNeXt ``model`` (checked with
    :func:`check_hf_compatible`), labelled with ``classes``."""
    transformers = _import_transformers()
    backbone = model.backbone
    head = model.decode_head
    common = dict(num_channels=backbone.in_channels, patch_size=backbone.stem_patch_size,
                  num_stages=NUM_STAGES, hidden_sizes=list(backbone.dims),
                  depths=list(backbone.depths), hidden_act='gelu',
                  layer_norm_eps=backbone.norm_eps, drop_path_rate=0.0, out_features=HF_STAGES)
    if backbone.use_grn:
        backbone_config = transformers.ConvNextV2Config(**common)
    else:
        # the value only initialises; 0 builds the blocks without layer scale
        layer_scale = backbone.layer_scale_init_value if backbone.stages[0][0].gamma is not \
            None else 0.0
        backbone_config = transformers.ConvNextConfig(layer_scale_init_value=layer_scale,
                                                      **common)
    aux = model.auxiliary_head if model.with_auxiliary_head else None
    aux_settings = {}
    if aux is not None:
        aux_settings = dict(auxiliary_in_channels=aux.in_channels,
                            auxiliary_channels=aux.channels,
                            auxiliary_num_convs=aux.num_convs,
                            auxiliary_concat_input=aux.concat_input)
        loss_weight = getattr(aux.loss_decode, 'loss_weight', None)  # one loss, not a list
        if loss_weight is not None:
            aux_settings['auxiliary_loss_weight'] = float(loss_weight)
    id2label = {i: str(name) for i, name in enumerate(classes)}
    config = transformers.UperNetConfig(
        backbone_config=backbone_config,
        hidden_size=head.channels,
        pool_scales=[int(s) for s in head.psp_modules.pool_scales],
        use_auxiliary_head=aux is not None,
        loss_ignore_index=head.ignore_index,
        id2label=id2label,
        label2id={name: i for i, name in id2label.items()},
        **aux_settings)
    config.architectures = ['UperNetForSemanticSegmentation']
    return config


def image_processor_for(model: nn.Module):
    """The transformers image processor doing what ``model.data_preprocessor`` does to an RGB
    image (scale by the mean and std; no resize: the test pipeline's resize is the dataset
    config's), or None when the model reads BGR (no transformers processor converts)."""
    preprocessor = model.data_preprocessor
    # mmseg 1.2.2's SegDataPreProcessor sets `channel_conversion`; onedl-mmsegmentation's
    # inherits mmengine's ImgDataPreprocessor, which sets `_channel_conversion`.
    converts = getattr(preprocessor, 'channel_conversion',
                       getattr(preprocessor, '_channel_conversion', False))
    if not getattr(preprocessor, '_enable_normalize', False) or not converts:
        return None
    transformers = _import_transformers()
    # mmseg normalises 0..255 values; transformers rescales to 0..1 first.
    return transformers.SegformerImageProcessor(
        do_resize=False, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=(preprocessor.mean.flatten().double() / 255).tolist(),
        image_std=(preprocessor.std.flatten().double() / 255).tolist(), do_reduce_labels=False)


# -- configs, models and checkpoints ---------------------------------------------------------
def load_upernet_config(config: str | Config, source: str | None = None) -> Config:
    """Read a config (path or Config) and check that it is a UperNet-ConvNeXt one."""
    if isinstance(config, Config):
        cfg, source = config, source or 'config'
    else:
        from ..engine.run_config import load_config
        cfg, source = load_config(config), source or config
    check_upernet_config(cfg, source)
    return cfg


def build_upernet(cfg: Config) -> nn.Module:
    """The mmseg model of ``cfg`` in eval mode, with its initialisation (a download of pretrained
    backbone weights) left out: every weight comes from a checkpoint."""
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules()
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.pretrained = None
    model_cfg.backbone.init_cfg = None
    return MODELS.build(model_cfg).eval()


def dataset_classes(cfg: Config) -> tuple[str, ...] | None:
    """The class names of the config's test (or val, or train) dataset: its ``metainfo``, else
    the dataset class's ``METAINFO``."""
    from mmseg.registry import DATASETS
    for loader in ('test_dataloader', 'val_dataloader', 'train_dataloader'):
        dataset = (cfg.get(loader) or {}).get('dataset')
        while isinstance(dataset, Mapping):  # dataset wrappers (RepeatDataset, ...)
            classes = (dataset.get('metainfo') or {}).get('classes')
            if classes:
                return tuple(classes)
            dataset_class = DATASETS.get(dataset.get('type')) if dataset.get('type') else None
            classes = getattr(dataset_class, 'METAINFO', {}).get('classes')
            if classes:
                return tuple(classes)
            dataset = dataset.get('dataset')
    return None


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


def _check_against_hf_model(config, hf_state: Mapping[str, torch.Tensor],
                            source: str = 'the converted weights') -> None:
    """Every tensor transformers' model of ``config`` has, in its shape, and no other: built on
    the meta device, so nothing is allocated."""
    from transformers import UperNetForSemanticSegmentation
    with torch.device('meta'):
        expected = UperNetForSemanticSegmentation(config).state_dict()
    missing = [k for k in expected if k not in hf_state]
    unexpected = [k for k in hf_state if k not in expected]
    wrong = [f'{k}: {tuple(hf_state[k].shape)} vs {tuple(v.shape)}' for k, v in expected.items()
             if k in hf_state and hf_state[k].shape != v.shape]
    if missing or unexpected or wrong:
        raise ValueError(f'{source} do not fit transformers\' UperNet of its config: missing '
                         f'{missing[:4]}, unexpected {unexpected[:4]}, shapes {wrong[:4]}')


def _write_folder(out_dir: str, files: Mapping[str, Any]) -> list[str]:
    """Write ``{name: writer(path)}`` into a scratch folder beside ``out_dir``, then move each
    file in: a failure leaves no half-written file in ``out_dir``."""
    out_dir = os.path.abspath(out_dir)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    scratch = tempfile.mkdtemp(dir=parent, prefix=f'.{os.path.basename(out_dir)}.')
    try:
        for name, write in files.items():
            write(os.path.join(scratch, name))
        os.makedirs(out_dir, exist_ok=True)
        umask = os.umask(0)
        os.umask(umask)
        written = []
        for name in sorted(os.listdir(scratch)):
            # safetensors writes owner-only files; a model folder is meant to be shared
            os.chmod(os.path.join(scratch, name), 0o666 & ~umask)
            os.replace(os.path.join(scratch, name), os.path.join(out_dir, name))
            written.append(os.path.join(out_dir, name))
        return written
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


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
    model = build_upernet(cfg)
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
    _check_against_hf_model(hf_config, hf_state)
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
    written = _write_folder(out_dir, files)
    return dict(files=written, classes=tuple(classes),
                backbone=hf_config.backbone_config.model_type, notes=notes)


def _read_json(path: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{path} does not exist')
    with open(path, encoding='utf-8') as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f'{path} is not JSON: {error}') from None


def read_hf_folder(hf_dir: str):
    """``(UperNetConfig, state dict)`` of a transformers UperNet-ConvNeXt folder
    (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``, or their sharded
    ``*.index.json`` form), read without running any pickled code."""
    transformers = _import_transformers()
    config_path = os.path.join(hf_dir, 'config.json')
    raw = _read_json(config_path)
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
    state: dict[str, torch.Tensor] = {}
    for index_name in WEIGHT_INDEXES:
        index_path = os.path.join(hf_dir, index_name)
        if os.path.isfile(index_path):
            shards = sorted(set(_read_json(index_path).get('weight_map', {}).values()))
            if not shards:
                raise ValueError(f'{index_path} has an empty weight_map')
            for shard in shards:
                state.update(read_checkpoint(os.path.join(hf_dir, shard)))
            return config, state
    for name in WEIGHT_FILES:
        path = os.path.join(hf_dir, name)
        if os.path.isfile(path):
            return config, dict(unwrap_checkpoint(read_checkpoint(path)))
    raise FileNotFoundError(f'{hf_dir} has no weights: none of {WEIGHT_FILES + WEIGHT_INDEXES}')


def _config_fields(config) -> dict[str, Any]:
    """What of a ``UperNetConfig`` decides the function its model computes."""
    backbone = config.backbone_config
    fields = {
        'backbone_config.model_type': backbone.model_type,
        'backbone_config.depths': list(backbone.depths),
        'backbone_config.hidden_sizes': list(backbone.hidden_sizes),
        'backbone_config.patch_size': backbone.patch_size,
        'backbone_config.num_channels': backbone.num_channels,
        'hidden_size': config.hidden_size,
        'pool_scales': [int(s) for s in config.pool_scales],
        'num_labels': config.num_labels,
        'use_auxiliary_head': bool(config.use_auxiliary_head),
    }
    if backbone.model_type == 'convnext':
        fields['backbone_config.layer_scale_init_value > 0'] = \
            backbone.layer_scale_init_value > 0
    if config.use_auxiliary_head:
        in_channels = config.auxiliary_in_channels
        fields.update({
            'auxiliary_in_channels': backbone.hidden_sizes[HF_AUX_IN_INDEX]
            if in_channels is None else in_channels,
            'auxiliary_channels': config.auxiliary_channels,
            'auxiliary_num_convs': config.auxiliary_num_convs,
            'auxiliary_concat_input': bool(config.auxiliary_concat_input),
        })
    return fields


def compare_hf_configs(actual, expected, actual_source: str, expected_source: str) -> None:
    """Raise ``ValueError`` listing every field where ``actual`` (read from ``actual_source``)
    describes another model than ``expected`` (the one of ``expected_source``). An auxiliary
    head that only ``actual`` has is no mismatch: it only trains."""
    have, want = _config_fields(actual), _config_fields(expected)
    if have['use_auxiliary_head'] and not want['use_auxiliary_head']:
        have = {k: v for k, v in have.items() if not k.startswith(('aux', 'use_aux'))}
        want = {k: v for k, v in want.items() if not k.startswith('use_aux')}
    # a field only one side has (layer scale of V1, the auxiliary head's) follows from one
    # that both have and differ in
    diffs = [f'{key}={have[key]!r} there, {want[key]!r} in {expected_source}'
             for key in want if key in have and have[key] != want[key]]
    if diffs:
        hint = ''
        if want['use_auxiliary_head'] and not have['use_auxiliary_head']:
            hint = ('; a model without auxiliary head evaluates with model.auxiliary_head=None '
                    'in the config')
        raise ValueError(f'{actual_source} describes another model than {expected_source}: '
                         + '; '.join(diffs) + hint)


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
    _check_against_hf_model(hf_config, hf_state, f'the weights in {hf_dir}')
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
        model = build_upernet(cfg)
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
