"""The learning check: train the toy configs long enough to show that the training loop learns.

Each :class:`ToyTask` names a toy config (``convnext_dense::*/convnext_atto_toy.py``, from the
installed package), the held-out metric and the target it must reach. :func:`run_task` trains it
with a checkout's ``tools/train.py`` in a child process (exactly the user's command, with its own
registries and seed), evaluating on the held-out toy split every ``val_interval`` iterations, and
reads the metrics back from the run's ``vis_data/scalars.json``. ``tools/benchmark_toy.py`` is
the command line and names the checkout it belongs to.

A target means something only above what a model that learnt nothing scores: the toy scenes are
mostly background, so predicting "background" on every pixel already scores
aAcc = the background's share of the pixels and mIoU = that share / 6 (its IoU, the shapes' 0).
:func:`constant_prediction_scores` computes the best such score on the held-out label maps with
mmseg's own IoU arithmetic, and :func:`check_target` refuses a target that does not exceed it.

This is a benchmark, not a test: on a 2-core CPU it takes tens of minutes.
"""
from __future__ import annotations

import glob
import os
import os.path as osp
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ..analysis.curves import find_scalars, read_scalars


@dataclass(frozen=True)
class ToyTask:
    name: str
    config: str  # a plugin config by name (convnext_dense::PATH), as tools/train.py takes it
    dataset_dir: str  # the folder make_toy_data writes for it
    metric: str  # key of the held-out metric in scalars.json
    target: float  # the metric must reach at least this
    iters: int  # default training length of the check
    also_report: tuple[str, ...] = ()  # other held-out metrics shown in the table
    held_out_labels: str | None = None  # label maps of the held-out split, for the baseline

    def data_options(self, data_root: str) -> dict[str, str]:
        """``--cfg-options`` that point the config at the toy set under ``data_root``."""
        root = osp.join(data_root, self.dataset_dir) + '/'
        options = {f'{loader}.dataset.data_root': root
                   for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')}
        if self.name == 'mask_rcnn':  # CocoMetric reads the annotation file itself
            for evaluator in ('val_evaluator', 'test_evaluator'):
                options[f'{evaluator}.ann_file'] = root + 'annotations/instances_val.json'
        return options


TASKS: dict[str, ToyTask] = {
    task.name: task
    for task in (
        # mIoU over the background and the 5 shapes
        ToyTask('upernet', 'convnext_dense::upernet/convnext_atto_toy.py', 'toy_ade', 'mIoU',
                80.0, 600, ('aAcc', 'mAcc'), held_out_labels='annotations/validation'),
        ToyTask('mask_rcnn', 'convnext_dense::mask_rcnn/convnext_atto_toy.py', 'toy_coco',
                'coco/bbox_mAP', 0.5, 600, ('coco/bbox_mAP_50', 'coco/segm_mAP')),
    )
}


@dataclass(frozen=True)
class Baseline:
    """The best score of a constant prediction on the held-out set: ``metric`` of predicting
    class ``label`` (``name``) on every pixel."""

    metric: str
    value: float
    label: int
    name: str


def constant_prediction_scores(label_maps: Iterable[np.ndarray], num_classes: int,
                               ignore_index: int = 255) -> list[dict[str, float]]:
    """mmseg's ``IoUMetric`` scores (aAcc, mIoU, mAcc, in %) of predicting class ``c`` on every
    pixel of ``label_maps``, for each ``c`` in ``range(num_classes)``.

    The areas are summed with ``IoUMetric.intersect_and_union`` and turned into metrics with
    ``IoUMetric.total_area_to_metrics``, then averaged over the classes ignoring NaN (a class in
    neither the labels nor the prediction), as ``IoUMetric.compute_metrics`` does.
    """
    import torch
    from mmseg.evaluation import IoUMetric
    totals = [[torch.zeros(num_classes, dtype=torch.float64) for _ in range(4)]
              for _ in range(num_classes)]
    for labels in label_maps:
        label = torch.from_numpy(np.asarray(labels).astype(np.int64))
        for constant, total in enumerate(totals):
            areas = IoUMetric.intersect_and_union(torch.full_like(label, constant), label,
                                                  num_classes, ignore_index)
            for summed, area in zip(total, areas):
                summed += area
    scores = []
    for total in totals:
        metrics = IoUMetric.total_area_to_metrics(*total, metrics=['mIoU'])
        scores.append({'aAcc': float(np.nanmean(metrics['aAcc'])) * 100,
                       'mIoU': float(np.nanmean(metrics['IoU'])) * 100,
                       'mAcc': float(np.nanmean(metrics['Acc'])) * 100})
    return scores


def constant_baseline(task: ToyTask, data_root: str) -> Baseline | None:
    """The best constant prediction's ``task.metric`` on the held-out label maps of the toy
    set under ``data_root`` (None for a task without label maps: a detector that detects
    nothing has AP 0)."""
    if task.held_out_labels is None:
        return None
    import cv2

    from ..datasets.toy import SEG_CLASSES
    folder = osp.join(data_root, task.dataset_dir, task.held_out_labels)
    files = sorted(glob.glob(osp.join(glob.escape(folder), '*.png')))
    if not files:
        raise FileNotFoundError(f'no held-out label maps (*.png) in {folder!r}')
    scores = constant_prediction_scores(
        (cv2.imread(path, cv2.IMREAD_UNCHANGED) for path in files), len(SEG_CLASSES))
    label = max(range(len(scores)), key=lambda c: scores[c][task.metric])
    return Baseline(task.metric, scores[label][task.metric], label, SEG_CLASSES[label])


def check_target(task: ToyTask, baseline: Baseline | None) -> None:
    """Refuse a target that a constant prediction reaches: meeting it would show nothing."""
    if baseline is not None and task.target <= baseline.value:
        raise ValueError(f'{task.name}: target {task.metric} >= {task.target:g} is reached by '
                         f'predicting {baseline.name!r} everywhere ({baseline.value:.2f}); a '
                         'learning check needs a target above it')


@dataclass
class TaskResult:
    task: ToyTask
    iters: int
    seconds: float
    # one entry per evaluation: {'step': iteration, metric name: value, ...}
    evaluations: list[dict] = field(default_factory=list)
    baseline: Baseline | None = None

    @property
    def final(self) -> float | None:
        return self.evaluations[-1][self.task.metric] if self.evaluations else None

    @property
    def met(self) -> bool:
        return self.final is not None and self.final >= self.task.target


def read_val_metrics(work_dir: str, metric: str) -> list[dict]:
    """The evaluations of the newest run in ``work_dir``, oldest first.

    mmengine's LocalVisBackend writes one JSON object per line into
    ``WORK_DIR/<timestamp>/vis_data/scalars.json``; the evaluation lines are those with
    ``metric``.
    """
    return [record for record in read_scalars(find_scalars(work_dir)[-1]) if metric in record]


def run_task(task: ToyTask, checkout: str, data_root: str, work_dir: str, iters: int,
             val_interval: int, cfg_options: list[str] | None = None,
             python: str = sys.executable) -> TaskResult:
    """Train ``task`` for ``iters`` iterations, evaluating every ``val_interval``; first check
    that its target is above the best constant prediction's score on the held-out set.

    Args:
        checkout: The repository folder whose ``tools/train.py`` runs (the config comes from
            the installed package).
        cfg_options: ``KEY=VALUE`` strings for ``tools/train.py --cfg-options``, after the ones
            that set the data and the schedule, so they can override them.
    """
    if iters < 1 or val_interval < 1:
        raise ValueError(f'iters={iters} and val_interval={val_interval} must be positive')
    train_script = osp.join(checkout, 'tools', 'train.py')
    if not osp.isfile(train_script):
        raise FileNotFoundError(f'checkout={checkout!r} has no tools/train.py')
    baseline = constant_baseline(task, data_root)
    check_target(task, baseline)
    options = task.data_options(data_root)
    options.update({'train_cfg.max_iters': str(iters),
                    'train_cfg.val_interval': str(val_interval),
                    'default_hooks.checkpoint.interval': str(val_interval)})
    work_dir = osp.abspath(work_dir)  # the run's and read_val_metrics' folder, whatever the cwd
    command = [python, train_script, task.config, '--work-dir', work_dir, '--cfg-options',
               *(f'{key}={value}' for key, value in options.items()), *(cfg_options or [])]
    print('+ ' + ' '.join(command), flush=True)
    start = time.perf_counter()
    completed = subprocess.run(command, env=dict(os.environ))
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f'{task.name}: tools/train.py exited with {completed.returncode}; '
                           f'its log is under {work_dir}')
    return TaskResult(task, iters, seconds, read_val_metrics(work_dir, task.metric), baseline)


def format_results(results: list[TaskResult]) -> str:
    """A Markdown table of the results, as in the README."""
    lines = ['| task | iterations | wall time | held-out metric (per evaluation) | target | '
             'also, at the end | a constant prediction |', '|---|---|---|---|---|---|---|']
    for result in results:
        task = result.task
        history = ', '.join(f"{record[task.metric]:g} at {record['step']}"
                            for record in result.evaluations) or 'no evaluation'
        verdict = 'met' if result.met else 'NOT met'
        final = result.evaluations[-1] if result.evaluations else {}
        also = ', '.join(f'{name} {final[name]:g}' for name in task.also_report
                         if name in final)
        baseline = result.baseline
        constant = '' if baseline is None else \
            f'{baseline.metric} {baseline.value:.2f} ({baseline.name!r} everywhere)'
        lines.append(f'| {task.name} | {result.iters} | {result.seconds:.0f} s | '
                     f'{task.metric}: {history} | >= {task.target:g}: {verdict} | '
                     f'{also} | {constant} |')
    return '\n'.join(lines)
