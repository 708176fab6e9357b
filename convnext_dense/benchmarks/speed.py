"""Side-by-side timing of this project's path against the references, in one process.

References: timm ``convnext_tiny`` (eager and ``torch.compile``), ``mmpretrain.models.ConvNeXt``,
and "the upstream route": mmdet's / mmseg's own ConvNeXt configs (``mmpretrain.ConvNeXt``
backbone). Ours is the same config with ``type='ConvNeXt'``. Inputs are synthetic and identical
for every contender (fixed seed, same boxes and masks every iteration).

Each case reports the median and the 10th-90th percentile spread over ``iters`` timed
iterations after ``warmup``, the peak memory (CUDA) and the ratio to each reference. On CUDA
the time is taken between synchronisations; on CPU with ``time.perf_counter``.
"""
from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..engine.compat import import_mmpretrain
from ..models import ConvNeXt
from ..testing import det_batch, seg_batch

# The full sizes of the GPU goals (docs/performance.md), and small ones to run the same code on
# a CPU.
# ops: the stride-4 FPN level of a 2x800x1344 batch with 512 RoIs (Mask R-CNN's sampled
# proposals), and NMS over 5000 boxes (the RPN's pre-NMS count), at both sizes.
OPS_SIZES = dict(roi_feature=(2, 256, 200, 336), rois=512, nms_boxes=5000)
GPU_SIZES = dict(backbone_train=(2, 800, 1344), backbone_infer=(64, 224, 224),
                 det_train=(2, 800, 1344), det_infer=(1, 800, 1333), seg_train=(16, 512, 512),
                 seg_infer=(1, 512, 2048), instances=12, **OPS_SIZES)
CPU_SIZES = dict(backbone_train=(1, 128, 160), backbone_infer=(4, 64, 64),
                 det_train=(1, 128, 160), det_infer=(1, 128, 160), seg_train=(2, 128, 128),
                 seg_infer=(1, 128, 256), instances=3, **OPS_SIZES)


@dataclass
class Timing:
    case: str
    contender: str
    times_ms: list[float]
    peak_mem_gib: float | None = None
    note: str = ''
    ratios: dict[str, float] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def spread(self) -> tuple[float, float]:
        ordered = sorted(self.times_ms)
        return (ordered[int(0.1 * (len(ordered) - 1))], ordered[int(0.9 * (len(ordered) - 1))])


def measure(fn: Callable[[], object], device: torch.device, warmup: int, iters: int
            ) -> tuple[list[float], float | None]:
    """Run ``fn`` ``warmup`` times, then time ``iters`` calls; returns (ms list, peak GiB)."""
    cuda = device.type == 'cuda'
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(iters):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end))
        else:
            begin = time.perf_counter()
            fn()
            times.append((time.perf_counter() - begin) * 1e3)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
    return times, peak


# -- backbones --------------------------------------------------------------------------------
def _timm_features(model):
    def forward(x):
        outs, y = [], model.stem(x)
        for stage in model.stages:
            y = stage(y)
            outs.append(y)
        return outs
    return forward


def backbone_contenders(device: torch.device, compile_timm: bool) -> dict[str, Callable]:
    """name -> a callable x -> list of stage outputs, all ConvNeXt-T."""
    contenders: dict[str, Callable] = {}
    ours = ConvNeXt(arch='tiny').to(device).to(memory_format=torch.channels_last)
    contenders['ours'] = ours
    try:
        import timm
        reference = timm.create_model('convnext_tiny').to(device)
        reference = reference.to(memory_format=torch.channels_last)
        contenders['timm eager'] = _timm_features(reference)
        if compile_timm:
            contenders['timm compiled'] = torch.compile(_timm_features(reference))
    except ImportError:
        pass
    mmpretrain_models = import_mmpretrain()
    if mmpretrain_models is not None:
        upstream = mmpretrain_models.ConvNeXt(arch='tiny', out_indices=(0, 1, 2, 3),
                                              gap_before_final_norm=False).to(device)
        contenders['mmpretrain'] = upstream.to(memory_format=torch.channels_last)
    return contenders


