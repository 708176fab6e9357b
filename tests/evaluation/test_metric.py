"""FastCocoMetric: registered where mmdet's configs find it, used by the project's COCO configs,
and reporting exactly what mmdet's own CocoMetric reports (the outside reference) with either
backend: bbox, segm and proposal, per-class AP, ground truth from the annotation
file or from the data samples."""
from __future__ import annotations

import copy
import json
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from mmdet.evaluation.metrics import CocoMetric
from mmdet.registry import METRICS
from mmengine.config import Config
from mmengine.registry import METRICS as ROOT_METRICS

import convnext_dense  # noqa: F401  (registers FastCocoMetric)
from convnext_dense.benchmarks.coco_eval_speed import synthetic_coco
from convnext_dense.datasets import make_toy_data
from convnext_dense.evaluation import BACKENDS
from tests.evaluation.test_backends import add_dense_image
from tests.helpers import ROOT

NUM_CATEGORIES = 3
CLASSES = tuple(f'class_{i}' for i in range(1, NUM_CATEGORIES + 1))


@pytest.fixture(scope='module')
def coco_set(tmp_path_factory) -> tuple[Path, dict, list, list]:
    dataset, bbox, segm = synthetic_coco(
        12, objects_per_image=4, detections_per_image=20, num_categories=NUM_CATEGORIES,
        image_size=(160, 120), rle_fraction=0.3, crowd_fraction=0.3, no_detection_fraction=0.2,
        seed=5)
    add_dense_image(dataset, bbox, segm)  # 150 detections: maxDets 100 and 1000 differ
    path = tmp_path_factory.mktemp('metric') / 'ann.json'
    path.write_text(json.dumps(dataset))
    return path, dataset, bbox, segm


def data_samples(dataset: dict, bbox: list, segm: list, with_gt: bool = False) -> list[dict]:
    """What mmdet's detectors hand to the metric: per image, boxes (x1, y1, x2, y2), scores,
    0-based labels and RLE masks (and, for metrics without an annotation file, the ground
    truth as mmdet's datasets load it)."""
    predictions = defaultdict(list)
    for box, mask in zip(bbox, segm, strict=True):
        predictions[box['image_id']].append((box, mask))
    objects = defaultdict(list)
    for ann in dataset['annotations']:
        objects[ann['image_id']].append(ann)
    samples = []
    for image in dataset['images']:
        found = predictions[image['id']]
        x, y, w, h = (torch.tensor([b['bbox'][i] for b, _ in found], dtype=torch.float32)
                      .reshape(-1) for i in range(4))
        sample = dict(img_id=image['id'], ori_shape=(image['height'], image['width']),
                      pred_instances=dict(
                          bboxes=torch.stack([x, y, x + w, y + h], dim=1),
                          scores=torch.tensor([b['score'] for b, _ in found]),
                          labels=torch.tensor([b['category_id'] - 1 for b, _ in found],
                                              dtype=torch.long),
                          masks=[copy.deepcopy(m['segmentation']) for _, m in found]))
        if with_gt:
            sample['instances'] = [
                dict(bbox=[a['bbox'][0], a['bbox'][1], a['bbox'][0] + a['bbox'][2],
                           a['bbox'][1] + a['bbox'][3]],
                     bbox_label=a['category_id'] - 1, ignore_flag=a['iscrowd'])
                for a in objects[image['id']]]
        samples.append(sample)
    return samples


def evaluate(metric, samples: list[dict]) -> dict[str, float]:
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, samples)
    return metric.evaluate(len(samples))


def test_registered_for_mmdet_configs(coco_set):
    path = coco_set[0]
    metric = METRICS.build(dict(type='FastCocoMetric', ann_file=str(path)))
    assert isinstance(metric, CocoMetric)
    assert type(metric).__name__ == 'FastCocoMetric'
    assert metric.backend == 'faster_coco_eval'
    assert ROOT_METRICS.get('FastCocoMetric') is METRICS.get('FastCocoMetric')
    # a FasterCocoMetric of the installed mmdet (onedl-mmdetection has one) is left alone
    theirs = METRICS.get('FasterCocoMetric')
    assert theirs is None or theirs.__module__.startswith('mmdet.')


def test_arguments_are_checked(coco_set):
    with pytest.raises(ValueError, match=r"backend='cocoapi': use one of"):
        METRICS.build(dict(type='FastCocoMetric', backend='cocoapi'))
    with pytest.raises(ValueError, match='use_mp_eval=True'):
        METRICS.build(dict(type='FastCocoMetric', use_mp_eval=True))


