"""convnext_dense.benchmarks.learning_check: the options it gives tools/train.py exist in the
real toy configs, it reads the metrics mmengine's own LocalVisBackend writes, its targets are
above what a constant prediction scores (computed on the toy label maps), and a run that does
not learn (learning rate 0) through the real tools/benchmark_toy.py and tools/train.py fails
the check."""
import dataclasses
import json
import re

import cv2
import numpy as np
import pytest
from mmengine.visualization import LocalVisBackend

from convnext_dense.analysis.curves import plot_curves
from convnext_dense.benchmarks.learning_check import (
    TASKS,
    Baseline,
    TaskResult,
    check_target,
    constant_baseline,
    constant_prediction_scores,
    format_results,
    read_val_metrics,
    run_task,
)
from convnext_dense.config import load_config
from convnext_dense.datasets import BACKGROUND_CLASS, SEG_CLASSES, make_toy_data
from tests.helpers import ROOT, run_tool_in_process


@pytest.mark.parametrize('name', sorted(TASKS))
def test_data_options_are_config_keys(name):
    task = TASKS[name]
    options = task.data_options('/toy/root')
    # load_config refuses keys the config does not have (typos), naming them
    cfg = load_config(task.config, options)
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
    assert '| upernet | 40 | 12 s | mIoU: 50 at 20, 85.5 at 40 | >= 80: met |  |  |' in table
    assert ('| mask_rcnn | 9 | 1 s | coco/bbox_mAP: no evaluation | >= 0.5: NOT met |  |  |'
            in table)
    evaluations[-1]['aAcc'] = 97.25
    assert '| >= 80: met | aAcc 97.25 |  |' in format_results([result])
    result.baseline = Baseline('mIoU', 13.456, 0, 'background')
    assert "| aAcc 97.25 | mIoU 13.46 ('background' everywhere) |" in format_results([result])


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
    with pytest.raises(FileNotFoundError, match='no training log under .*scalars.json'):
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


@pytest.fixture(scope='module')
def held_out(tmp_path_factory):
    """A toy set with the learning check's held-out size (64 images)."""
    root = tmp_path_factory.mktemp('toy')
    make_toy_data(str(root), num_train=1, num_val=64)
    return root


def test_constant_prediction_scores_are_mmseg_s_arithmetic(held_out):
    files = sorted((held_out / 'toy_ade/annotations/validation').glob('*.png'))
    labels = [cv2.imread(str(path), cv2.IMREAD_UNCHANGED) for path in files]
    scores = constant_prediction_scores(labels, len(SEG_CLASSES))
    # a constant c: its IoU = its accuracy = its share of the pixels (every pixel is labelled),
    # every other class's IoU and accuracy 0
    pixels = np.concatenate([label.ravel() for label in labels])
    assert (pixels < len(SEG_CLASSES)).all()
    for constant, score in enumerate(scores):
        share = (pixels == constant).mean()
        assert score['aAcc'] == pytest.approx(100 * share, rel=1e-6)
        assert score['mIoU'] == pytest.approx(100 * share / len(SEG_CLASSES), rel=1e-6)
        assert score['mAcc'] == pytest.approx(100 / len(SEG_CLASSES), rel=1e-6)
    # pixels ignored (255) count nowhere
    ignored = [np.where(np.arange(label.size).reshape(label.shape) % 2, 255, label)
               for label in labels[:4]]
    kept = np.concatenate([label.ravel() for label in ignored])
    kept = kept[kept != 255]
    assert constant_prediction_scores(ignored, len(SEG_CLASSES))[0]['aAcc'] == \
        pytest.approx(100 * (kept == 0).mean(), rel=1e-6)

    baseline = constant_baseline(TASKS['upernet'], str(held_out))
    background = SEG_CLASSES.index(BACKGROUND_CLASS)
    assert (baseline.label, baseline.name) == (background, BACKGROUND_CLASS)
    assert baseline.value == scores[background]['mIoU'] == max(s['mIoU'] for s in scores)
    # the scenes are mostly background: a constant prediction scores a high pixel accuracy,
    # and the mIoU target must stay well above its mIoU
    assert scores[background]['aAcc'] > 60
    check_target(TASKS['upernet'], baseline)
    assert TASKS['upernet'].target > 2 * baseline.value
    with pytest.raises(ValueError, match="is reached by predicting 'background' everywhere"):
        check_target(TASKS['upernet'], Baseline('mIoU', 80.0, 0, 'background'))
    assert constant_baseline(TASKS['mask_rcnn'], str(held_out)) is None
    with pytest.raises(FileNotFoundError, match='no held-out label maps'):
        constant_baseline(TASKS['upernet'], str(held_out / 'nowhere'))


