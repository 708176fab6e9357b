"""The config rewriting of the fast path (:func:`configure_fast_path`): bf16 training and fp32
RoI extraction, the channels-last DDP wrapper, fused optimizer kernels, pad-to-bucket batches for
a compiled detector, and the :class:`~.hook.FastPathHook` that changes the built model."""
from __future__ import annotations

import logging

from mmengine.config import Config
from mmengine.logging import print_log

from ...compat import allow_bf16_nms
from ...config import add_custom_hook, replace_types
from .switches import normalize_fast_path

FUSED_OPTIMIZERS = ('AdamW', 'Adam', 'SGD')


def _model_cfg(cfg: Config) -> dict:
    model = cfg.model
    return model.module if 'module' in model else model  # a TTA model wraps the model


def _use_bf16(cfg: Config) -> None:
    """bf16 training (``BF16OptimWrapper``) and RoI extraction in fp32, on either ``roi_ops``
    route: neither mmcv's nor torchvision's RoIAlign has a bf16 kernel (torchvision's autocast
    rule runs it in fp32 too), and mmdet's ``SingleRoIExtractor`` would cast the RoIs to the
    features' dtype (bf16 rounds a coordinate near 1000 px to a multiple of 4). NMS runs on fp32
    copies (:mod:`convnext_dense.ops.roi_ops`)."""
    wrapper = cfg.get('optim_wrapper')
    if isinstance(wrapper, dict):
        kind = wrapper.get('type', 'OptimWrapper')
        if kind not in ('OptimWrapper', 'AmpOptimWrapper', 'BF16OptimWrapper'):
            raise ValueError(f'fast_path.bf16: optim_wrapper.type={kind!r} has no bf16 '
                             'variant here; use OptimWrapper or AmpOptimWrapper')
        wrapper['type'] = 'BF16OptimWrapper'
        for key in ('loss_scale', 'dtype'):
            wrapper.pop(key, None)
    # mmdet's extractor under its registry names
    replaced = replace_types(cfg.model, ('SingleRoIExtractor', 'mmdet.SingleRoIExtractor'),
                              'FP32SingleRoIExtractor')
    allow_bf16_nms()
    print_log('fast_path.bf16: bf16 autocast (training: BF16OptimWrapper, no loss scaling)'
              + (f', {replaced} RoI extractors in fp32' if replaced else ''), logger='current')


def _fused_devices() -> tuple[str, ...]:
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
        return tuple(_get_fused_kernels_supported_devices())
    except ImportError:  # its name in the torch versions before 2.2
        return ('cuda', )


def _use_fused_optimizer(cfg: Config) -> None:
    from mmengine.device import get_device
    wrapper = cfg.get('optim_wrapper')
    optimizer = wrapper.get('optimizer') if isinstance(wrapper, dict) else None
    if not isinstance(optimizer, dict):
        return
    name = str(optimizer.get('type', '')).split('.')[-1]
    if (name not in FUSED_OPTIMIZERS or 'fused' in optimizer or optimizer.get('foreach')
            or get_device() not in _fused_devices()):
        return  # an explicit choice, or no fused kernel for it here
    optimizer['fused'] = True
    print_log(f'fast_path: fused {name} kernel (optim_wrapper.optimizer.fused=True)',
              logger='current')


def _use_buckets(cfg: Config, options: dict) -> None:
    model = _model_cfg(cfg)
    preprocessor = model.get('data_preprocessor')
    if not isinstance(preprocessor, dict):
        return
    kind = preprocessor.get('type')
    if kind in ('DetDataPreprocessor', 'mmdet.DetDataPreprocessor'):
        preprocessor['type'] = 'BucketDetDataPreprocessor'
    elif kind != 'BucketDetDataPreprocessor':
        print_log(f'fast_path.compile: model.data_preprocessor.type={kind!r} pads each batch '
                  'its own way; every new batch shape compiles the backbone again',
                  logger='current', level=logging.WARNING)
        return
    sizes = options['bucket_sizes']
    if sizes is None:  # a recipe's own sizes (the LSJ configs' 1024x1024 crops)
        sizes = cfg.get('compile_bucket_sizes')
    if sizes is not None:
        preprocessor['bucket_sizes'] = [tuple(size) for size in sizes]
    buckets = preprocessor.get('bucket_sizes')
    print_log('fast_path.compile: batches padded to '
              + (f'the size buckets {buckets}' if buckets else 'the COCO size buckets')
              + ' (BucketDetDataPreprocessor)', logger='current')


def _use_channels_last_wrapper(cfg: Config) -> None:
    """``model_wrapper_cfg`` for :class:`~.ddp.ChannelsLastDistributedDataParallel` (used by a
    distributed run only)."""
    wrapper = cfg.get('model_wrapper_cfg')
    if wrapper is None:
        # the arguments mmengine's Runner.wrap_model passes without a model_wrapper_cfg
        cfg.model_wrapper_cfg = dict(
            type='ChannelsLastDistributedDataParallel', broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
        return
    kind = wrapper.get('type', 'MMDistributedDataParallel')
    if kind in ('MMDistributedDataParallel', 'ChannelsLastDistributedDataParallel'):
        wrapper['type'] = 'ChannelsLastDistributedDataParallel'
    else:
        print_log(f'fast_path.channels_last: model_wrapper_cfg.type={kind!r} wraps the model '
                  'before it is converted to channels-last; a DDP wrapper then copies every '
                  'gradient into its NCHW buckets', logger='current', level=logging.WARNING)


def configure_fast_path(cfg: Config,
                        bf16: bool | None = None,
                        channels_last: bool | None = None,
                        compile: bool | dict | None = None) -> None:
    """Merge the switches into ``cfg.fast_path`` (None leaves the config's value) and rewrite
    the config for them: bf16 training and fp32 RoI extraction, fused optimizer kernels, for
    detection under ``compile`` the pad-to-bucket data preprocessor, and the
    :class:`~.hook.FastPathHook` that applies :func:`~.transforms.apply_fast_path` to the built
    model."""
    fast_path = dict(cfg.get('fast_path') or {})
    flags = dict(bf16=bf16, channels_last=channels_last, compile=compile)
    for name, flag in flags.items():
        if flag is None:
            continue
        if name == 'compile' and flag is True and isinstance(fast_path.get('compile'), dict):
            continue  # --compile keeps the config's compile options
        fast_path[name] = flag
    fast_path = normalize_fast_path(fast_path)
    cfg.fast_path = fast_path
    if not any(fast_path.values()):
        return
    if fast_path['bf16']:
        _use_bf16(cfg)
    if fast_path['channels_last']:
        _use_channels_last_wrapper(cfg)
    _use_fused_optimizer(cfg)
    if fast_path['compile'] and 'decode_head' not in _model_cfg(cfg):
        _use_buckets(cfg, fast_path['compile'])
    add_custom_hook(cfg, 'FastPathHook')
