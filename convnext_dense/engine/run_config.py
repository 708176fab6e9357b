"""What ``tools/train.py`` and ``tools/test.py`` do, for mmdet and mmseg configs alike.

The task comes from the config's ``default_scope`` (``mmdet`` or ``mmseg``), as in mmdet's and
mmseg's own tools, whose arguments and conventions these follow. On top of them:

* The config is read and checked by :func:`convnext_dense.config.load_config` (``--cfg-options``
  typos, syntax errors named by file) and its data by
  :func:`convnext_dense.config.check_datasets`, before anything is built.
* On a machine without CUDA, SyncBN becomes BN and fp16 AMP (it needs a GPU) becomes fp32
  (bf16 AMP stays bf16, which CPUs autocast), each with one log line, and ``--launcher
  pytorch`` runs on gloo with CPU DDP, so the same configs and commands run on a laptop or a
  CPU CI machine.
* ``--bf16``, ``--channels-last`` and ``--compile`` (or the config's ``fast_path``) turn on the
  fast path of :mod:`.fast_path`.
* Every run checkpoints the RNG states (bitwise resume) and writes checkpoints atomically.
* Every run stops at the first non-finite loss or gradient, saves a resumable checkpoint on
  SIGTERM, and stops when a checkpoint cannot be written (:mod:`.fail_safe`).
"""
from __future__ import annotations

import logging
import os.path as osp
from collections.abc import Callable
from dataclasses import dataclass

import torch
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log

from ..config import SCOPES, add_custom_hook, check_datasets, load_config, replace_types
from ..ops.roi_ops import set_roi_ops
from .fast_path import configure_fast_path


def _mmdet_show_dir(cfg: Config, show_dir: str) -> None:
    # mmdet's DetVisualizationHook writes each test picture under its own test_out_dir.
    cfg.default_hooks.visualization.test_out_dir = show_dir


def _mmseg_show_dir(cfg: Config, show_dir: str) -> None:
    # mmseg's SegVisualizationHook hands pictures to the visualizer's backends, which write
    # under the visualizer's save_dir.
    cfg.visualizer.save_dir = show_dir
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]


def _mmdet_out(cfg: Config, out: str, evaluators: list) -> None:
    # mmdet dumps the raw predictions (boxes, masks) to one pickle, as its tools/test.py --out.
    if not out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out {out}: detection results are saved as a .pkl file')
    evaluators.append(dict(type='DumpDetResults', out_file_path=out))


def _mmseg_out(cfg: Config, out: str, evaluators: list) -> None:
    # mmseg's IoUMetric writes the predicted label maps as PNGs into a folder.
    for evaluator in evaluators:
        evaluator['output_dir'] = out


@dataclass(frozen=True)
class Task:
    """What a tool does differently for mmdet and for mmseg configs, and why.

    Args:
        scope: The config's ``default_scope``.
        show_dir: Points the config's test-time pictures at a folder (``--show-dir``).
        save_predictions: Saves the predictions at ``--out`` (adds to the test evaluators).
        tta_keeps_image_loading: mmdet's ``tta_pipeline`` starts with its own image loading
            step, which must read as the test pipeline's does (``backend_args``); mmseg's
            carries its own.
    """
    scope: str
    show_dir: Callable[[Config, str], None]
    save_predictions: Callable[[Config, str, list], None]
    tta_keeps_image_loading: bool


TASKS = {
    'mmdet': Task('mmdet', _mmdet_show_dir, _mmdet_out, tta_keeps_image_loading=True),
    'mmseg': Task('mmseg', _mmseg_show_dir, _mmseg_out, tta_keeps_image_loading=False),
}
assert tuple(TASKS) == SCOPES, 'one Task for each scope load_config accepts'
__all__ = ['TASKS', 'Task', 'adapt_to_cpu', 'make_runner', 'prepare_test_cfg',
           'prepare_train_cfg']


