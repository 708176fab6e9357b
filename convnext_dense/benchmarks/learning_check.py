"""The learning check: train the toy configs long enough to show that the training loop learns.

Each :class:`ToyTask` names a toy config (``configs/*/convnext_atto_toy.py`` of a checkout), the
held-out metric and the target it must reach. :func:`run_task` trains it with the checkout's
``tools/train.py`` in a child process (exactly the user's command, with its own registries and
seed), evaluating on the held-out toy split every ``val_interval`` iterations, and reads the
metrics back from the run's ``vis_data/scalars.json``. ``tools/benchmark_toy.py`` is the command
line and names the checkout.

This is a benchmark, not a test: on a 2-core CPU it takes tens of minutes.
"""
from __future__ import annotations

import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ToyTask:
    name: str
    config: str  # relative to the checkout
    dataset_dir: str  # the folder make_toy_data writes for it
    metric: str  # key of the held-out metric in scalars.json
    target: float  # the metric must reach at least this
    iters: int  # default training length of the check
    also_report: tuple[str, ...] = ()  # other held-out metrics shown in the table

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
        ToyTask('upernet', 'configs/upernet/convnext_atto_toy.py', 'toy_ade', 'mIoU', 80.0, 600,
                ('aAcc', 'mAcc')),
        ToyTask('mask_rcnn', 'configs/mask_rcnn/convnext_atto_toy.py', 'toy_coco',
                'coco/bbox_mAP', 0.5, 600, ('coco/bbox_mAP_50', 'coco/segm_mAP')),
    )
}


@dataclass
class TaskResult:
    task: ToyTask
    iters: int
    seconds: float
    # one entry per evaluation: {'step': iteration, metric name: value, ...}
    evaluations: list[dict] = field(default_factory=list)

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
    runs = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not runs:
        raise FileNotFoundError(f'no */vis_data/scalars.json under {work_dir!r}: did the '
                                'training run start?')
    evaluations = []
    with open(runs[-1]) as scalars:
        for number, line in enumerate(scalars, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f'{runs[-1]}:{number}: not a JSON line ({error})') from None
            if metric in record:
                evaluations.append(record)
    return evaluations


def run_task(task: ToyTask, checkout: str, data_root: str, work_dir: str, iters: int,
             val_interval: int, cfg_options: list[str] | None = None,
             python: str = sys.executable) -> TaskResult:
    """Train ``task`` for ``iters`` iterations, evaluating every ``val_interval``.

    Args:
        checkout: The repository folder whose ``tools/train.py`` and configs run.
        cfg_options: ``KEY=VALUE`` strings for ``tools/train.py --cfg-options``, after the ones
            that set the data and the schedule, so they can override them.
    """
    if iters < 1 or val_interval < 1:
        raise ValueError(f'iters={iters} and val_interval={val_interval} must be positive')
    train_script = osp.join(checkout, 'tools', 'train.py')
    if not osp.isfile(train_script):
        raise FileNotFoundError(f'checkout={checkout!r} has no tools/train.py')
    options = task.data_options(data_root)
    options.update({'train_cfg.max_iters': str(iters),
                    'train_cfg.val_interval': str(val_interval),
                    'default_hooks.checkpoint.interval': str(val_interval)})
    command = [python, train_script, osp.join(checkout, task.config), '--work-dir', work_dir,
               '--cfg-options',
               *(f'{key}={value}' for key, value in options.items()), *(cfg_options or [])]
    print('+ ' + ' '.join(command), flush=True)
    start = time.perf_counter()
    completed = subprocess.run(command, cwd=checkout, env=dict(os.environ))
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f'{task.name}: tools/train.py exited with {completed.returncode}; '
                           f'its log is under {work_dir}')
    return TaskResult(task, iters, seconds, read_val_metrics(work_dir, task.metric))


def format_results(results: list[TaskResult]) -> str:
    """A Markdown table of the results, as in the README."""
    lines = ['| task | iterations | wall time | held-out metric (per evaluation) | target | '
             'also, at the end |', '|---|---|---|---|---|---|']
    for result in results:
        task = result.task
        history = ', '.join(f"{record[task.metric]:g} at {record['step']}"
                            for record in result.evaluations) or 'no evaluation'
        verdict = 'met' if result.met else 'NOT met'
        final = result.evaluations[-1] if result.evaluations else {}
        also = ', '.join(f'{name} {final[name]:g}' for name in task.also_report
                         if name in final)
        lines.append(f'| {task.name} | {result.iters} | {result.seconds:.0f} s | '
                     f'{task.metric}: {history} | >= {task.target:g}: {verdict} | '
                     f'{also} |')
    return '\n'.join(lines)
