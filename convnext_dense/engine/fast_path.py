"""The fast-path switches of the train and test tools: ``--bf16``, ``--channels-last`` and
``--compile``, or in a config ``fast_path = dict(bf16=False, channels_last=False, compile=False)``.

A ConvNeXt detection or segmentation step is bound by memory passes, host syncs and kernel
launches rather than by arithmetic (measured on an H100), which is what each switch addresses:

* ``bf16``: bfloat16 autocast for training and inference (half the activation traffic) with
  :class:`BF16OptimWrapper`, no loss scaler (bf16 has fp32's exponent range, so a dynamic
  scale only adds its inf checks and host syncs). mmcv's RoIAlign and NMS have no bf16 kernels:
  RoI extraction runs in fp32 (``FP32SingleRoIExtractor``) and NMS on fp32 copies
  (:func:`.compat.allow_bf16_nms`).
* ``channels_last``: the model's weights and inputs in channels-last memory. Under fp16/bf16
  PyTorch hands a 7x7 depthwise convolution in NCHW to a generic native kernel and only a
  channels-last one to cuDNN. mmcv's compiled ops read NCHW memory without checking the
  strides (RoIAlign on channels-last features returns wrong features, no error), so every
  mmcv op module gets contiguous inputs. A distributed run converts the model before DDP
  wraps it (:class:`ChannelsLastDistributedDataParallel`), so that DDP's gradient buckets
  take the channels-last layout.
* ``compile``: ``torch.compile(dynamic=False)`` of the tensor-only part of the model:
  detection, the backbone; segmentation (UperNet's fixed crops), ``extract_feat`` and the decode
  heads' ``forward``. Automatic dynamic shapes crash inductor on ConvNeXt (torch 2.14), and
  past dynamo's ``recompile_limit`` a new shape silently runs eagerly, so detection batches are
  padded to a few fixed sizes (``BucketDetDataPreprocessor``), the limit is raised to the
  number of shapes, and a call that still falls back to eager is logged.
  ``compile=dict(backend='inductor', mode=None, fullgraph=False, bucket_sizes=None,
  recompile_limit=None)`` sets its options (``backend='aot_eager'`` compiles without
  code generation, as the CPU tests do).

Any switch also makes AdamW/Adam/SGD use their fused kernels where the device has them.
:func:`configure_fast_path` rewrites a config for the switches, :func:`apply_fast_path` changes a
built model, and :class:`FastPathHook` (added to the config by the former) calls the latter when a
run starts, keeping checkpoints' parameter names those of the plain model.
"""
from __future__ import annotations

import copy
import functools
import logging
from collections import OrderedDict
from collections.abc import Callable
from contextlib import contextmanager

import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import BaseTTAModel, MMDistributedDataParallel, is_model_wrapper
from mmengine.optim import OptimWrapper
from mmengine.registry import HOOKS, MODEL_WRAPPERS, OPTIM_WRAPPERS
from mmengine.structures import BaseDataElement
from torch import nn

from .compat import allow_bf16_nms

SWITCHES = ('bf16', 'channels_last', 'compile')
COMPILE_DEFAULTS = dict(backend='inductor', mode=None, fullgraph=False, bucket_sizes=None,
                        recompile_limit=None)
FUSED_OPTIMIZERS = ('AdamW', 'Adam', 'SGD')
# A compiled module is reached through an OptimizedModule whose parameters live under this
# prefix; checkpoints keep the plain model's names.
COMPILED_PREFIX = '_orig_mod.'

__all__ = ['BF16OptimWrapper', 'COMPILE_DEFAULTS', 'ChannelsLastDistributedDataParallel',
           'FastPathHook', 'SWITCHES',
           'add_fast_path_arguments', 'apply_fast_path', 'configure_fast_path',
           'normalize_fast_path', 'plain_state_dict', 'replace_types']