def test_a_run_that_does_not_learn_fails_the_check(tmp_path, monkeypatch, capsys):
    """tools/benchmark_toy.py (run in this process; learning rate 0: the model cannot learn)
    runs tools/train.py, reads back exactly what the run logged, and exits with 1: target not
    met."""
    work = tmp_path / 'work'
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as info:
        run_tool_in_process('tools/benchmark_toy.py', '--tasks', 'upernet', '--iters', '2',
                            '--val-interval', '1', '--num-train', '4', '--num-val', '2',
                            '--work-dir', work, '--cfg-options', 'optim_wrapper.optimizer.lr=0',
                            'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
                            'val_dataloader.num_workers=0', monkeypatch=monkeypatch)
    result = capsys.readouterr()
    assert info.value.code == 1, result.out[-3000:] + result.err[-3000:]
    assert "upernet: predicting 'background' on every held-out pixel scores mIoU" in result.out
    summary = json.loads((work / 'summary.json').read_text())
    task, = summary['results']
    assert task['met'] is False and task['final'] < task['target']
    assert task['final'] == task['evaluations'][-1]['mIoU']
    assert task['constant_prediction']['name'] == BACKGROUND_CLASS
    assert '>= 80: NOT met' in result.out
    assert [e['step'] for e in task['evaluations']] == [1, 2]
    # exactly what the run's LocalVisBackend wrote: its evaluation lines, whole
    scalars, = (work / 'upernet').glob('*/vis_data/scalars.json')
    records = [json.loads(line) for line in scalars.read_text().splitlines()]
    assert task['evaluations'] == [record for record in records if 'mIoU' in record]
    assert any('loss' in record for record in records)  # the training lines were left out
    for evaluation in task['evaluations']:
        assert {'aAcc', 'mIoU', 'mAcc', 'step'} <= evaluation.keys()
    # and what the run's log printed for its evaluations, to the 4 decimals it prints (the
    # JSON has the float32 values mmseg computed: 27.469999313354492 is printed 27.4700)
    log, = (work / 'upernet').glob('*/*.log')
    printed = re.findall(r'Iter\(val\) \[\d+/\d+\]\s+aAcc: ([\d.]+)\s+mIoU: ([\d.]+)\s+'
                         r'mAcc: ([\d.]+)', log.read_text())
    assert printed == [tuple(f'{e[key]:.4f}' for key in ('aAcc', 'mIoU', 'mAcc'))
                       for e in task['evaluations']]
    # the same run's curves: the real keys of a training log
    picture = plot_curves(str(work / 'upernet'), out=str(tmp_path / 'curves.png'))
    assert [panel.key for panel in picture.panels] == ['loss', 'lr', 'aAcc', 'mIoU', 'mAcc']
    assert [panel.steps for panel in picture.panels][2:] == [[1, 2]] * 3
    assert cv2.imread(str(tmp_path / 'curves.png')).shape[:2] == picture.size[::-1]


def test_run_task_checks_the_target_before_training(tmp_path):
    make_toy_data(str(tmp_path / 'data'), num_train=1, num_val=2)
    low = dataclasses.replace(TASKS['upernet'], target=5.0)
    with pytest.raises(ValueError, match='target mIoU >= 5 is reached by predicting'):
        run_task(low, str(ROOT), str(tmp_path / 'data'), str(tmp_path / 'w'), 2, 1)
    assert not (tmp_path / 'w').exists()  # refused before tools/train.py ran
