"""What transformers' UperNet-ConvNeXt can compute, and its configuration: the checks of an
mmseg config and model against it (naming the config key), the ``UperNetConfig`` and image
processor of a built model, and the comparison of two ``UperNetConfig``.

transformers is imported only by the functions that need it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from mmengine.config import Config
from torch import nn

from ...arch_settings import NUM_STAGES
from ...config import load_config
from ...models.convnext import ConvNeXt
from ...models.decode_heads import CHUNKED_LOSS_HEADS

HF_BACKBONE_TYPES = {'v1': 'convnext', 'v2': 'convnextv2'}
HF_STAGES = [f'stage{i + 1}' for i in range(NUM_STAGES)]
# What transformers hard-codes: every ConvNeXt LayerNorm (ConvNextLayerNorm(eps=1e-6)),
# nn.BatchNorm2d's default eps, and UperNetFCNHead's stage, kernel and dilation.
HF_LAYER_NORM_EPS = 1e-6
HF_BATCH_NORM_EPS = 1e-5
HF_AUX_IN_INDEX = 2
HF_AUX_KERNEL_SIZE = 3


def import_transformers():
    try:
        import transformers
    except ImportError as error:  # not a requirement of the package: the tests extra has it
        raise ImportError('the Hugging Face export and import need transformers 4.x '
                          '(pip install "transformers>=4.40,<5")') from error
    return transformers


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
    transformers = import_transformers()
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
    transformers = import_transformers()
    # mmseg normalises 0..255 values; transformers rescales to 0..1 first.
    return transformers.SegformerImageProcessor(
        do_resize=False, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=(preprocessor.mean.flatten().double() / 255).tolist(),
        image_std=(preprocessor.std.flatten().double() / 255).tolist(), do_reduce_labels=False)


def load_upernet_config(config: str | Config, source: str | None = None) -> Config:
    """Read a config (path or Config) and check that it is a UperNet-ConvNeXt one."""
    if isinstance(config, Config):
        cfg, source = config, source or 'config'
    else:
        cfg, source = load_config(config), source or config
    check_upernet_config(cfg, source)
    return cfg


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


def check_against_hf_model(config, hf_state: Mapping[str, torch.Tensor],
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