# -- the switches -----------------------------------------------------------------------------
def normalize_fast_path(fast_path: dict | None) -> dict:
    """``fast_path`` with every switch present: ``bf16`` and ``channels_last`` booleans,
    ``compile`` False or a dict of :data:`COMPILE_DEFAULTS`' keys (``True`` means the
    defaults)."""
    fast_path = dict(fast_path or {})
    unknown = set(fast_path) - set(SWITCHES)
    if unknown:
        raise ValueError(f'fast_path: unknown keys {sorted(unknown)}; the switches are '
                         f'{list(SWITCHES)}')
    result = {}
    for name in ('bf16', 'channels_last'):
        value = fast_path.get(name, False)
        if not isinstance(value, bool):
            raise TypeError(f'fast_path.{name} must be True or False, got {value!r}')
        result[name] = value
    compile_ = fast_path.get('compile', False)
    if compile_ is True:
        compile_ = dict(COMPILE_DEFAULTS)
    elif isinstance(compile_, dict):
        unknown = set(compile_) - set(COMPILE_DEFAULTS)
        if unknown:
            raise ValueError(f'fast_path.compile: unknown keys {sorted(unknown)}; allowed: '
                             f'{list(COMPILE_DEFAULTS)}')
        compile_ = {**COMPILE_DEFAULTS, **compile_}
    elif compile_ is not False and compile_ is not None:
        raise TypeError(f'fast_path.compile must be True, False or a dict of options, got '
                        f'{compile_!r}')
    result['compile'] = compile_ or False
    return result


def _model_cfg(cfg: Config) -> dict:
    model = cfg.model
    return model.module if 'module' in model else model  # a TTA model wraps the model


def replace_types(node, old: str | tuple[str, ...], new: str) -> int:
    """Replace ``type=old`` (one name or any of several) by ``type=new`` everywhere in a config
    tree; returns the count."""
    if isinstance(old, str):
        old = (old, )
    count = 0
    if isinstance(node, dict):
        if node.get('type') in old:
            node['type'] = new
            count += 1
        for value in node.values():
            count += replace_types(value, old, new)
    elif isinstance(node, (list, tuple)):
        for value in node:
            count += replace_types(value, old, new)
    return count


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


def add_fast_path_arguments(parser) -> None:
    """The switches' flags of ``tools/train.py`` and ``tools/test.py`` (default None: a flag left
    out keeps the config's ``fast_path`` value)."""
    parser.add_argument('--bf16', action='store_true', default=None,
                        help='bfloat16 autocast without loss scaling (fp32 RoIAlign and NMS)')
    parser.add_argument('--channels-last', action='store_true', default=None,
                        help='channels-last weights and activations (cuDNN kernels for the '
                        '7x7 depthwise convolutions under bf16/fp16)')
    parser.add_argument('--compile', action='store_true', default=None,
                        help='torch.compile for fixed shapes: the backbone on size-bucketed '
                        'batches (detection), the encoder-decoder path (segmentation)')


def configure_fast_path(cfg: Config,
                        bf16: bool | None = None,
                        channels_last: bool | None = None,
                        compile: bool | dict | None = None) -> None:
    """Merge the switches into ``cfg.fast_path`` (None leaves the config's value) and rewrite
    the config for them: bf16 training and fp32 RoI extraction, fused optimizer kernels, for
    detection under ``compile`` the pad-to-bucket data preprocessor, and the
    :class:`FastPathHook` that applies :func:`apply_fast_path` to the built model."""
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
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(hook.get('type') == 'FastPathHook' for hook in hooks):
        hooks.append(dict(type='FastPathHook'))
    cfg.custom_hooks = hooks


# -- bf16 training ----------------------------------------------------------------------------
@OPTIM_WRAPPERS.register_module()
class BF16OptimWrapper(OptimWrapper):
    """mmengine's ``OptimWrapper`` with the forward under bfloat16 autocast and no loss scaler.

    mmengine's ``AmpOptimWrapper(dtype='bfloat16')`` refuses to be built without a GPU and
    always creates a ``GradScaler``, whose unscale and inf checks bf16 does not need (it has
    fp32's exponent range); this runs on every device autocast supports, CPU included.
    """

    @contextmanager
    def optim_context(self, model: nn.Module):
        from mmengine.runner.amp import autocast
        with super().optim_context(model), autocast(dtype=torch.bfloat16):
            yield

    def load_state_dict(self, state_dict: dict) -> None:
        # A checkpoint of fp16 AMP training carries its loss scaler, which bf16 has no use for.
        state_dict = {k: v for k, v in state_dict.items() if k != 'loss_scaler'}
        super().load_state_dict(state_dict)


def _to_fp32(sample):
    """Floating-point tensors of a prediction in fp32: mmdet's and mmseg's metrics convert
    predictions with ``.numpy()``, which has no bfloat16."""
    if isinstance(sample, BaseDataElement):
        for key, value in list(sample.items()):
            converted = _to_fp32(value)
            if converted is not value:
                setattr(sample, key, converted)
        return sample
    if isinstance(sample, torch.Tensor) and sample.is_floating_point() \
            and sample.dtype != torch.float32:
        return sample.float()
    if isinstance(sample, list):
        return [_to_fp32(item) for item in sample]
    return sample


