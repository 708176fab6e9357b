"""The installation check behind ``tools/check_install.py``: the paper configs trained, resumed and
evaluated end to end on synthetic data, with the commands users run, on every visible GPU.

For each model (Mask R-CNN-T, Cascade Mask R-CNN-T, UperNet-T, UperNet V2-B; :data:`CASES`) it
writes a synthetic dataset in the config's layout (COCO or ADE20K, images of the sizes the
recipe trains on: :mod:`convnext_dense.testing.datasets`, the speed benchmark's images and
sizes), derives a config from the paper config (:func:`check_config`: data roots, a short
schedule, no pretrained download; each change is listed in the derived file's header), and runs
three steps through ``tools/dist_train.sh`` / ``tools/dist_test.sh`` (torchrun,
``--launcher pytorch``: NCCL on GPUs, gloo over CPU processes without one). Those scripts are the
checkout's: ``tools/check_install.py`` names their folder (:func:`tools_launcher`); the configs
come from the installed package (``convnext_dense::`` names).

1. **plain**: ``tools/train.py`` trains the config as shipped (fp16 AMP on GPUs) for
   ``save_at + iters`` iterations and checkpoints after ``save_at``.
2. **fast**: ``tools/train.py --bf16 --channels-last --compile --resume <that checkpoint>`` trains
   the same iterations after it. Its first iteration starts from the plain run's weights,
   optimizer state, batch and random state at that iteration (``--resume`` restores all of them),
   so its losses must equal the plain run's within bf16 rounding: ``eps(bf16) x depth x |loss|``
   with ``depth`` the model's convolutions and Linear layers, each of which rounds its inputs
   to bf16 under autocast (the derivation of ``tests/numerics.py``; fp16's rounding of the
   plain path is 8x smaller and within the same bound). Resuming the fast path from the plain
   checkpoint also proves that a run can switch paths, and keeps every model at three
   launches (see "Budget").
3. **evaluate**: ``tools/test.py`` (plain) on the fast run's last checkpoint: the fast path's
   checkpoints load into the plain model, and COCO AP / mIoU come out finite.

A step fails on a non-zero exit or a timeout (a hung collective), a non-finite loss, iterations
missing from the log, fewer processes than asked for, a missing checkpoint, a fast run that did
not resume where the plain one saved or that fell back to eager execution, first-iteration
losses beyond the tolerance, or a missing or non-finite metric. The steps after a failed one are
not run (each needs its output); the other models still are, and ``tools/check_install.py``
exits with 1 naming the first failure.

Budget (``--sizes full``, one H100, every model: the 10-minute target, not measured on a GPU
yet): 3 launches per model at ~15 s of start-up each (imports, CUDA and NCCL, model, data
workers): 3 min; one inductor compile per model of the training graph (the detectors' backbone
on one 800x1344 bucket, UperNet's encoder and heads at 512x512): ~1-1.5 min each for Mask
R-CNN-T, UperNet-T and V2-B, and Cascade-T reuses Mask R-CNN-T's backbone from inductor's cache
(same graph and shape): ~4 min; 10 training iterations per path (checkpoint after 2, so 9 timed
plain iterations, 7 fast ones after the compiled one) and 2 evaluated images per model:
under 1 min. Evaluation runs plain, which saves an inference compile (~1 min) per model.
"""
from __future__ import annotations

import copy
import glob
import json
import math
import os
import os.path as osp
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import check_cfg_options
from ..engine import build_model
from . import speed

BEGIN, END = '<!-- install-check:begin -->', '<!-- install-check:end -->'


@dataclass(frozen=True)
class Case:
    """One model the check trains: its ``--models`` name, its label and its paper config."""
    name: str
    label: str
    config: str


CASES = {case.name: case for case in (
    Case('mask_rcnn', 'Mask R-CNN-T', 'convnext_dense::mask_rcnn/mask_rcnn_convnext_t_coco_3x.py'),
    Case('cascade', 'Cascade Mask R-CNN-T',
         'convnext_dense::mask_rcnn/cascade_convnext_t_coco_3x.py'),
    Case('upernet', 'UperNet-T', 'convnext_dense::upernet/convnext_t_ade20k.py'),
    Case('upernet_v2_b', 'UperNet V2-B', 'convnext_dense::upernet/convnext_v2_b_ade20k.py'),
)}

