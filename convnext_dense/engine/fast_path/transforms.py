"""The fast path's changes to a built model (:func:`apply_fast_path`): channels-last weights and
inputs with mmcv ops kept on NCHW, regions compiled for fixed shapes (:class:`WatchedCompile`),
and validation and testing under bf16 autocast."""
from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Callable

import torch
from mmengine.logging import print_log
from mmengine.structures import BaseDataElement
from torch import nn

from ..build import unwrap_model
from .switches import normalize_fast_path


# -- bf16 inference ---------------------------------------------------------------------------
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


def use_channels_last(model: nn.Module) -> None:
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


def apply_fast_path(model: nn.Module, fast_path: dict) -> nn.Module:
    """Apply ``fast_path``'s switches to a built model (through DDP/TTA wrappers), once; returns
    ``model``. ``channels_last``: weights and inputs channels-last, mmcv ops' inputs contiguous;
    ``compile``: the backbone (detection) or ``extract_feat`` and the decode heads
    (segmentation) compiled for fixed shapes; ``bf16``: validation and testing under bf16
    autocast (training gets it from :class:`convnext_dense.optim.BF16OptimWrapper`)."""
    fast_path = normalize_fast_path(fast_path)
    inner = unwrap_model(model)
    if getattr(inner, '_fast_path', None) is not None:
        if inner._fast_path != fast_path:
            raise ValueError(f'fast_path: the model already runs {inner._fast_path}, cannot '
                             f'switch to {fast_path}')
        return model
    if fast_path['channels_last']:
        use_channels_last(inner)
    if fast_path['compile']:
        _compile(inner, fast_path['compile'])
    if fast_path['bf16']:
        _bf16_inference(inner)
    inner._fast_path = copy.deepcopy(fast_path)
    return model