def adapt_to_cpu(cfg: Config) -> None:
    """Without CUDA: SyncBN -> BN and fp16 AMP -> fp32, each said once in the log; bf16 AMP
    runs on the CPU as :class:`convnext_dense.optim.BF16OptimWrapper` (mmengine's
    ``AmpOptimWrapper`` refuses to be built without a GPU)."""
    if torch.cuda.is_available():
        return
    replaced = replace_types(cfg._cfg_dict, 'SyncBN', 'BN')
    if replaced:
        print_log(f'no CUDA device: replaced {replaced} SyncBN layers with BN (SyncBN needs '
                  'CUDA)', logger='current')
    wrapper = cfg.get('optim_wrapper')
    if isinstance(wrapper, dict) and wrapper.get('type') == 'AmpOptimWrapper':
        if str(wrapper.get('dtype')).replace('torch.', '') == 'bfloat16':
            wrapper['type'] = 'BF16OptimWrapper'
            for key in ('dtype', 'loss_scale'):
                wrapper.pop(key, None)
            print_log('no CUDA device: bf16 AMP on the CPU (BF16OptimWrapper)',
                      logger='current')
            return
        wrapper['type'] = 'OptimWrapper'
        wrapper.pop('loss_scale', None)
        print_log('no CUDA device: training in fp32 instead of fp16 AMP', logger='current')


def _set_default_work_dir(cfg: Config, config: str, work_dir: str | None) -> None:
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])


def _setup_cpu_distributed(cfg: Config, launcher: str) -> None:
    """mmengine's pytorch launcher calls ``torch.cuda.set_device`` and wraps the model with
    ``device_ids=[LOCAL_RANK]``, both of which fail without CUDA: initialise gloo here (the
    Runner then skips its own init) and use CPU DDP."""
    if launcher == 'none' or torch.cuda.is_available():
        return
    if launcher != 'pytorch':
        raise ValueError(f'--launcher {launcher} needs CUDA; on CPU use --launcher pytorch '
                         '(torchrun, gloo)')
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    # the wrapper --channels-last sets (ChannelsLastDistributedDataParallel) stays
    wrapper = (cfg.get('model_wrapper_cfg') or {}).get('type', 'MMDistributedDataParallel')
    cfg.model_wrapper_cfg = dict(type=wrapper, device_ids=None,
                                 broadcast_buffers=False,
                                 find_unused_parameters=cfg.get('find_unused_parameters',
                                                                False))
    print_log(f'no CUDA device: distributed on gloo over {dist.get_world_size()} CPU processes',
              logger='current')


def _common(cfg: Config, config: str, work_dir: str | None, launcher: str,
            loaders: tuple[str, ...]) -> Config:
    check_datasets(cfg, loaders)
    _set_default_work_dir(cfg, config, work_dir)
    cfg.launcher = launcher
    adapt_to_cpu(cfg)
    _setup_cpu_distributed(cfg, launcher)
    return cfg


def prepare_train_cfg(config: str,
                      work_dir: str | None = None,
                      resume: str | None = None,
                      amp: bool = False,
                      cfg_options: dict | None = None,
                      launcher: str = 'none',
                      tensorboard: bool = False,
                      auto_scale_lr: bool = False,
                      bf16: bool | None = None,
                      channels_last: bool | None = None,
                      compile: bool | None = None) -> Config:
    """The config ``tools/train.py`` hands to ``Runner.from_cfg``.

    Args:
        resume: None (start fresh), ``'auto'`` (latest checkpoint in the work dir, if any) or a
            checkpoint path.
        amp: fp16 automatic mixed precision with dynamic loss scaling (bf16 needs none; set
            ``optim_wrapper.dtype='bfloat16'`` for it).
        auto_scale_lr: Scale the learning rate by the total batch size over the config's
            ``auto_scale_lr.base_batch_size`` (mmengine's linear scaling rule), for training
            on another number of GPUs than the recipe's.
        bf16, channels_last, compile: The fast-path switches
            (:func:`.fast_path.configure_fast_path`); None keeps the config's ``fast_path``.
            ``bf16`` takes precedence over ``amp``.
    """
    cfg = load_config(config, cfg_options)
    if amp:
        wrapper = cfg.optim_wrapper
        if wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
            print_log(f'--amp: {config} already trains with AMP (AmpOptimWrapper)',
                      logger='current', level=logging.WARNING)
        elif wrapper.get('type', 'OptimWrapper') == 'OptimWrapper':
            wrapper.type = 'AmpOptimWrapper'
            wrapper.setdefault('loss_scale', 'dynamic')
    if auto_scale_lr:
        scaling = cfg.get('auto_scale_lr')
        if not isinstance(scaling, dict) or 'base_batch_size' not in scaling:
            raise ValueError(f'--auto-scale-lr: {config} has no auto_scale_lr = dict('
                             'enable=..., base_batch_size=...), the batch size its learning '
                             'rate is meant for')
        scaling['enable'] = True
    if resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif resume is not None:
        if not osp.isfile(resume):
            raise FileNotFoundError(f'--resume {resume}: no such checkpoint file')
        cfg.resume, cfg.load_from = True, resume
    if tensorboard:
        backends = list(cfg.visualizer.get('vis_backends') or [dict(type='LocalVisBackend')])
        backends.append(dict(type='TensorboardVisBackend'))
        cfg.visualizer.vis_backends = backends
    configure_fast_path(cfg, bf16=bf16, channels_last=channels_last, compile=compile)
    add_custom_hook(cfg, 'RNGStateHook')
    for hook in ('NonFiniteCheckHook', 'StopSignalHook', 'CheckpointWriteCheckHook'):
        # .fail_safe: kept as the config sets them, added where it does not
        add_custom_hook(cfg, hook)
    add_custom_hook(cfg, 'EvalProgressBarHook')
    loaders = ('train_dataloader', 'val_dataloader') if cfg.get('val_cfg') else \
        ('train_dataloader', )
    return _common(cfg, config, work_dir, launcher, loaders)