def _bf16_inference(model: nn.Module) -> None:
    device = next(model.parameters()).device.type

    def wrap(step: Callable) -> Callable:
        @functools.wraps(step)
        def bf16_step(*args, **kwargs):
            with torch.autocast(device_type=device, dtype=torch.bfloat16):
                outputs = step(*args, **kwargs)
            return _to_fp32(outputs)
        return bf16_step

    # Training autocasts through BF16OptimWrapper; validation and testing through these.
    model.val_step = wrap(model.val_step)
    model.test_step = wrap(model.test_step)


# -- channels-last ----------------------------------------------------------------------------
def _inputs_channels_last(module: nn.Module, args: tuple):
    if args and isinstance(args[0], torch.Tensor) and args[0].dim() == 4:
        return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
    return None


def _contiguous(value):
    if isinstance(value, torch.Tensor):
        return value.contiguous()
    if isinstance(value, (list, tuple)):
        return type(value)(_contiguous(item) for item in value)
    return value


def _contiguous_inputs(module: nn.Module, args: tuple):
    return _contiguous(args)


def _is_mmcv_op(module: nn.Module) -> bool:
    return type(module).__module__.startswith('mmcv.ops')


def _use_channels_last(model: nn.Module) -> None:
    """Channels-last weights and inputs, mmcv ops' inputs contiguous; once per model (the DDP
    wrapper converts the model before the hook reaches it)."""
    if getattr(model, '_channels_last', False):
        return
    model.to(memory_format=torch.channels_last)
    for param in model.parameters():
        if param.dim() == 4 and param.shape[:3] == (1, 1, 1):
            # Per-channel vectors of NHWC code (GRN's gamma and beta): restrided, they differ
            # from their gradients (contiguous) in the strides of size-1 dims only, which DDP
            # still reports as a layout mismatch.
            param.data = param.data.clone(memory_format=torch.contiguous_format)
    entry = getattr(model, 'backbone', None) or model
    entry.register_forward_pre_hook(_inputs_channels_last)
    for module in model.modules():
        if _is_mmcv_op(module):
            # mmcv's kernels index NCHW memory (RoIAlign silently misreads channels-last).
            module.to(memory_format=torch.contiguous_format)
            module.register_forward_pre_hook(_contiguous_inputs)
    model._channels_last = True