def bench_backbones(device: torch.device, sizes: dict, dtype: torch.dtype, warmup: int,
                    iters: int, compile_timm: bool) -> list[Timing]:
    results = []
    generator = torch.Generator().manual_seed(0)
    batch, height, width = sizes['backbone_train']
    train_x = torch.randn(batch, 3, height, width, generator=generator).to(device)
    train_x = train_x.to(memory_format=torch.channels_last)
    batch, height, width = sizes['backbone_infer']
    infer_x = torch.randn(batch, 3, height, width, generator=generator).to(device)
    infer_x = infer_x.to(memory_format=torch.channels_last)
    autocast = dict(device_type=device.type, dtype=dtype, enabled=dtype != torch.float32)
    for name, model in backbone_contenders(device, compile_timm).items():
        def train_step(model=model):
            with torch.autocast(**autocast):
                loss = sum(o.float().square().mean() for o in model(train_x))
            loss.backward()

        @torch.no_grad()
        def infer(model=model):
            with torch.autocast(**autocast):
                model(infer_x)

        for case, fn in ((f'backbone fwd+bwd {tuple(train_x.shape)}', train_step),
                         (f'backbone inference {tuple(infer_x.shape)}', infer)):
            times, peak = measure(fn, device, warmup, iters)
            results.append(Timing(case, name, times, peak))
    return results


# -- full models ------------------------------------------------------------------------------
DET_UPSTREAM = 'mmdet::convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py'
CASCADE_UPSTREAM = ('mmdet::convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_'
                    'amp-ms-crop-3x_coco.py')
SEG_UPSTREAM = 'mmseg::convnext/convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py'


def _model_cfg(config: str, ours: bool):
    from mmengine.hub import get_config
    cfg = get_config(config)
    model = copy.deepcopy(cfg.model)
    backbone = model.backbone
    backbone.init_cfg = None
    if ours:
        model.backbone = dict(type='ConvNeXt', arch='tiny',
                              drop_path_rate=backbone.get('drop_path_rate', 0.),
                              out_indices=list(backbone.get('out_indices', [0, 1, 2, 3])))
    model.pop('pretrained', None)
    return cfg, model


def _build(config: str, ours: bool, device: torch.device):
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, init_default_scope
    cfg, model_cfg = _model_cfg(config, ours)
    init_default_scope(cfg.default_scope)
    if not ours:
        import_mmpretrain()
    model = MODELS.build(model_cfg)
    if device.type != 'cuda':
        model = revert_sync_batchnorm(model)
    return cfg, model.to(device)


def _time_model(label, name, model, wrapper, batch, infer_batch, device, warmup, iters
                ) -> list[Timing]:
    model.train()
    times, peak = measure(lambda: model.train_step(batch, wrapper), device, warmup, iters)
    train = Timing(f'{label} train step', name, times, peak)
    model.eval()
    times, peak = measure(lambda: model.test_step(infer_batch), device, warmup, iters)
    return [train, Timing(f'{label} inference', name, times, peak)]


def bench_models(device: torch.device, sizes: dict, amp: bool, warmup: int, iters: int,
                 which: tuple[str, ...] = ('mask_rcnn', 'cascade', 'upernet')) -> list[Timing]:
    from mmengine.optim import build_optim_wrapper
    results = []
    cases = []
    if 'mask_rcnn' in which:
        cases.append(('Mask R-CNN-T', DET_UPSTREAM, 'det'))
    if 'cascade' in which:
        cases.append(('Cascade Mask R-CNN-T', CASCADE_UPSTREAM, 'det'))
    if 'upernet' in which:
        cases.append(('UperNet-T', SEG_UPSTREAM, 'seg'))
    for label, config, task in cases:
        for ours in (True, False):
            name = 'ours' if ours else 'upstream (mmpretrain.ConvNeXt)'
            cfg, model = _build(config, ours, device)
            wrapper_cfg = copy.deepcopy(cfg.optim_wrapper)
            if ours:
                wrapper_cfg.constructor = 'ConvNeXtLayerDecayOptimWrapperConstructor'
            if not (amp and device.type == 'cuda'):
                wrapper_cfg.type = 'OptimWrapper'
                wrapper_cfg.pop('loss_scale', None)
            wrapper = build_optim_wrapper(model, wrapper_cfg)
            if task == 'det':
                batch = det_batch(*sizes['det_train'], sizes['instances'])
                infer_batch = det_batch(*sizes['det_infer'], sizes['instances'])
            else:
                batch = seg_batch(*sizes['seg_train'])
                infer_batch = seg_batch(*sizes['seg_infer'])
            results += _time_model(label, name, model, wrapper, batch, infer_batch, device,
                                   warmup, iters)
            del model, wrapper
            if device.type == 'cuda':
                torch.cuda.empty_cache()
    return results


