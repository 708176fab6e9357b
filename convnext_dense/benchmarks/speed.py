"""Speed benchmarks: every case of the performance goals side by side, in one process.

``tools/benchmark.py --suite gpu`` runs, on one CUDA device, at the goals' sizes:

* the ConvNeXt-T backbone, fwd+bwd and forward, bf16 channels_last: ours compiled (the
  ``--compile`` path), ours eager, ours with the fused Triton kernels (where available), timm
  ``convnext_tiny`` eager and compiled;
* a train step and inference of Mask R-CNN-T, Cascade Mask R-CNN-T and UperNet-T: ours with the
  switches (``fast_path = dict(bf16=True, channels_last=True, compile=True)``), ours plain (the
  project's config as it ships: fp16 AMP for training) and the upstream route (mmdet's / mmseg's
  own ConvNeXt-T configs with ``mmpretrain.ConvNeXt``, fp16 AMP);

and reports the median, the 10th-90th percentile spread, the peak memory, the ratio of every
contender to the first one of its case, the versions, and a ``torch.profiler`` top-10 of CUDA
kernels of a Mask R-CNN and an UperNet train step for ours and upstream. ``--suite cpu`` runs the
same code at small sizes (the backbone cases on ConvNeXt-atto), with ``aot_eager`` as the
compile backend, as a smoke test: its figures are not goals.
"""
from __future__ import annotations

import copy
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..compat import import_mmpretrain
from ..config import load_config
from ..engine import apply_fast_path, build_model, configure_fast_path
from ..models import ConvNeXt
from ..testing import det_batch, seg_batch

# Ours: the project's configs as users run them (their heads, their layer-decay constructor),
# from the installed package. Upstream: mmdet's / mmseg's own ConvNeXt-T configs
# (mmpretrain.ConvNeXt backbone).
MODEL_CASES = {
    'Mask R-CNN-T': ('convnext_dense::mask_rcnn/mask_rcnn_convnext_t_coco_3x.py',
                     'mmdet::convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py'),
    'Cascade Mask R-CNN-T': (
        'convnext_dense::mask_rcnn/cascade_convnext_t_coco_3x.py',
        'mmdet::convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_'
        'coco.py'),
    'UperNet-T': ('convnext_dense::upernet/convnext_t_ade20k.py',
                  'mmseg::convnext/convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py'),
}
OURS_FAST, OURS_PLAIN, UPSTREAM = 'ours fast', 'ours plain', 'upstream (mmpretrain.ConvNeXt)'


@dataclass
class Timing:
    case: str
    contender: str
    times_ms: list[float]
    peak_mem_gib: float | None = None
    ratios: dict[str, float] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def spread(self) -> tuple[float, float]:
        """The 10th and 90th percentiles (linear interpolation between the timed values)."""
        if len(self.times_ms) == 1:
            return self.times_ms[0], self.times_ms[0]
        deciles = statistics.quantiles(self.times_ms, n=10, method='inclusive')
        return deciles[0], deciles[-1]


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


@dataclass(frozen=True)
class Suite:
    """Sizes and settings of one suite.

    Args:
        backbone: (batch, height, width) of the backbone cases.
        backbone_arch: The ConvNeXt size of the backbone cases (ours and timm's).
        det_train / det_infer: detection batches (800x1344 is the recipe's largest training
            scale; 800x1333 its test scale).
        seg_train / seg_infer: UperNet's 16 crops of 512x512 (8 GPUs x 2) and one 512x2048
            ADE20K-sized image for sliding-window inference.
        compile_backend: ``torch.compile`` backend of the compiled contenders.
        profile: Record the CUDA kernel top-10 (CUDA only).
        det_buckets: The padding buckets of "ours fast" detectors (``--compile``); None: the
            COCO recipe's (:data:`~convnext_dense.models.data_preprocessor.COCO_MS_BUCKETS`).
        roi_feature / rois / nms_boxes: the ops part (:func:`bench_ops`).
        rcnn_samples: RoIs per image in the detectors' R-CNN training batch (every contender's);
            None: the configs' (512).
    """
    name: str
    backbone: tuple[int, int, int]
    det_train: tuple[int, int, int]
    det_infer: tuple[int, int, int]
    seg_train: tuple[int, int, int]
    seg_infer: tuple[int, int, int]
    instances: int
    warmup: int
    iters: int
    compile_backend: str
    profile: bool
    backbone_arch: str = 'tiny'
    roi_feature: tuple[int, int, int, int] = (2, 256, 200, 336)
    rois: int = 512
    nms_boxes: int = 5000
    det_buckets: tuple[tuple[int, int], ...] | None = None
    rcnn_samples: int | None = None