@pytest.mark.parametrize('backend', BACKENDS)
def test_same_results_as_coco_metric(coco_set, backend):
    """Every number CocoMetric reports, with its keys, rounding and proposal_nums (AP at 100,
    the dense image's 150 detections beyond it); the backends' last-bit differences (see
    test_backends.py) are far below the 3 decimals both round to."""
    path, dataset, bbox, segm = coco_set
    # not 'proposal_fast': mmdet's eval_recalls stacks ragged IoU arrays, which numpy >= 1.24
    # refuses (CocoMetric fails the same way); FastCocoMetric calls the same function
    options = dict(ann_file=str(path), metric=['bbox', 'segm', 'proposal'], classwise=True)
    expected = evaluate(CocoMetric(**options), data_samples(dataset, bbox, segm))
    actual = evaluate(METRICS.build(dict(type='FastCocoMetric', backend=backend, **options)),
                      data_samples(dataset, bbox, segm))
    assert list(actual) == list(expected)
    assert actual == expected
    assert 0.05 < expected['coco/bbox_mAP'] < 0.95 and 0.05 < expected['coco/segm_mAP'] < 0.95
    assert len([key for key in expected if key.endswith('_precision')]) == NUM_CATEGORIES


def test_ground_truth_from_data_samples(coco_set):
    """Without an annotation file, CocoMetric converts the samples' ground truth first."""
    _, dataset, bbox, segm = coco_set
    options = dict(metric=['bbox'], metric_items=['mAP', 'mAP_50', 'AR@100', 'AR_l@1000'])
    expected = evaluate(CocoMetric(**options), data_samples(dataset, bbox, segm, True))
    for backend in BACKENDS:
        metric = METRICS.build(dict(type='FastCocoMetric', backend=backend, **options))
        assert evaluate(metric, data_samples(dataset, bbox, segm, True)) == expected
    assert list(expected) == ['coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_AR@100',
                              'coco/bbox_AR_l@1000']


def test_onedl_faster_coco_metric_differs(coco_set):
    """onedl-mmdetection's own FasterCocoMetric takes mAP at maxDets[-1] (1000), not at 100 as
    CocoMetric: why the configs use FastCocoMetric instead."""
    theirs = METRICS.get('FasterCocoMetric')
    if theirs is None:
        pytest.skip('this mmdet has no FasterCocoMetric')
    path, dataset, bbox, segm = coco_set
    expected = evaluate(CocoMetric(ann_file=str(path)), data_samples(dataset, bbox, segm))
    other = evaluate(theirs(ann_file=str(path)), data_samples(dataset, bbox, segm))
    assert other['coco/bbox_mAP'] > expected['coco/bbox_mAP']
    assert other['coco/bbox_mAP_50'] == expected['coco/bbox_mAP_50']


@pytest.mark.parametrize('name', ['mask_rcnn/mask_rcnn_convnext_t_coco_3x.py',
                                  'mask_rcnn/cascade_convnext_t_coco_3x.py',
                                  'mask_rcnn/mask_rcnn_convnext_v2_b_fcmae_lsj_coco_3x.py'])
def test_paper_configs_use_it(name):
    cfg = Config.fromfile(str(ROOT / 'configs' / name))
    for key in ('val_evaluator', 'test_evaluator'):
        evaluator = cfg[key]
        assert evaluator.type == 'FastCocoMetric' and evaluator.backend == 'faster_coco_eval'
        # the rest stays mmdet's coco_instance.py
        assert evaluator.ann_file == 'data/coco/annotations/instances_val2017.json'
        assert evaluator.metric == ['bbox', 'segm']


def test_toy_config_builds_it(tmp_path):
    make_toy_data(str(tmp_path), num_train=1, num_val=2, size=64, seed=0)
    cfg = Config.fromfile(str(ROOT / 'configs/mask_rcnn/convnext_atto_toy.py'))
    assert cfg.test_evaluator == cfg.val_evaluator
    evaluator = copy.deepcopy(cfg.val_evaluator)
    evaluator.ann_file = str(tmp_path / 'toy_coco/annotations/instances_val.json')
    metric = METRICS.build(evaluator)
    assert isinstance(metric, CocoMetric)
    assert (metric.backend, metric.metrics) == ('faster_coco_eval', ['bbox', 'segm'])