def _use_tta(cfg: Config, config: str) -> None:
    if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        raise ValueError(f'--tta: {config} defines no tta_model / tta_pipeline')
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    test_data = cfg.test_dataloader.dataset
    while 'dataset' in test_data:  # wrapped datasets
        test_data = test_data.dataset
    if TASKS[cfg.default_scope].tta_keeps_image_loading:
        cfg.tta_pipeline[0].backend_args = test_data.pipeline[0].get('backend_args')
    test_data.pipeline = cfg.tta_pipeline


def prepare_test_cfg(config: str,
                     checkpoint: str,
                     work_dir: str | None = None,
                     out: str | None = None,
                     tta: bool = False,
                     show_dir: str | None = None,
                     cfg_options: dict | None = None,
                     launcher: str = 'none',
                     bf16: bool | None = None,
                     channels_last: bool | None = None,
                     compile: bool | None = None) -> Config:
    """The config ``tools/test.py`` hands to ``Runner.from_cfg``.

    Args:
        out: mmdet: a ``.pkl`` of the raw predictions (``DumpDetResults``); mmseg: a folder for
            the predicted label maps (``IoUMetric(output_dir=...)``).
        bf16, channels_last, compile: The fast-path switches
            (:func:`.fast_path.configure_fast_path`); None keeps the config's ``fast_path``.
    """
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint file {checkpoint!r} does not exist')
    cfg = load_config(config, cfg_options)
    # LoadCheckpointHook instead of load_from: it refuses a checkpoint of another model (mmengine
    # would only warn and evaluate untrained weights) and converts another backbone layout.
    cfg.load_from = None
    add_custom_hook(cfg, 'LoadCheckpointHook', checkpoint=checkpoint)
    if cfg.model.get('backbone', {}).get('init_cfg'):
        cfg.model.backbone.init_cfg = None  # the checkpoint holds every weight
    if tta:
        _use_tta(cfg, config)
    task = TASKS[cfg.default_scope]
    if show_dir is not None:
        cfg.default_hooks.visualization.draw = True
        task.show_dir(cfg, osp.abspath(show_dir))
    if out is not None:
        evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) \
            else [cfg.test_evaluator]
        task.save_predictions(cfg, out, evaluators)
        cfg.test_evaluator = evaluators
    configure_fast_path(cfg, bf16=bf16, channels_last=channels_last, compile=compile)
    add_custom_hook(cfg, 'EvalProgressBarHook')
    return _common(cfg, config, work_dir, launcher, ('test_dataloader', ))


def make_runner(cfg: Config):
    """Build the Runner of the config's scope (``RUNNERS`` from mmdet or mmseg), with RoIAlign
    and NMS on the kernels of the config's ``roi_ops`` (:mod:`convnext_dense.ops.roi_ops`)."""
    from mmengine.registry import RUNNERS, init_default_scope
    from mmengine.runner import Runner
    init_default_scope(cfg.default_scope)
    set_roi_ops(cfg.get('roi_ops', 'auto'))
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)