PLAIN, FAST, EVALUATE = 'plain', '--bf16 --channels-last --compile', 'tools/test.py'
FAST_FLAGS = ('--bf16', '--channels-last', '--compile')
TOY_ARCH = dict(depths=[1, 1, 1, 1], dims=[40, 80, 160, 320])  # atto's widths, a block a stage
# The tolerance's rounding: bf16 (the fast path) against fp16 AMP or fp32 (the plain path).
BF16_EPS = torch.finfo(torch.bfloat16).eps


@dataclass(frozen=True)
class Plan:
    """Sizes and lengths of one ``--sizes`` choice.

    Args:
        suite: The speed benchmark's suite whose sizes the data takes: detection images
            ``det_train`` (also the one padding bucket of both paths) with ``instances`` boxes,
            ADE20K images ``seg_infer``, UperNet crops ``seg_train``.
        save_at: The plain run checkpoints after this iteration; the fast run resumes there.
        iters: Iterations of each path after ``save_at``.
        compile_backend: ``torch.compile`` backend of the fast path.
        toy: Shrink the models (:data:`TOY_ARCH`, narrow necks and heads, fewer sampled RoIs)
            and the pipelines' sizes to the suite's, to run on CPUs.
        num_workers: Data workers per process (None: the config's). At least 1: with none, the
            pipeline draws from the main process's generators, which ``--resume`` restores
            after loading the next batch, so the compared batch would differ.
    """
    name: str
    suite: speed.Suite
    save_at: int
    iters: int
    compile_backend: str
    toy: bool
    num_workers: int | None


PLANS = {
    'full': Plan('full', speed.SUITES['gpu'], save_at=2, iters=8, compile_backend='inductor',
                 toy=False, num_workers=None),
    'toy': Plan('toy', speed.SUITES['cpu'], save_at=1, iters=2, compile_backend='aot_eager',
                toy=True, num_workers=1),
}


# -- the derived configs ----------------------------------------------------------------------
def _first_branch(pipeline: list) -> list:
    """The pipeline with each ``RandomChoice`` replaced by its first branch. The COCO recipe's
    second branch (resize, crop, resize) can turn a landscape batch portrait, which the one
    landscape padding bucket does not hold: the backbone would compile again per shape."""
    result = []
    for transform in pipeline:
        if transform['type'] == 'RandomChoice':
            result.extend(copy.deepcopy(transform['transforms'][0]))
        else:
            result.append(transform)
    return result


def _resize_to(pipeline: list, scale: tuple[int, int], crop: tuple[int, int] | None) -> None:
    """Point every resize of ``pipeline`` at ``scale`` (W, H) and its crop at ``crop``."""
    for transform in pipeline:
        kind = transform['type']
        if kind in ('Resize', 'RandomResize'):
            transform['scale'] = scale
        elif kind == 'RandomChoiceResize':
            transform['scales'] = [scale]
        elif kind == 'RandomCrop' and crop is not None:
            transform['crop_size'] = crop
        elif any(key in transform for key in ('scale', 'scales', 'scale_factor', 'crop_size')):
            raise ValueError(f'pipeline step {kind}: the toy sizes know Resize, RandomResize, '
                             'RandomChoiceResize and RandomCrop; add this one to _resize_to')


def _as_list(node) -> list:
    return node if isinstance(node, list) else [node]


def _toy_detector(model, suite: speed.Suite) -> None:
    # Narrow FPN and heads as well: on a CPU without bf16 instructions (AVX2 only) a bf16
    # convolution runs 10-40x slower than fp32, which the fast path's RoI heads would pay.
    channels, fc_channels = 32, 64
    model.backbone.arch = copy.deepcopy(TOY_ARCH)
    model.neck.in_channels = list(TOY_ARCH['dims'])
    model.neck.out_channels = channels
    model.rpn_head.in_channels = model.rpn_head.feat_channels = channels
    roi_head = model.roi_head
    for extractor in (*_as_list(roi_head.bbox_roi_extractor),
                      *_as_list(roi_head.mask_roi_extractor)):
        extractor.out_channels = channels
    for head in _as_list(roi_head.bbox_head):
        head.in_channels, head.fc_out_channels = channels, fc_channels
        if 'conv_out_channels' in head:
            head.conv_out_channels = channels
    for head in _as_list(roi_head.mask_head):
        head.in_channels = head.conv_out_channels = channels
    speed.set_rcnn_samples(model, 32)  # of 512
    # at most 100 proposals per image to test (Cascade runs 3 box heads on each)
    model.test_cfg.rpn.nms_pre = model.test_cfg.rpn.max_per_img = 100


