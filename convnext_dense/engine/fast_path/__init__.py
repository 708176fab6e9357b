"""The fast-path switches of the train and test tools: ``--bf16``, ``--channels-last`` and
``--compile``, or in a config ``fast_path = dict(bf16=False, channels_last=False, compile=False)``.

A ConvNeXt detection or segmentation step is bound by memory passes, host syncs and kernel
launches rather than by arithmetic (measured on an H100), which is what each switch addresses:

* ``bf16``: bfloat16 autocast for training and inference (half the activation traffic) with
  :class:`BF16OptimWrapper`, no loss scaler (bf16 has fp32's exponent range, so a dynamic
  scale only adds its inf checks and host syncs). mmcv's RoIAlign and NMS have no bf16 kernels:
  RoI extraction runs in fp32 (``FP32SingleRoIExtractor``) and NMS on fp32 copies
  (:func:`convnext_dense.compat.allow_bf16_nms`).
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
run starts, keeping checkpoints' parameter names those of the plain model. One module per job:
:mod:`.switches` (the ``fast_path`` key and the tools' flags), :mod:`.configure` (the config
rewriting), :mod:`.transforms` (the model changes), :mod:`.ddp` (the channels-last DDP wrapper)
and :mod:`.hook` (the hook, checkpoint names and optimizer state).
"""
from .configure import configure_fast_path
from .ddp import ChannelsLastDistributedDataParallel
from .hook import FastPathHook, match_optimizer_state, plain_state_dict
from .switches import COMPILE_DEFAULTS, SWITCHES, add_fast_path_arguments, normalize_fast_path
from .transforms import WatchedCompile, apply_fast_path

__all__ = ['COMPILE_DEFAULTS', 'ChannelsLastDistributedDataParallel', 'FastPathHook', 'SWITCHES',
           'WatchedCompile', 'add_fast_path_arguments', 'apply_fast_path', 'configure_fast_path',
           'match_optimizer_state', 'normalize_fast_path', 'plain_state_dict']
