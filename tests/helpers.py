"""Shared test helpers: the repository root, models built the way users build them (mmdet's and
mmseg's own base configs with ``backbone=dict(type='ConvNeXt', ...)`` plugged in through
``custom_imports``), weights moved off their init, and a guard that fails on host syncs."""
from __future__ import annotations

import contextlib
import copy
import logging
import runpy
import subprocess
import sys
from pathlib import Path

import torch
from mmengine.hub import get_config
from mmengine.logging import MMLogger
from torch.utils._python_dispatch import TorchDispatchMode

from convnext_dense.arch_settings import ARCH_SETTINGS
from convnext_dense.models import ConvNeXt

ROOT = Path(__file__).resolve().parents[1]
DET_CONFIG = str(ROOT / 'configs/mask_rcnn/convnext_atto_toy.py')
SEG_CONFIG = str(ROOT / 'configs/upernet/convnext_atto_toy.py')
# sizes whose structure tests build on the meta device (no memory, no init time)
META_ARCHS = ('large', 'xlarge', 'xxlarge', 'huge')


class LogRecords(logging.Handler):
    """The messages mmengine's current logger emits while installed:
    ``with LogRecords() as messages: ...``."""

    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())

    def __enter__(self):
        MMLogger.get_current_instance().addHandler(self)
        return self.messages

    def __exit__(self, *exc):
        MMLogger.get_current_instance().removeHandler(self)


def run_tool(args, cwd, check=True, timeout=600, env=None) -> subprocess.CompletedProcess:
    """Run ``python *args`` in ``cwd`` as a user would; with ``check``, a non-zero exit is an
    assertion error showing the ends of its output."""
    result = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True,
                            text=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f'{" ".join(map(str, args))} failed:\n{result.stdout[-3000:]}\n'
                             f'{result.stderr[-3000:]}')
    return result


def run_tool_in_process(tool: str, *args, monkeypatch) -> None:
    """Run ``python ROOT/tool *args`` in this process: the tool's ``__main__`` with ``args`` as
    its command line (the imports it needs are already paid for)."""
    monkeypatch.setattr(sys, 'argv', [str(ROOT / tool), *map(str, args)])
    runpy.run_path(str(ROOT / tool), run_name='__main__')


def make_toy_data_in(root: Path, num_train: int = 16, num_val: int = 4) -> Path:
    """``root`` with data/ as tools/make_toy_data.py writes it (its defaults but the counts;
    tests/datasets/test_toy.py checks that the tool writes these bytes), the cwd of the tools'
    runs."""
    from convnext_dense.datasets import make_toy_data
    make_toy_data(str(root / 'data'), num_train=num_train, num_val=num_val)
    return root


def short_run(iters: int, interval: int) -> list[str]:
    """tools/train.py options: ``iters`` iterations, validating at the end, a checkpoint every
    ``interval``, a log line every iteration, seed 0."""
    return ['--cfg-options', f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
            f'default_hooks.checkpoint.interval={interval}', 'default_hooks.logger.interval=1',
            'randomness.seed=0']


def perturb_(model: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> torch.nn.Module:
    """Move every parameter off its init (layer scale 1e-6 and zero GRN would hide a misplaced
    tensor) by ``scale`` x N(0, 1), in place; returns the model in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale)
    model.eval()
    return model


def stage_outputs(model: ConvNeXt, x: torch.Tensor) -> list[torch.Tensor]:
    """Our four stage outputs before the per-stage norms (what timm and Hugging Face return)."""
    outputs = []
    for downsample, stage in zip(model.downsample_layers, model.stages):
        x = stage(downsample(x))
        outputs.append(x)
    return outputs


def _dims(arch: str) -> list[int]:
    return ARCH_SETTINGS[arch]['dims']


def build_mask_rcnn(arch: str = 'tiny', fp32_roi: bool = False,
                    backbone_type: str = 'ConvNeXt', rcnn_samples: int | None = None,
                    **backbone):
    """mmdet's Mask R-CNN base model with a ConvNeXt backbone: ours, or another registered one
    such as ``'mmpretrain.ConvNeXt'`` (mmdet 3.x's own ConvNeXt configs; import mmpretrain
    first). ``rcnn_samples``: RoIs per image in the R-CNN heads' training batch instead of the
    config's 512."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    cfg = get_config('mmdet::_base_/models/mask-rcnn_r50_fpn.py')
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone = dict(type=backbone_type, arch=arch, **backbone)
    model_cfg.neck.in_channels = _dims(arch)
    if rcnn_samples is not None:
        model_cfg.train_cfg.rcnn.sampler.num = rcnn_samples
    if fp32_roi:
        model_cfg.roi_head.bbox_roi_extractor.type = 'FP32SingleRoIExtractor'
        model_cfg.roi_head.mask_roi_extractor.type = 'FP32SingleRoIExtractor'
    return MODELS.build(model_cfg)


def build_upernet(arch: str = 'tiny', **backbone):
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules()
    cfg = get_config('mmseg::_base_/models/upernet_r50.py')
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.pretrained = None  # the base config's ResNet weights
    model_cfg.backbone = dict(type='ConvNeXt', arch=arch, **backbone)
    model_cfg.decode_head.in_channels = _dims(arch)
    model_cfg.auxiliary_head.in_channels = _dims(arch)[2]
    norm_cfg = dict(type='BN', requires_grad=True)  # SyncBN cannot run on CPU
    model_cfg.decode_head.norm_cfg = norm_cfg
    model_cfg.auxiliary_head.norm_cfg = norm_cfg
    model_cfg.data_preprocessor.size = (64, 64)
    return MODELS.build(model_cfg)


# aten ops that make the host wait for a CUDA device: a value read back, or an output whose size
# depends on the data
SYNCING_OPS = {'_local_scalar_dense', 'nonzero', 'masked_select', '_unique', '_unique2',
               'unique_dim', 'unique_consecutive', 'bincount', 'equal', 'is_nonzero'}


class HostSyncGuard(TorchDispatchMode):
    """Fails on any aten op that waits for the device, boolean-mask indexing included."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in SYNCING_OPS or (name == 'repeat_interleave' and 'output_size' not in
                                   (kwargs or {})):
            raise AssertionError(f'host sync: aten.{name}')
        if name == 'index' and any(i is not None and i.dtype in (torch.bool, torch.uint8)
                                   for i in args[1]):
            raise AssertionError('host sync: boolean-mask indexing')
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def no_host_round_trip(monkeypatch):
    """On a CPU-only machine: no op that would sync a device, and no tensor read back through
    ``.cpu()``, ``.numpy()``, ``.item()`` or ``.tolist()`` (pytest's ``monkeypatch``)."""
    with monkeypatch.context() as patch:
        for method in ('cpu', 'numpy', 'item', 'tolist'):
            def refuse(self, *args, _method=method, **kwargs):
                raise AssertionError(f'host round trip: Tensor.{_method}()')
            patch.setattr(torch.Tensor, method, refuse)
        with HostSyncGuard():
            yield