# -- compiled ops ---------------------------------------------------------------------------
def bench_ops(device: torch.device, sizes: dict, warmup: int, iters: int) -> list[Timing]:
    """mmcv's compiled RoIAlign and NMS (what the detectors run; 'ours' here means the mmcv
    build the setup made) against torchvision's, on the same inputs."""
    from mmcv.ops import RoIAlign, nms
    from torchvision.ops import nms as tv_nms
    from torchvision.ops import roi_align as tv_roi_align
    generator = torch.Generator().manual_seed(0)
    batch, channels, height, width = sizes['roi_feature']
    feats = torch.randn(batch, channels, height, width, generator=generator).to(device)
    count = sizes['rois']
    corner = torch.rand(count, 2, generator=generator) * torch.tensor([width, height]) * 4 * 0.8
    size = torch.rand(count, 2, generator=generator) * 150 + 4
    rois = torch.cat([torch.randint(0, batch, (count, 1), generator=generator).float(), corner,
                      corner + size], dim=1).to(device)
    boxes_count = sizes['nms_boxes']
    corner = torch.rand(boxes_count, 2, generator=generator) * 1000
    boxes = torch.cat([corner, corner + torch.rand(boxes_count, 2, generator=generator) * 100 + 1],
                      dim=1).to(device)
    scores = torch.rand(boxes_count, generator=generator).to(device)
    roi_align = RoIAlign((7, 7), 1 / 4, 0, aligned=True)
    cases = {
        (f'RoIAlign fwd {count} RoIs', 'ours'): lambda: roi_align(feats, rois),
        (f'RoIAlign fwd {count} RoIs', 'torchvision'):
            lambda: tv_roi_align(feats, rois, (7, 7), 1 / 4, 0, aligned=True),
        (f'NMS {boxes_count} boxes', 'ours'): lambda: nms(boxes, scores, 0.7),
        (f'NMS {boxes_count} boxes', 'torchvision'): lambda: tv_nms(boxes, scores, 0.7),
    }
    results = []
    for (case, contender), fn in cases.items():
        times, peak = measure(fn, device, warmup, iters)
        note = 'mmcv.ops' if contender == 'ours' else ''
        results.append(Timing(case, contender, times, peak, note=note))
    return results


def add_ratios(results: list[Timing]) -> None:
    """Ratio of each reference's median to ours (> 1: ours is faster)."""
    ours = {r.case: r for r in results if r.contender == 'ours'}
    for result in results:
        if result.case in ours and result.contender != 'ours':
            ours[result.case].ratios[result.contender] = result.median / ours[result.case].median


def markdown_table(results: list[Timing]) -> str:
    lines = ['| case | contender | median ms | p10-p90 ms | peak GiB | reference / ours |',
             '|---|---|---|---|---|---|']
    for r in results:
        low, high = r.spread
        peak = f'{r.peak_mem_gib:.2f}' if r.peak_mem_gib is not None else '-'
        ratios = ', '.join(f'{k}: {v:.2f}x' for k, v in r.ratios.items()) or '-'
        lines.append(f'| {r.case} | {r.contender} | {r.median:.1f} | {low:.1f}-{high:.1f} | '
                     f'{peak} | {ratios} |')
    return '\n'.join(lines)