def _toy_segmentor(model, suite: speed.Suite) -> None:
    dims = list(TOY_ARCH['dims'])
    model.backbone.arch = copy.deepcopy(TOY_ARCH)
    model.decode_head.in_channels, model.decode_head.channels = dims, 64
    model.auxiliary_head.in_channels, model.auxiliary_head.channels = dims[2], 32
    crop = tuple(suite.seg_train[1:])
    model.data_preprocessor.size = crop
    model.test_cfg.crop_size = crop
    model.test_cfg.stride = tuple(max(side * 2 // 3, 1) for side in crop)


def check_config(case: Case, plan: Plan, data_root: str, cfg_options: dict | None = None,
                 paper=None):
    """The config the check runs for ``case``: the paper config (``paper``, loaded here when
    None) with the changes below, each listed in the returned notes (the header of the written
    file), then ``cfg_options``.

    Returns:
        ``(config, notes)``.
    """
    cfg = copy.deepcopy(paper) if paper is not None else speed.load_model_config(case.config)
    suite = plan.suite
    detection = cfg.default_scope == 'mmdet'
    notes = [f'data: synthetic, under {data_root}',
             'model.backbone.init_cfg=None: random weights, nothing downloaded',
             'model.backbone.drop_path_rate=0: inductor draws its own random numbers, so '
             'stochastic depth would drop other blocks on the fast path than on the plain one']
    model = cfg.model
    if 'data_root' in cfg:
        cfg.data_root = data_root  # the base files' variable, for whoever reads the file
    model.backbone.init_cfg = None
    model.backbone.drop_path_rate = 0.0
    for loader in ('train_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data_root
        if plan.num_workers is not None:
            cfg[loader].num_workers = plan.num_workers
            cfg[loader].persistent_workers = plan.num_workers > 0
    if detection:
        cfg.test_evaluator.ann_file = osp.join(data_root, 'annotations/instances_val2017.json')
        pipeline = _first_branch(cfg.train_dataloader.dataset.pipeline)
        cfg.train_dataloader.dataset.pipeline = pipeline
        bucket = tuple(suite.det_train[1:])
        model.data_preprocessor.type = 'BucketDetDataPreprocessor'
        model.data_preprocessor.bucket_sizes = [bucket]
        model.test_cfg.rcnn.score_thr = 0.0
        notes += ['train pipeline: the multi-scale branch of the recipe\'s RandomChoice only (the '
                  'crop branch can make a batch portrait)',
                  f'model.data_preprocessor: BucketDetDataPreprocessor with one bucket {bucket} '
                  'on both paths, so that they see the same padded batches and --compile '
                  'compiles once',
                  'model.test_cfg.rcnn.score_thr=0: an untrained model scores below 0.05, and '
                  'COCO AP needs detections']
    max_iters = plan.save_at + plan.iters
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False,
                                        interval=max_iters, save_begin=plan.save_at,
                                        save_last=True, max_keep_ckpts=-1)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1, log_metric_by_epoch=False)
    cfg.log_processor = dict(type='LogProcessor', window_size=1, by_epoch=False)
    cfg.randomness = dict(seed=0)
    notes += [f'train_cfg: {max_iters} iterations (IterBasedTrainLoop), no validation; '
              f'checkpoints after iteration {plan.save_at} and at the end',
              'every iteration logged as it is (LoggerHook interval 1, LogProcessor window 1)',
              'randomness.seed=0: both paths draw the same data order and augmentations']
    if plan.toy:
        det_scale = (suite.det_train[2], suite.det_train[1])  # (W, H)
        seg_scale = (suite.seg_infer[2], suite.seg_infer[1])
        for loader in ('train_dataloader', 'test_dataloader'):
            _resize_to(cfg[loader].dataset.pipeline, det_scale if detection else seg_scale,
                       None if detection else tuple(suite.seg_train[1:]))
        (_toy_detector if detection else _toy_segmentor)(model, suite)
        notes.append(f'toy sizes: backbone arch {TOY_ARCH}, narrower heads, fewer sampled RoIs, '
                     f'images resized to {det_scale if detection else seg_scale} (W, H)')
    if cfg_options:
        check_cfg_options(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
        notes.append(f'--cfg-options {cfg_options}')
    return cfg, notes


def write_config(cfg, notes: list[str], case: Case, path: Path) -> None:
    header = [f'# Written by tools/check_install.py: {case.config} ({case.label}) with:']
    header += [f'# - {note}' for note in notes]
    path.write_text('\n'.join(header) + '\n' + cfg.pretty_text)


def dataset_classes(cfg) -> tuple[str, ...]:
    """The class names of the config's training dataset type (mmdet's ``CocoDataset`` keeps only
    the annotations of its own class names; mmseg's ``ADE20KDataset`` has 150)."""
    import importlib
    registry = importlib.import_module(f'{cfg.default_scope}.registry').DATASETS
    return tuple(registry.get(cfg.train_dataloader.dataset.type).METAINFO['classes'])


def write_data(cfg, plan: Plan, root: str, processes: int) -> None:
    """The synthetic set the config reads at ``root``: one image per process and iteration (no
    epoch ends in the run, so the resumed run's data order cannot drift), one test image per
    process (two at least)."""
    from ..testing.datasets import write_ade_like, write_coco_like
    suite = plan.suite
    train = processes * cfg.train_dataloader.batch_size * (plan.save_at + plan.iters)
    counts = (train, max(processes, 2))
    classes = dataset_classes(cfg)
    if cfg.default_scope == 'mmdet':
        write_coco_like(root, counts, *suite.det_train[1:], suite.instances, classes)
    else:
        write_ade_like(root, counts, *suite.seg_infer[1:], len(classes))


def rounding_depth(model: torch.nn.Module) -> int:
    """The convolutions and Linear layers of ``model``: under bf16 autocast each rounds its inputs
    and weights to bf16 (``tests/numerics.py``'s ``rounding_depth``)."""
    return sum(isinstance(layer, (torch.nn.modules.conv._ConvNd, torch.nn.Linear))
               for layer in model.modules())


def loss_tolerance(reference: float, depth: int) -> float:
    """How far the fast path's value of a loss may be from the plain path's ``reference``:
    ``eps(bf16) x depth x |reference|`` (``tests/numerics.py``'s ``tolerance``)."""
    return BF16_EPS * depth * abs(reference)


# -- reading the runs -------------------------------------------------------------------------
def _newest(pattern: str) -> str | None:
    paths = sorted(glob.glob(pattern))
    return paths[-1] if paths else None


def read_train_log(work_dir: str) -> list[dict]:
    """The training iterations logged in ``work_dir``'s newest run (``vis_data/scalars.json``,
    one JSON line per iteration on rank 0), by iteration."""
    path = _newest(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    if path is None:
        return []
    records = []
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            if 'loss' in record and 'step' in record:
                records.append(record)
    return sorted(records, key=lambda record: record['step'])


def read_test_metrics(work_dir: str) -> dict:
    """The metrics ``tools/test.py`` logged in ``work_dir``'s newest run
    (``TIMESTAMP/TIMESTAMP.json``)."""
    path = _newest(osp.join(work_dir, '*', '[0-9]*_[0-9]*.json'))
    if path is None:
        return {}
    with open(path) as f:
        return json.loads(f.read().splitlines()[-1])


def loss_terms(record: dict) -> dict[str, float]:
    """The loss terms of a logged iteration (the values mmengine sums into ``loss``, and it)."""
    return {key: value for key, value in record.items() if 'loss' in key}


def first_non_finite(records: list[dict]) -> str | None:
    for record in records:
        bad = {key: value for key, value in loss_terms(record).items()
               if not math.isfinite(value)}
        if bad:
            terms = ', '.join(f'{key}={value}' for key, value in bad.items())
            return f'a loss is not finite at iteration {record["step"]}: {terms}'
    return None


def compare_losses(plain: dict, fast: dict, depth: int) -> tuple[float, str | None]:
    """The fast path's loss terms against the plain path's at one iteration: (the largest
    |difference| / tolerance, the first term beyond its tolerance or None)."""
    plain_terms, fast_terms = loss_terms(plain), loss_terms(fast)
    if plain_terms.keys() != fast_terms.keys():
        return math.inf, (f'the two paths log other loss terms: plain {sorted(plain_terms)}, '
                          f'fast {sorted(fast_terms)}')
    worst = 0.0
    for key, reference in plain_terms.items():
        difference = abs(fast_terms[key] - reference)
        limit = loss_tolerance(reference, depth)
        ratio = difference / limit if limit > 0 else 0.0 if difference == 0 else math.inf
        worst = max(worst, math.inf if math.isnan(ratio) else ratio)
        if not difference <= limit:  # a NaN on either path included
            return worst, (f'at iteration {plain["step"]}, {key} is {fast_terms[key]:.6g} on '
                           f'the fast path and {reference:.6g} on the plain one: |difference| '
                           f'{difference:.3g} > eps(bf16) x depth {depth} x {abs(reference):.3g}'
                           f' = {limit:.3g}')
    return worst, None


# An exception line of a rank, e.g. "convnext_dense.engine.fail_safe.NonFiniteTrainingError: ..."
# (with torchrun's "[rank0]: " prefix where it adds one); torchrun's own ChildFailedError, which
# only says that a rank failed, is left out.
ERROR_LINE = re.compile(r'^(?:\[rank\d+\]:\s*)?((?:[\w.]+\.)?\w*(?:Error|Exception)\b.*)$',
                        re.MULTILINE)
EAGER_LINES = ('ran eagerly', 'larger than every bucket')
# How the detectors' RoIAlign/NMS route is logged (``convnext_dense/ops/roi_ops.py``: the config
# key ``roi_ops`` and the kernels it picked per device type); shown under the table.
ROI_OPS_LINE = re.compile(r' - mmengine - \w+ - (roi_ops\b.*)$', re.MULTILINE)


def error_line(log: str) -> str:
    """The last exception line of a failed run's log, or its last line."""
    errors = [line.strip() for line in ERROR_LINE.findall(log)
              if 'ChildFailedError' not in line]
    if errors:
        return errors[-1]
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return lines[-1] if lines else 'no output'


def _message(line: str) -> str:
    """A log line without mmengine's ``TIMESTAMP - name - LEVEL - `` prefix."""
    return line.split(' - ')[-1].strip()


# -- running ----------------------------------------------------------------------------------
def say(line: str) -> None:
    print(line, flush=True)  # progress shows as it happens, also through a pipe


@dataclass
class StepResult:
    """One step of one model: what ran, what it measured, and its verdict (``failure`` None:
    passed; ``skipped``: not run)."""
    case: Case
    path: str
    processes: int
    batch: int  # images per process and iteration
    seconds: float = 0.
    failure: str | None = None
    skipped: bool = False
    details: list[str] = field(default_factory=list)
    timing: speed.Timing | None = None
    log: str = ''

    @property
    def ok(self) -> bool:
        return self.failure is None and not self.skipped

    def fail(self, message: str) -> StepResult:
        if self.failure is None:
            self.failure = message
        return self


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


# Runs a script of the tools folder (``dist_train.sh``, ``dist_test.sh``) with its arguments,
# its output in the log file, a timeout in seconds and extra environment variables; returns
# (exit status or None on timeout, seconds).
Launcher = Callable[[str, Sequence[str], str, float, dict | None], tuple[int | None, float]]


def tools_launcher(tools_dir: str | Path) -> Launcher:
    """The launcher of the scripts in ``tools_dir`` (a checkout's ``tools/``: the check runs the
    commands users run, which an installed package does not hold)."""
    tools_dir = Path(tools_dir)
    for script in ('dist_train.sh', 'dist_test.sh'):
        if not (tools_dir / script).is_file():
            raise FileNotFoundError(f'tools_dir={str(tools_dir)!r} has no {script}')

    def launch(script: str, args: Sequence[str], log: str, timeout: float,
               env: dict | None = None) -> tuple[int | None, float]:
        """Run ``bash TOOLS/<script> args`` (torchrun on a free port) with its output in
        ``log``. A run past ``timeout`` is killed with its whole process group (torchrun and
        its ranks)."""
        env = dict(os.environ, **(env or {}), PORT=str(free_port()), PYTHON=sys.executable)
        begin = time.perf_counter()
        with open(log, 'w') as out:
            process = subprocess.Popen(['bash', str(tools_dir / script), *map(str, args)],
                                       cwd=osp.dirname(log), stdout=out,
                                       stderr=subprocess.STDOUT, env=env,
                                       start_new_session=True)
            try:
                status = process.wait(timeout)
            except subprocess.TimeoutExpired:
                status = None
            finally:  # a timeout, or Ctrl-C (which the run's own session does not receive)
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        return status, time.perf_counter() - begin

    return launch


def _timing(case: Case, path: str, records: list[dict]) -> speed.Timing | None:
    """Iteration times after the first of the run (start-up, the compile, cuDNN's first calls),
    and the peak memory rank 0 logged (mmengine logs ``max_memory_allocated`` in MiB on CUDA)."""
    times = [record['time'] * 1e3 for record in records[1:] if 'time' in record]
    memory = [record['memory'] for record in records if 'memory' in record]
    if not times:
        return None
    return speed.Timing(case.label, path, times, max(memory) / 1024 if memory else None)


def _read_log(result: StepResult) -> str:
    try:
        with open(result.log, errors='replace') as f:
            return f.read()
    except OSError:
        return ''


def _check_processes(result: StepResult, log: str) -> None:
    # mmengine's runtime environment line: the world size the run initialised
    if f'GPU number: {result.processes}' not in log:
        result.fail(f'the run did not report {result.processes} processes ("GPU number: '
                    f'{result.processes}" in its log); see {result.log}')


def _check_run(result: StepResult, status: int | None, timeout: float,
               records: list[dict], expected: range) -> None:
    """The verdicts on a training run, in the order that names the cause first."""
    log = _read_log(result)
    if status is None:
        result.fail(f'timed out after {timeout:.0f} s (killed; a hung collective or a stuck '
                    f'data worker?); see {result.log}')
    non_finite = first_non_finite(records)
    if non_finite:
        result.fail(non_finite)
    if status:
        result.fail(f'tools/train.py exited with status {status}: {error_line(log)}')
    logged = [record['step'] for record in records]
    if expected.start > 1 and logged and logged[0] != expected.start:
        result.fail(f'did not resume from iteration {expected.start - 1}: its first iteration '
                    f'is {logged[0]}')
    if logged != list(expected):
        result.fail(f'the log holds iterations {logged}, expected {expected.start}..'
                    f'{expected.stop - 1}; see {result.log}')
    _check_processes(result, log)
    result.timing = _timing(result.case, result.path, records)


class InstallCheck:
    """Runs the steps of every case; see the module docstring."""

    def __init__(self, plan: Plan, processes: int, work_dir: str, launcher: Launcher,
                 device: str = 'cuda', timeout: float = 900., cfg_options: dict | None = None,
                 echo: Callable[[str], None] = say) -> None:
        self.plan = plan
        self.processes = processes
        self.work_dir = work_dir
        self.timeout = timeout
        self.cfg_options = cfg_options
        self.launcher = launcher
        self.echo = echo
        # On a GPU machine checked with --device cpu the ranks must not see the GPUs.
        self.env = {'CUDA_VISIBLE_DEVICES': ''} if device == 'cpu' else {}
        self.results: list[StepResult] = []
        self.routes: dict[str, str] = {}
        self._data: dict[str, str] = {}

    def _data_root(self, cfg) -> str:
        scope = cfg.default_scope
        if scope not in self._data:
            root = osp.join(self.work_dir, 'data', 'coco' if scope == 'mmdet' else 'ade')
            begin = time.perf_counter()
            write_data(cfg, self.plan, root, self.processes)
            self.echo(f'synthetic {"COCO" if scope == "mmdet" else "ADE20K"}-layout data in '
                      f'{root} ({time.perf_counter() - begin:.0f} s)')
            self._data[scope] = root
        return self._data[scope]

    def run_case(self, case: Case) -> list[StepResult]:
        plan = self.plan
        folder = osp.join(self.work_dir, case.name)
        os.makedirs(folder, exist_ok=True)
        paper = speed.load_model_config(case.config)
        cfg, notes = check_config(case, plan, self._data_root(paper), self.cfg_options, paper)
        config = Path(folder) / 'config.py'
        write_config(cfg, notes, case, config)
        depth = rounding_depth(build_model(cfg, device='cpu'))
        batch = cfg.train_dataloader.batch_size
        steps = [StepResult(case, path, self.processes, batch,
                            log=osp.join(folder, f'{name}.log'))
                 for path, name in ((PLAIN, 'plain'), (FAST, 'fast'), (EVALUATE, 'test'))]
        plain, fast, evaluate = steps
        last = plan.save_at + plan.iters
        saved = osp.join(folder, 'plain', f'iter_{plan.save_at}.pth')
        final = osp.join(folder, 'fast', f'iter_{last}.pth')

        plain_records = self._train(plain, config, osp.join(folder, 'plain'), [],
                                    range(1, last + 1))
        if plain.failure is None and not osp.isfile(saved):
            plain.fail(f'no checkpoint {saved} after iteration {plan.save_at}')
        if plain.failure is None:
            plain.details.append(f'losses finite, saved iteration {plan.save_at}')
        route = ROI_OPS_LINE.findall(_read_log(plain))
        if route:
            self.routes[case.label] = route[0].strip()

        if plain.failure is not None:
            return self._finish(steps, skip=(fast, evaluate), after=plain)
        options = [] if plan.compile_backend == 'inductor' else \
            ['--cfg-options', f'fast_path.compile.backend={plan.compile_backend}']
        fast_records = self._train(fast, config, osp.join(folder, 'fast'),
                                   ['--resume', saved, *FAST_FLAGS, *options],
                                   range(plan.save_at + 1, last + 1))
        for line in _read_log(fast).splitlines():
            if any(marker in line for marker in EAGER_LINES):
                fast.fail(f'torch.compile fell back to eager execution: {_message(line)}')
        compared = [r for r in plain_records if r['step'] == plan.save_at + 1]
        if fast_records and compared and fast_records[0]['step'] == plan.save_at + 1:
            worst, mismatch = compare_losses(compared[0], fast_records[0], depth)
            if mismatch:
                fast.fail(mismatch)
            else:
                fast.details.append(
                    f'resumed at {plan.save_at}; iteration {plan.save_at + 1} losses within '
                    f'bf16 tolerance (largest difference {worst:.0%} of it, depth {depth})')
        if fast.failure is None and not osp.isfile(final):
            fast.fail(f'no checkpoint {final} at the end of the run')

        if fast.failure is not None:
            return self._finish(steps, skip=(evaluate, ), after=fast)
        self._evaluate(evaluate, config, final, osp.join(folder, 'test'),
                       cfg.default_scope == 'mmdet')
        return self._finish(steps)

    def _train(self, result: StepResult, config: Path, work_dir: str, args: list[str],
               expected: range) -> list[dict]:
        self.echo(f'[{result.case.label}] {result.path}: tools/dist_train.sh '
                  f'{config} {self.processes} {" ".join(args)}')
        status, result.seconds = self.launcher(
            'dist_train.sh', [config, self.processes, '--work-dir', work_dir, *args],
            result.log, self.timeout, self.env)
        records = read_train_log(work_dir)
        _check_run(result, status, self.timeout, records, expected)
        return records

    def _evaluate(self, result: StepResult, config: Path, checkpoint: str, work_dir: str,
                  detection: bool) -> None:
        self.echo(f'[{result.case.label}] evaluate: tools/dist_test.sh {config} {checkpoint} '
                  f'{self.processes}')
        status, result.seconds = self.launcher(
            'dist_test.sh', [config, checkpoint, self.processes, '--work-dir', work_dir],
            result.log, self.timeout, self.env)
        log = _read_log(result)
        if status is None:
            result.fail(f'timed out after {self.timeout:.0f} s; see {result.log}')
        elif status:
            result.fail(f'tools/test.py exited with status {status}: {error_line(log)}')
        _check_processes(result, log)
        metrics = read_test_metrics(work_dir)
        names = ('coco/bbox_mAP', 'coco/segm_mAP') if detection else ('mIoU', )
        for name in names:
            value = metrics.get(name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                result.fail(f'tools/test.py reported {name}={value!r}; see {result.log}')
        if result.failure is None:
            result.details.append(', '.join(f'{name} {metrics[name]:g}' for name in names))
        if 'time' in metrics:
            result.timing = speed.Timing(result.case.label, result.path,
                                         [metrics['time'] * 1e3])
        result.batch = 1  # the configs test one image per process and iteration

    def _finish(self, steps: list[StepResult], skip: tuple[StepResult, ...] = (),
                after: StepResult | None = None) -> list[StepResult]:
        # Each step starts from the previous one's checkpoint, and the fast path is measured
        # against the plain one: after a failure the rest would only repeat it.
        for step in skip:
            step.skipped, step.failure = True, f'not run: the {after.path} step failed'
        for step in steps:
            verdict = 'ok' if step.ok else ('not run' if step.skipped else 'FAILED')
            self.echo(f'[{step.case.label}] {step.path}: {verdict} ({step.seconds:.0f} s)'
                      + (f': {step.failure}' if step.failure and not step.skipped else ''))
            if step.failure and not step.skipped:
                tail = _read_log(step).splitlines()[-15:]
                self.echo('\n'.join(f'    | {line}' for line in tail))
        self.results.extend(steps)
        return steps

    @property
    def first_failure(self) -> StepResult | None:
        return next((step for step in self.results if step.failure and not step.skipped), None)


# -- the report -------------------------------------------------------------------------------
def format_table(results: list[StepResult]) -> str:
    lines = ['| model | path | GPUs | s/iter | images/s | peak memory | result |',
             '|---|---|---|---|---|---|---|']
    for step in results:
        timing = step.timing
        seconds = timing.median / 1e3 if timing else None
        rate = f'{step.processes * step.batch / seconds:.1f}' if seconds else '-'
        peak = f'{timing.peak_mem_gib:.1f} GiB' if timing and timing.peak_mem_gib else '-'
        if step.skipped:
            verdict = step.failure
        elif step.failure:
            verdict = f'**FAILED**: {step.failure}'
        else:
            verdict = 'ok' + (f': {"; ".join(step.details)}' if step.details else '')
        lines.append(f'| {step.case.label} | {step.path} | {step.processes} | '
                     f'{f"{seconds:.3f}" if seconds else "-"} | {rate} | {peak} | {verdict} |')
    return '\n'.join(lines)


def to_markdown(check: InstallCheck, environment: dict[str, str], seconds: float) -> str:
    env = ', '.join(f'{k} {v}' for k, v in environment.items())
    plan = check.plan
    lines = [f'Measured with `python tools/check_install.py --sizes {plan.name}` on '
             f'{check.processes} process{"es" if check.processes > 1 else ""} ({seconds:.0f} s '
             f'in all): {env}. Iterations 1-{plan.save_at + plan.iters} plain, '
             f'{plan.save_at + 1}-{plan.save_at + plan.iters} fast (resumed after '
             f'{plan.save_at}); s/iter: the median over each run\'s iterations after its first; '
             'peak memory: rank 0\'s.', '',
             format_table(check.results)]
    for label, route in check.routes.items():
        lines.append(f'\nRoI ops, {label}: {route}')
    return '\n'.join(lines)


def to_json(check: InstallCheck) -> dict:
    steps = []
    for step in check.results:
        timing = step.timing
        steps.append(dict(model=step.case.label, path=step.path, processes=step.processes,
                          seconds=round(step.seconds, 1), ok=step.ok, skipped=step.skipped,
                          failure=step.failure, details=step.details, log=step.log,
                          iteration_ms=timing.times_ms if timing else [],
                          peak_memory_gib=timing.peak_mem_gib if timing else None))
    return dict(sizes=check.plan.name, processes=check.processes, routes=check.routes,
                steps=steps)


def preflight(device: str, processes: int) -> list[str]:
    """What is checked before anything runs, as lines for the report; raises ValueError naming
    what is missing."""
    import torch.distributed as dist
    lines = []
    if not dist.is_available():
        raise ValueError('this torch build has no torch.distributed; install a torch wheel '
                         'from pytorch.org')
    if device == 'cuda':
        if not torch.cuda.is_available():
            raise ValueError('--device cuda: no CUDA device is visible (driver, '
                             'CUDA_VISIBLE_DEVICES, a CPU-only torch?); --device cpu runs the '
                             'check at toy sizes on the CPU')
        count = torch.cuda.device_count()
        if processes > count:
            raise ValueError(f'--gpus {processes}: only {count} CUDA devices are visible')
        if not dist.is_nccl_available():
            raise ValueError('this torch build has no NCCL, which the configs\' '
                             'env_cfg.dist_cfg.backend asks for on GPUs')
        lines.append(f'torch {torch.__version__}, CUDA {torch.version.cuda}, '
                     f'{count} visible GPUs: {torch.cuda.get_device_name(0)}')
    try:
        from mmcv.ops import get_compiling_cuda_version
        compiled = get_compiling_cuda_version()
    except (ImportError, OSError) as error:
        raise ValueError(f'mmcv has no compiled ops ({error}); the detectors need them: '
                         'install mmcv with ops (make setup builds it)') from None
    lines.append(f'mmcv ops compiled for CUDA {compiled}' if compiled not in ('', 'not available')
                 else 'mmcv ops compiled without CUDA kernels')
    return lines


def run(models: Sequence[str], plan: Plan, processes: int, device: str, work_dir: str | None,
        timeout: float, launcher: Launcher, cfg_options: dict | None = None,
        echo: Callable[[str], None] = say) -> tuple[InstallCheck, str]:
    """Run the check; returns it and its Markdown report. ``work_dir`` None: a temporary folder,
    removed when every step passed. ``launcher``: :func:`tools_launcher` of a checkout's
    ``tools/``."""
    unknown = [name for name in models if name not in CASES]
    if unknown:
        raise ValueError(f'--models {unknown}: unknown; use some of {list(CASES)}')
    for line in preflight(device, processes):
        echo(line)
    keep = work_dir is not None
    work_dir = osp.abspath(work_dir) if keep else tempfile.mkdtemp(prefix='check_install_')
    os.makedirs(work_dir, exist_ok=True)
    check = InstallCheck(plan, processes, work_dir, launcher, device, timeout, cfg_options,
                         echo)
    begin = time.perf_counter()
    for name in models:
        check.run_case(CASES[name])
    report = to_markdown(check, speed.environment(torch.device(device)),
                         time.perf_counter() - begin)
    if check.first_failure is None and not keep:
        shutil.rmtree(work_dir, ignore_errors=True)
    elif check.first_failure is not None:
        echo(f'logs, configs and checkpoints kept in {work_dir}')
    return check, report