SUITES = {
    'gpu': Suite('gpu', backbone=(2, 800, 1344), det_train=(2, 800, 1344),
                 det_infer=(1, 800, 1333), seg_train=(16, 512, 512), seg_infer=(1, 512, 2048),
                 instances=12, warmup=5, iters=20, compile_backend='inductor', profile=True),
    'cpu': Suite('cpu', backbone=(1, 32, 64), det_train=(1, 96, 128), det_infer=(1, 96, 128),
                 seg_train=(2, 64, 64), seg_infer=(1, 64, 128), instances=2, warmup=1, iters=1,
                 # the COCO buckets would pad the 96x128 batches to 704x960
                 compile_backend='aot_eager', profile=False, det_buckets=((96, 128), ),
                 # the box head's bf16 matrix products over 512 RoIs take most of a minute on
                 # a CPU without bf16 instructions; 64 run the same code
                 rcnn_samples=64,
                 # tracing and compiling 12 blocks instead of T's 18: a third of the part's time
                 backbone_arch='atto'),
}


@dataclass
class SuiteResult:
    suite: str
    environment: dict[str, str]
    timings: list[Timing]
    kernel_tops: dict[str, list[tuple[str, float, int]]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.


def environment(device: torch.device) -> dict[str, str]:
    """The versions and hardware a table was measured with."""
    import importlib.metadata as metadata
    env = dict(device=torch.cuda.get_device_name(device) if device.type == 'cuda' else
               f'{platform.processor() or platform.machine()} CPU, '
               f'{torch.get_num_threads()} threads',
               torch=torch.__version__)
    for name in ('triton', 'mmengine', 'mmcv', 'mmdet', 'mmsegmentation', 'mmpretrain', 'timm',
                 'onedl-mmengine', 'onedl-mmcv', 'onedl-mmdetection', 'onedl-mmsegmentation'):
        try:
            env[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return env


def add_ratios(timings: list[Timing]) -> None:
    """Ratio of every contender's median to the first contender of its case (> 1: the first is
    faster), stored on the first."""
    first: dict[str, Timing] = {}
    for timing in timings:
        if timing.case not in first:
            first[timing.case] = timing
        elif timing.median > 0:
            first[timing.case].ratios[timing.contender] = timing.median / first[timing.case].median


# -- backbone ---------------------------------------------------------------------------------
ARCH_LABELS = dict(tiny='T', small='S', base='B', large='L', xlarge='XL')  # the paper's names

def _timm_features(model: torch.nn.Module) -> Callable:
    def forward(x):
        return model.forward_intermediates(x, intermediates_only=True)
    return forward


def _backbone_contenders(device: torch.device, suite: Suite, skipped: list[str]
                         ) -> dict[str, Callable]:
    contenders: dict[str, Callable] = {}
    ours = ConvNeXt(arch=suite.backbone_arch).to(device).to(memory_format=torch.channels_last)
    # As --compile compiles the detectors' backbone: one fixed input shape, no graph break.
    contenders['ours compiled'] = torch.compile(ours, dynamic=False, fullgraph=True,
                                                backend=suite.compile_backend)
    contenders['ours eager'] = ours
    try:
        from ..ops import fused_kernels_available
    except ImportError:
        fused_kernels_available = None
    if fused_kernels_available is not None and fused_kernels_available(device):
        fused = ConvNeXt(arch=suite.backbone_arch, fused_kernels=True).to(device)
        fused = fused.to(memory_format=torch.channels_last)
        contenders['ours fused kernels, compiled'] = torch.compile(
            fused, dynamic=False, fullgraph=True, backend=suite.compile_backend)
    else:
        skipped.append('ours fused kernels: Triton kernels need a CUDA device with Triton')
    import timm
    reference = timm.create_model(f'convnext_{suite.backbone_arch}').to(device)
    reference = reference.to(memory_format=torch.channels_last)
    contenders['timm eager'] = _timm_features(reference)
    contenders['timm compiled'] = torch.compile(_timm_features(reference),
                                                backend=suite.compile_backend)
    return contenders


def bench_backbone(device: torch.device, suite: Suite, skipped: list[str]) -> list[Timing]:
    batch, height, width = suite.backbone
    x = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(0))
    x = x.to(device).to(memory_format=torch.channels_last)
    autocast = dict(device_type=device.type, dtype=torch.bfloat16)
    shape = f'{batch}x3x{height}x{width} bf16'
    backbone = f'ConvNeXt-{ARCH_LABELS.get(suite.backbone_arch, suite.backbone_arch)}'
    results = []
    for name, model in _backbone_contenders(device, suite, skipped).items():
        def train_step(model=model):
            with torch.autocast(**autocast):
                loss = sum(o.float().square().mean() for o in model(x))
            loss.backward()

        @torch.no_grad()
        def forward(model=model):
            with torch.autocast(**autocast):
                model(x)

        for case, fn in ((f'backbone {backbone} fwd+bwd {shape}', train_step),
                         (f'backbone {backbone} forward {shape}', forward)):
            times, peak = measure(fn, device, suite.warmup, suite.iters)
            results.append(Timing(case, name, times, peak))
    return results


# -- full models ------------------------------------------------------------------------------
def load_model_config(config: str):
    """A project config by ``convnext_dense::`` name or file path (checked as the tools check
    it), or mmdet's and mmseg's own by ``mmdet::`` / ``mmseg::`` name."""
    if config.startswith(('mmdet::', 'mmseg::')):
        from mmengine.hub import get_config
        return get_config(config)
    return load_config(config)


def set_rcnn_samples(model_cfg, num: int) -> None:
    """RoIs sampled per image for the training batch of each R-CNN stage of a detector's model
    config (Cascade's ``train_cfg.rcnn`` is a list of stages)."""
    stages = model_cfg.train_cfg.rcnn
    for stage in stages if isinstance(stages, list) else [stages]:
        stage.sampler.num = num


def build_contender(config: str, contender: str, device: torch.device, suite: Suite):
    """(model, optim wrapper) of one contender."""
    from mmengine.optim import build_optim_wrapper
    cfg = load_model_config(config)
    if contender == UPSTREAM:
        import_mmpretrain()
    if contender == OURS_FAST:
        compile_options = dict(backend=suite.compile_backend)
        if suite.det_buckets is not None:
            compile_options['bucket_sizes'] = suite.det_buckets
        configure_fast_path(cfg, bf16=True, channels_last=True, compile=compile_options)
    if suite.rcnn_samples is not None and 'roi_head' in cfg.model:
        set_rcnn_samples(cfg.model, suite.rcnn_samples)
    if 'size' in cfg.model.data_preprocessor:
        # UperNet pads every image to its training crop: the suite's crop.
        cfg.model.data_preprocessor.size = suite.seg_train[1:]
    # the benchmarks run offline: no pretrained download (build_model leaves it out)
    model = build_model(cfg, device=device)
    wrapper_cfg = copy.deepcopy(cfg.optim_wrapper)
    if device.type != 'cuda' and wrapper_cfg.get('type') == 'AmpOptimWrapper':
        wrapper_cfg.type = 'OptimWrapper'  # fp16 AMP needs CUDA
        wrapper_cfg.pop('loss_scale', None)
    wrapper = build_optim_wrapper(model, wrapper_cfg)
    if contender == OURS_FAST:
        # bf16 inference included: the test step runs under bf16 autocast.
        model = apply_fast_path(model, cfg.fast_path)
    return model, wrapper


def bench_models(device: torch.device, suite: Suite, which: tuple[str, ...] = tuple(MODEL_CASES)
                 ) -> tuple[list[Timing], dict[str, list[tuple[str, float, int]]]]:
    results, tops = [], {}
    for label in which:
        ours_config, upstream_config = MODEL_CASES[label]
        detection = not label.startswith('UperNet')
        if detection:
            batch = det_batch(*suite.det_train, suite.instances)
            infer_batch = det_batch(*suite.det_infer, suite.instances)
        else:
            batch = seg_batch(*suite.seg_train)
            infer_batch = seg_batch(*suite.seg_infer)
        for contender in (OURS_FAST, OURS_PLAIN, UPSTREAM):
            config = upstream_config if contender == UPSTREAM else ours_config
            profile = suite.profile and device.type == 'cuda' and contender != OURS_PLAIN \
                and label != 'Cascade Mask R-CNN-T'
            results += _time_contender(label, contender, build_contender(
                config, contender, device, suite), batch, infer_batch, device, suite,
                tops if profile else None)
            if device.type == 'cuda':
                torch.cuda.empty_cache()
    return results, tops


def _time_contender(label: str, contender: str, built: tuple, batch: dict, infer_batch: dict,
                    device: torch.device, suite: Suite, tops: dict | None) -> list[Timing]:
    model, wrapper = built
    model.train()

    def train_step():
        model.train_step(batch, wrapper)

    times, peak = measure(train_step, device, suite.warmup, suite.iters)
    results = [Timing(f'{label} train step', contender, times, peak)]
    if tops is not None:
        tops[f'{label} train step, {contender}'] = kernel_top(train_step)
    model.eval()

    def infer():
        with torch.no_grad():
            model.test_step(infer_batch)

    times, peak = measure(infer, device, suite.warmup, suite.iters)
    return results + [Timing(f'{label} inference', contender, times, peak)]


def kernel_top(fn: Callable[[], object], steps: int = 3, top: int = 10
               ) -> list[tuple[str, float, int]]:
    """The ``top`` CUDA kernels by total device time over ``steps`` calls: (name, ms per call,
    launches per call)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.device_time_total > 0]
    events.sort(key=lambda e: e.device_time_total, reverse=True)
    return [(e.key, e.device_time_total / 1e3 / steps, e.count // steps) for e in events[:top]]


# -- compiled ops ---------------------------------------------------------------------------
def bench_ops(device: torch.device, suite: Suite) -> list[Timing]:
    """mmcv's compiled RoIAlign and NMS (what the detectors run, as the setup built them)
    against torchvision's, on the same inputs: the stride-4 FPN level of a 2x800x1344 batch
    with 512 RoIs (Mask R-CNN's sampled proposals), and NMS over 5000 boxes (the RPN's pre-NMS
    count)."""
    from mmcv.ops import RoIAlign, nms
    from torchvision.ops import nms as tv_nms
    from torchvision.ops import roi_align as tv_roi_align
    generator = torch.Generator().manual_seed(0)
    batch, channels, height, width = suite.roi_feature
    feats = torch.randn(batch, channels, height, width, generator=generator).to(device)
    count = suite.rois
    corner = torch.rand(count, 2, generator=generator) * torch.tensor([width, height]) * 4 * 0.8
    size = torch.rand(count, 2, generator=generator) * 150 + 4
    rois = torch.cat([torch.randint(0, batch, (count, 1), generator=generator).float(), corner,
                      corner + size], dim=1).to(device)
    boxes_count = suite.nms_boxes
    corner = torch.rand(boxes_count, 2, generator=generator) * 1000
    boxes = torch.cat([corner, corner + torch.rand(boxes_count, 2, generator=generator) * 100 + 1],
                      dim=1).to(device)
    scores = torch.rand(boxes_count, generator=generator).to(device)
    roi_align = RoIAlign((7, 7), 1 / 4, 0, aligned=True)
    cases = {
        (f'RoIAlign fwd {count} RoIs', 'mmcv'): lambda: roi_align(feats, rois),
        (f'RoIAlign fwd {count} RoIs', 'torchvision'):
            lambda: tv_roi_align(feats, rois, (7, 7), 1 / 4, 0, aligned=True),
        (f'NMS {boxes_count} boxes', 'mmcv'): lambda: nms(boxes, scores, 0.7),
        (f'NMS {boxes_count} boxes', 'torchvision'): lambda: tv_nms(boxes, scores, 0.7),
    }
    results = []
    for (case, contender), fn in cases.items():
        times, peak = measure(fn, device, suite.warmup, suite.iters)
        results.append(Timing(case, contender, times, peak))
    return results


# -- the suite --------------------------------------------------------------------------------
PARTS = ('backbone', 'models', 'ops')


def run_suite(name: str, device: torch.device, parts: tuple[str, ...] = ('backbone', 'models'),
              models: tuple[str, ...] = tuple(MODEL_CASES)) -> SuiteResult:
    if name not in SUITES:
        raise ValueError(f'--suite {name}: unknown suite; use one of {sorted(SUITES)}')
    suite = SUITES[name]
    if name == 'gpu' and device.type != 'cuda':
        raise ValueError(f'--suite gpu needs a CUDA device, got --device {device}; use '
                         '--suite cpu to check the code on a CPU')
    begin = time.perf_counter()
    # Detection: RoI-head shapes change every iteration and autotuning each new shape made a
    # Mask R-CNN step about 8x slower (mmdet's default is off as well).
    torch.backends.cudnn.benchmark = False
    result = SuiteResult(name, environment(device), [])
    if 'backbone' in parts:
        result.timings += bench_backbone(device, suite, result.skipped)
    if 'models' in parts:
        timings, tops = bench_models(device, suite, models)
        result.timings += timings
        result.kernel_tops.update(tops)
    if 'ops' in parts:
        result.timings += bench_ops(device, suite)
    # One block of rows per case, contenders in the order they ran (the first is the one
    # ratios are given to).
    cases: dict[str, int] = {}
    for timing in result.timings:
        cases.setdefault(timing.case, len(cases))
    result.timings.sort(key=lambda timing: cases[timing.case])
    add_ratios(result.timings)
    result.seconds = time.perf_counter() - begin
    return result


def to_markdown(result: SuiteResult) -> str:
    env = ', '.join(f'{k} {v}' for k, v in result.environment.items())
    suite = SUITES[result.suite]
    lines = [f'Measured with `python tools/benchmark.py --suite {result.suite}` '
             f'({suite.iters} timed iterations after {suite.warmup} warm-up, suite run '
             f'{result.seconds:.0f} s): {env}.', '',
             '| case | contender | median ms | p10-p90 ms | peak GiB | contender / first |',
             '|---|---|---|---|---|---|']
    for timing in result.timings:
        low, high = timing.spread
        peak = f'{timing.peak_mem_gib:.2f}' if timing.peak_mem_gib is not None else '-'
        ratios = ', '.join(f'{k}: {v:.2f}x' for k, v in timing.ratios.items()) or '-'
        lines.append(f'| {timing.case} | {timing.contender} | {timing.median:.1f} | '
                     f'{low:.1f}-{high:.1f} | {peak} | {ratios} |')
    for skipped in result.skipped:
        lines.append(f'\nNot run: {skipped}.')
    for title, kernels in result.kernel_tops.items():
        lines += ['', f'Top CUDA kernels, {title}:', '',
                  '| kernel | ms per step | launches per step |', '|---|---|---|']
        lines += [f'| `{name[:90]}` | {ms:.2f} | {count} |' for name, ms, count in kernels]
    return '\n'.join(lines)


BEGIN, END = '<!-- benchmark-suite:{}:begin -->', '<!-- benchmark-suite:{}:end -->'


def write_section(doc: Path, begin: str, end: str, text: str) -> None:
    """Replace what ``doc`` holds between the marker lines ``begin`` and ``end`` by ``text``."""
    content = doc.read_text()
    if begin not in content or end not in content:
        raise ValueError(f'{doc} has no {begin} ... {end} section to write the table into')
    head, rest = content.split(begin, 1)
    tail = rest.split(end, 1)[1]
    doc.write_text(f'{head}{begin}\n{text}\n{end}{tail}')


def write_into(doc: Path, result: SuiteResult) -> None:
    """Replace the suite's section of ``doc`` (between its markers) by the new table."""
    write_section(doc, BEGIN.format(result.suite), END.format(result.suite), to_markdown(result))