@MODEL_WRAPPERS.register_module()
class ChannelsLastDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's ``MMDistributedDataParallel`` of the model converted to channels-last first
    (``fast_path.channels_last``; same arguments).

    DDP lays out each parameter's slot in its gradient buckets with the parameter's strides
    when it is built. mmengine builds it in the Runner's constructor, long before a hook could
    convert the model; converted afterwards, every step's channels-last gradients no longer
    match their NCHW bucket views ("Grad strides do not match bucket view strides") and are
    copied into them, and the averaged gradients come back with NCHW strides.
    """

    def __init__(self, module: nn.Module, **kwargs) -> None:
        _use_channels_last(_unwrap(module))
        super().__init__(module=module, **kwargs)


def _use_channels_last_wrapper(cfg: Config) -> None:
    """``model_wrapper_cfg`` for :class:`ChannelsLastDistributedDataParallel` (used by a
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


# -- compile ----------------------------------------------------------------------------------
def _signature(args: tuple, kwargs: dict) -> tuple:
    def describe(value):
        if isinstance(value, torch.Tensor):
            return (tuple(value.shape), value.dtype, value.is_contiguous())
        if isinstance(value, (list, tuple)):
            return tuple(describe(v) for v in value)
        return type(value).__name__
    return describe(args), tuple((k, describe(v)) for k, v in sorted(kwargs.items()))


class WatchedCompile:
    """``torch.compile(fn, dynamic=False)`` that logs each call it cannot compile.

    Past ``recompile_limit`` dynamo runs a new input shape eagerly and says so once, on the
    first such call. A call with inputs (shapes, dtypes, layout, grad and autocast mode,
    training flag) not seen before must compile a graph; when dynamo's count of compiled
    graphs does not grow, it ran eagerly, and each such input is logged.
    """

    def __init__(self, fn: Callable, name: str, **compile_kwargs) -> None:
        self.name = name
        self._fn = fn
        self._compiled = torch.compile(fn, dynamic=False, **compile_kwargs)
        self._seen: set = set()
        self.eager_calls: list = []
        functools.update_wrapper(self, fn)

    def _key(self, args: tuple, kwargs: dict) -> tuple:
        owner = getattr(self._fn, '__self__', None)
        return (_signature(args, kwargs), torch.is_grad_enabled(),
                torch.is_autocast_enabled('cpu'), torch.is_autocast_enabled('cuda'),
                getattr(owner, 'training', None))

    def __call__(self, *args, **kwargs):
        from torch._dynamo.utils import counters
        key = self._key(args, kwargs)
        new = key not in self._seen
        graphs = counters['stats']['unique_graphs']
        outputs = self._compiled(*args, **kwargs)
        if new:
            self._seen.add(key)
            if counters['stats']['unique_graphs'] == graphs:
                self.eager_calls.append(key)
                print_log(f'torch.compile: {self.name} ran eagerly for inputs {key[0]}: '
                          'dynamo did not compile them (recompile_limit='
                          f'{torch._dynamo.config.recompile_limit} used up by earlier '
                          'shapes?); every later call with them runs eagerly too',
                          logger='current', level=logging.WARNING)
        return outputs


def _compile_regions(model: nn.Module) -> list[tuple[nn.Module, str]]:
    if hasattr(model, 'decode_head'):  # mmseg's encoder-decoder: fixed crops, the whole path
        regions = [(model, 'extract_feat'), (model.decode_head, 'forward')]
        auxiliary = getattr(model, 'auxiliary_head', None)
        if isinstance(auxiliary, nn.ModuleList):
            regions += [(head, 'forward') for head in auxiliary]
        elif auxiliary is not None:
            regions.append((auxiliary, 'forward'))
        return regions
    if hasattr(model, 'backbone'):  # detection: the backbone, on bucket-sized batches
        return [(model.backbone, 'forward')]
    raise TypeError(f'fast_path.compile: {type(model).__name__} has neither a backbone nor a '
                    'decode_head to compile')


def _recompile_limit(model: nn.Module, options: dict) -> int:
    if options['recompile_limit'] is not None:
        return int(options['recompile_limit'])
    buckets = getattr(getattr(model, 'data_preprocessor', None), 'bucket_sizes', None)
    current = torch._dynamo.config.recompile_limit
    # each bucket compiles once for training (with grad) and once for inference
    return max(current, 2 * len(buckets)) if buckets else current


def _compile(model: nn.Module, options: dict) -> list[WatchedCompile]:
    regions = _compile_regions(model)
    limit = _recompile_limit(model, options)
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, limit)
    config.accumulated_recompile_limit = max(config.accumulated_recompile_limit,
                                             limit * len(regions))
    kwargs = {k: options[k] for k in ('backend', 'mode', 'fullgraph')}
    compiled = []
    for owner, name in regions:
        # An instance attribute over the method: the module tree, and with it the state
        # dict's keys, stays the plain model's (an OptimizedModule would add '_orig_mod.').
        watched = WatchedCompile(getattr(owner, name), f'{type(owner).__name__}.{name}',
                                 **kwargs)
        setattr(owner, name, watched)
        compiled.append(watched)
    return compiled


def _unwrap(model: nn.Module) -> nn.Module:
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model


def apply_fast_path(model: nn.Module, fast_path: dict) -> nn.Module:
    """Apply ``fast_path``'s switches to a built model (through DDP/TTA wrappers), once; returns
    ``model``. ``channels_last``: weights and inputs channels-last, mmcv ops' inputs contiguous;
    ``compile``: the backbone (detection) or ``extract_feat`` and the decode heads
    (segmentation) compiled for fixed shapes; ``bf16``: validation and testing under bf16
    autocast (training gets it from :class:`BF16OptimWrapper`)."""
    fast_path = normalize_fast_path(fast_path)
    inner = _unwrap(model)
    if getattr(inner, '_fast_path', None) is not None:
        if inner._fast_path != fast_path:
            raise ValueError(f'fast_path: the model already runs {inner._fast_path}, cannot '
                             f'switch to {fast_path}')
        return model
    if fast_path['channels_last']:
        _use_channels_last(inner)
    if fast_path['compile']:
        _compile(inner, fast_path['compile'])
    if fast_path['bf16']:
        _bf16_inference(inner)
    inner._fast_path = copy.deepcopy(fast_path)
    return model


# -- the runner -------------------------------------------------------------------------------
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
