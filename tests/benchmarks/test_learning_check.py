"""convnext_dense.benchmarks.learning_check: the options it gives tools/train.py exist in the
real toy configs, it reads the metrics mmengine's own LocalVisBackend writes, and one tiny run
goes through the real tools/train.py end to end."""
import json
import re

import pytest
from mmengine.visualization import LocalVisBackend

from convnext_dense.benchmarks.learning_check import (
    TASKS,
    TaskResult,
    format_results,
    read_val_metrics,
    run_task,
)
from convnext_dense.datasets import make_toy_data
from convnext_dense.engine.run_config import load_config
from tests.helpers import ROOT


@pytest.mark.parametrize('name', sorted(TASKS))
def test_data_options_are_config_keys(name):
    task = TASKS[name]
    options = task.data_options('/toy/root')
    # load_config refuses keys the config does not have (typos), naming them
    cfg = load_config(f'{ROOT}/{task.config}', options)
    root = f'/toy/root/{task.dataset_dir}/'
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[loader].dataset.data_root == root
    if name == 'mask_rcnn':
        assert cfg.val_evaluator.ann_file == root + 'annotations/instances_val.json'
        # evaluations are logged by iteration, so each one can be told apart
        assert cfg.default_hooks.logger.log_metric_by_epoch is False


def write_scalars(save_dir, records):
    backend = LocalVisBackend(save_dir=str(save_dir))
    for step, record in records:
        backend.add_scalars(record, step=step)
    backend.close()


def test_read_val_metrics_takes_the_newest_run(tmp_path):
    write_scalars(tmp_path / '20260101_000000' / 'vis_data',
                  [(5, {'mIoU': 1.0})])
    write_scalars(tmp_path / '20260102_000000' / 'vis_data',
                  [(10, {'loss': 2.0}), (20, {'mIoU': 50.0, 'aAcc': 90.0}), (30, {'loss': 1.0}),
                   (40, {'mIoU': 85.5})])
    evaluations = read_val_metrics(str(tmp_path), 'mIoU')
    assert [(e['step'], e['mIoU']) for e in evaluations] == [(20, 50.0), (40, 85.5)]
    # whole records, as written: the other metrics of an evaluation come along, the older
    # run's and the training lines do not
    assert evaluations == [{'mIoU': 50.0, 'aAcc': 90.0, 'step': 20}, {'mIoU': 85.5, 'step': 40}]
    result = TaskResult(TASKS['upernet'], 40, 12.0, evaluations)
    assert result.final == 85.5 and result.met
    table = format_results([result, TaskResult(TASKS['mask_rcnn'], 9, 1.0)])
    # aAcc is shown only where the last evaluation has it (here it does not)
    assert '| upernet | 40 | 12 s | mIoU: 50 at 20, 85.5 at 40 | >= 80: met |  |' in table
    assert ('| mask_rcnn | 9 | 1 s | coco/bbox_mAP: no evaluation | >= 0.5: NOT met |  |'
            in table)
    evaluations[-1]['aAcc'] = 97.25
    assert '| >= 80: met | aAcc 97.25 |' in format_results([result])


@pytest.mark.parametrize('name, final, met', [
    ('upernet', 80.0, True), ('upernet', 79.99, False), ('upernet', 96.19, True),
    ('mask_rcnn', 0.5, True), ('mask_rcnn', 0.499, False), ('mask_rcnn', 0.0, False)])
def test_met_is_the_final_evaluation_against_the_target(name, final, met):
    task = TASKS[name]
    assert (task.metric, task.target) == {'upernet': ('mIoU', 80.0),
                                          'mask_rcnn': ('coco/bbox_mAP', 0.5)}[name]
    # an earlier evaluation above the target does not count: the last one decides
    evaluations = [{'step': 1, task.metric: task.target + 1}, {'step': 2, task.metric: final}]
    result = TaskResult(task, 2, 1.0, evaluations)
    assert result.final == final and result.met is met
    assert f">= {task.target:g}: {'met' if met else 'NOT met'} |" in format_results([result])
    assert TaskResult(task, 2, 1.0).met is False  # no evaluation: not met


def test_read_val_metrics_errors_name_the_place(tmp_path):
    with pytest.raises(FileNotFoundError, match='no .*scalars.json under'):
        read_val_metrics(str(tmp_path), 'mIoU')
    scalars = tmp_path / 'run' / 'vis_data' / 'scalars.json'
    scalars.parent.mkdir(parents=True)
    scalars.write_text(json.dumps({'mIoU': 1.0, 'step': 1}) + '\n{truncated\n')
    with pytest.raises(ValueError, match=r'scalars.json:2: not a JSON line'):
        read_val_metrics(str(tmp_path), 'mIoU')


def test_run_task_rejects_bad_schedule_and_checkout(tmp_path):
    with pytest.raises(ValueError, match='val_interval=0'):
        run_task(TASKS['upernet'], str(ROOT), str(tmp_path), str(tmp_path / 'w'), 2, 0)
    with pytest.raises(FileNotFoundError, match=r"checkout='.*' has no tools/train\.py"):
        run_task(TASKS['upernet'], str(tmp_path), str(tmp_path), str(tmp_path / 'w'), 2, 1)


def test_run_task_trains_and_reads_back_the_evaluations(tmp_path):
    make_toy_data(str(tmp_path / 'data'), num_train=4, num_val=2)
    result = run_task(TASKS['upernet'], str(ROOT), str(tmp_path / 'data'), str(tmp_path / 'work'),
                      iters=2, val_interval=1,
                      cfg_options=['train_dataloader.batch_size=2',
                                   'train_dataloader.num_workers=0',
                                   'val_dataloader.num_workers=0'])
    assert [e['step'] for e in result.evaluations] == [1, 2]
    assert 0.0 <= result.final <= 100.0
    assert (tmp_path / 'work' / 'iter_2.pth').is_file()
    # exactly what the run's LocalVisBackend wrote: its evaluation lines, whole
    scalars, = (tmp_path / 'work').glob('*/vis_data/scalars.json')
    records = [json.loads(line) for line in scalars.read_text().splitlines()]
    written = [record for record in records if 'mIoU' in record]
    assert result.evaluations == written
    assert any('loss' in record for record in records)  # the training lines were left out
    for evaluation in result.evaluations:
        assert {'aAcc', 'mIoU', 'mAcc', 'step'} <= evaluation.keys()
    # and what the run's log printed for its evaluations, to the 4 decimals it prints (the
    # JSON has the float32 values mmseg computed: 27.469999313354492 is printed 27.4700)
    log, = (tmp_path / 'work').glob('*/*.log')
    printed = re.findall(r'Iter\(val\) \[\d+/\d+\]\s+aAcc: ([\d.]+)\s+mIoU: ([\d.]+)\s+'
                         r'mAcc: ([\d.]+)', log.read_text())
    assert printed == [tuple(f'{e[key]:.4f}' for key in ('aAcc', 'mIoU', 'mAcc'))
                       for e in result.evaluations]
    assert result.final == result.evaluations[-1]['mIoU']
    # the decision: against the upernet target, 80 mIoU
    assert result.met is (result.final >= 80.0)
    assert result.iters == 2 and result.seconds > 0
