"""The learning check: train the toy UperNet and Mask R-CNN from scratch and report their
held-out mIoU (background and 5 shapes) / box AP against the targets (mIoU >= 80, bbox AP >=
0.5), beside the best score of a constant prediction; see
convnext_dense/benchmarks/learning_check.py.

    python tools/benchmark_toy.py [--tasks upernet mask_rcnn] [--iters N] [--val-interval N]
                                  [--num-train 512] [--num-val 64] [--work-dir DIR]
                                  [--out summary.json] [--cfg-options k=v ...]

Makes its own toy set (WORK_DIR/data, larger than the demo's) unless it is there already, trains
each task with tools/train.py and prints a Markdown table. Exits with 1 if a target is not met,
and refuses (exit 2) a target that predicting one class everywhere would reach.
"""
import argparse
import json
import os.path as osp
import platform
import sys

import torch

from convnext_dense.benchmarks.learning_check import (
    TASKS,
    check_target,
    constant_baseline,
    format_results,
    run_task,
)
from convnext_dense.datasets import make_toy_data

CHECKOUT = osp.dirname(osp.dirname(osp.abspath(__file__)))  # whose tools/train.py runs


def parse_args():
    parser = argparse.ArgumentParser(description='Toy learning check (slow: a benchmark)')
    parser.add_argument('--tasks', nargs='+', choices=list(TASKS), default=list(TASKS))
    parser.add_argument('--iters', type=int, default=None,
                        help='training iterations (default: per task, ' + ', '.join(
                            f'{t.name} {t.iters}' for t in TASKS.values()) + ')')
    parser.add_argument('--val-interval', type=int, default=None,
                        help='evaluate every N iterations (default: a third of --iters)')
    parser.add_argument('--num-train', type=int, default=512, help='toy training images')
    parser.add_argument('--num-val', type=int, default=64, help='held-out toy images')
    parser.add_argument('--work-dir', default='work_dirs/benchmark_toy')
    parser.add_argument('--out', default=None,
                        help='summary JSON (default: WORK_DIR/summary.json)')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='passed on to tools/train.py for every task')
    return parser.parse_args()


def main():
    args = parse_args()
    data_root = osp.join(args.work_dir, 'data')
    if not osp.isfile(osp.join(data_root, 'toy_coco', 'annotations', 'instances_val.json')):
        print(f'making the toy data ({args.num_train} training / {args.num_val} held-out '
              f'images) under {data_root}', flush=True)
        make_toy_data(data_root, num_train=args.num_train, num_val=args.num_val, overwrite=True)
    else:
        print(f'using the toy data already under {data_root} (delete it to make it anew with '
              'other --num-train/--num-val)', flush=True)
    for name in args.tasks:  # before any training: a meaningless target is refused at once
        task = TASKS[name]
        baseline = constant_baseline(task, data_root)
        if baseline is not None:
            print(f'{name}: predicting {baseline.name!r} on every held-out pixel scores '
                  f'{baseline.metric} {baseline.value:.2f} (the best constant prediction); '
                  f'target {task.target:g}', flush=True)
        try:
            check_target(task, baseline)
        except ValueError as error:
            print(f'error: {error}', file=sys.stderr)
            sys.exit(2)
    results = []
    for name in args.tasks:
        task = TASKS[name]
        iters = args.iters or task.iters
        val_interval = args.val_interval or max(iters // 3, 1)
        results.append(run_task(task, CHECKOUT, osp.abspath(data_root),
                                osp.join(args.work_dir, name), iters, val_interval,
                                args.cfg_options))
    table = format_results(results)
    print(table)
    summary = dict(
        hardware=dict(machine=platform.machine(), processor=platform.processor(),
                      cpu_threads=torch.get_num_threads(),
                      cuda=torch.cuda.get_device_name() if torch.cuda.is_available() else None),
        num_train=args.num_train, num_val=args.num_val,
        results=[dict(task=r.task.name, iters=r.iters, seconds=round(r.seconds, 1),
                      metric=r.task.metric, target=r.task.target, final=r.final, met=r.met,
                      evaluations=r.evaluations,
                      constant_prediction=None if r.baseline is None else dict(
                          label=r.baseline.label, name=r.baseline.name,
                          value=r.baseline.value))
                 for r in results],
        table=table)
    out = args.out or osp.join(args.work_dir, 'summary.json')
    with open(out, 'w') as file:
        json.dump(summary, file, indent=2)
    print(f'summary: {out}')
    sys.exit(0 if all(r.met for r in results) else 1)


if __name__ == '__main__':
    main()
