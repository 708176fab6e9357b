"""faster-coco-eval gives pycocotools' precision/recall arrays and 12 numbers on a random set with
crowd regions, polygon and RLE masks, several categories, images without objects and without
detections; the one documented divergence (the summary under a maxDets other than 1/10/100) is
pinned for both libraries.

Why the tolerance: every precision and recall value is a ratio of counts of matches; both
libraries count the same matches, and differ only in pycocotools' ``tp / (tp + fp +
np.spacing(1))``, which is 1 - 2**-52 where faster-coco-eval's ``tp / (tp + fp)`` is 1 / 1 (an
added eps changes no other denominator, all >= 2) and identical elsewhere (checked below, element
by element). Each summary number is the mean of at most T x R x K such values, so the two means
agree within eps x T x R x K of their scale (tests/numerics.py; ~1e-12 here); recall means are
bitwise equal.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from convnext_dense.benchmarks.coco_eval_speed import synthetic_coco
from convnext_dense.evaluation import coco_eval
from tests.numerics import assert_close_to_reference

NUM_CATEGORIES = 4
IOU_TYPES = ('bbox', 'segm')


def add_dense_image(dataset: dict, bbox: list, segm: list, objects: int = 60,
                    detections: int = 150) -> None:
    """An image with ``objects`` objects and ``detections`` detections of category 1 (more than
    100 per image and category, where maxDets 100 and 1000 differ): a grid of squares, found by
    exact boxes and masks in random score order, the rest false positives."""
    image_id = max(image['id'] for image in dataset['images']) + 1
    size = 400
    dataset['images'].append(dict(id=image_id, width=size, height=size, file_name='dense.jpg'))
    rng = np.random.default_rng(7)
    squares = [(20 + 40 * (i % 9), 20 + 40 * (i // 9), 24.0, 24.0) for i in range(objects)]
    scores = rng.permutation(detections) / detections
    for index in range(detections):
        if index < objects:
            x, y, w, h = squares[index]
        else:  # false positives between the squares
            x, y, w, h = 2 + 40 * (index % 9), 2 + 40 * (index % 7), 14.0, 14.0
        polygon = [x, y, x + w, y, x + w, y + h, x, y + h]
        rle = mask_utils.frPyObjects([polygon], size, size)[0]
        if index < objects:
            dataset['annotations'].append(dict(
                id=len(dataset['annotations']) + 1, image_id=image_id, category_id=1,
                segmentation=[polygon], area=float(mask_utils.area(rle)),
                bbox=[x, y, w, h], iscrowd=0))
        common = dict(image_id=image_id, category_id=1, score=float(scores[index]))
        bbox.append(dict(common, bbox=[x, y, w, h]))
        segm.append(dict(common, segmentation=dict(size=[size, size],
                                                   counts=rle['counts'].decode('ascii'))))


def write_mixed_set(folder: Path) -> dict[str, Path]:
    """The set the backend tests run on, written into ``folder``: crowd regions, polygon and
    RLE masks, several categories, images without objects and without detections, and the
    dense image; returns the paths of ``ann``, ``bbox`` and ``segm``."""
    dataset, bbox, segm = synthetic_coco(
        24, objects_per_image=4, detections_per_image=30, num_categories=NUM_CATEGORIES,
        image_size=(160, 120), rle_fraction=0.3, crowd_fraction=0.3, no_detection_fraction=0.25,
        seed=3)
    # image 1 without objects: its detections are all false positives
    dataset['annotations'] = [a for a in dataset['annotations'] if a['image_id'] != 1]
    add_dense_image(dataset, bbox, segm)
    annotations = dataset['annotations']
    detected = {r['image_id'] for r in bbox}
    # what the set is meant to hold
    assert any(a['iscrowd'] and isinstance(a['segmentation']['counts'], list)
               for a in annotations)
    assert any(not a['iscrowd'] and isinstance(a['segmentation'], dict) for a in annotations)
    assert any(isinstance(a['segmentation'], list) and len(a['segmentation']) == 2
               for a in annotations)
    assert len({a['category_id'] for a in annotations}) == NUM_CATEGORIES
    assert len(detected) < len(dataset['images']) and 1 in detected
    paths = dict(ann=folder / 'ann.json', bbox=folder / 'bbox.json', segm=folder / 'segm.json')
    for key, data in (('ann', dataset), ('bbox', bbox), ('segm', segm)):
        paths[key].write_text(json.dumps(data))
    return paths


@pytest.fixture(scope='module')
def coco_set(tmp_path_factory) -> dict[str, Path]:
    return write_mixed_set(tmp_path_factory.mktemp('backends'))


def pycocotools_reference(paths: dict[str, Path], iou_type: str,
                          max_dets=(1, 10, 100)) -> tuple[COCOeval, str]:
    """pycocotools' COCOeval as its documentation runs it, and what summarize() printed."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        gt = COCO(str(paths['ann']))
        evaluator = COCOeval(gt, gt.loadRes(str(paths[iou_type])), iou_type)
        evaluator.params.maxDets = list(max_dets)
        evaluator.evaluate()
        evaluator.accumulate()
        start = output.tell()
        evaluator.summarize()
    return evaluator, output.getvalue()[start:]


def ours(paths: dict[str, Path], iou_type: str, backend: str, max_dets=(1, 10, 100)):
    coco = coco_eval.load_annotations(str(paths['ann']), backend)
    results = coco_eval.load_results(str(paths[iou_type]), coco, iou_type)
    detections = coco_eval.load_detections(coco, results, iou_type)
    return coco_eval.run_cocoeval(coco, detections, iou_type, backend, max_dets=max_dets)


def mean_depth(evaluator) -> int:
    """The most values one summary number averages: T IoUs x R recall points x K categories."""
    precision = evaluator.eval['precision']
    return precision.shape[0] * precision.shape[1] * precision.shape[2]


def assert_stats_close(stats, reference, depth: int) -> None:
    assert_close_to_reference(torch.tensor(stats, dtype=torch.float64),
                              torch.tensor(reference, dtype=torch.float64), depth,
                              dtype=torch.float64, name='12 numbers')


@pytest.mark.parametrize('iou_type', IOU_TYPES)
def test_arrays_are_pycocotools(coco_set, iou_type):
    reference, _ = pycocotools_reference(coco_set, iou_type)
    faster = ours(coco_set, iou_type, 'faster_coco_eval')
    expected, actual = reference.eval, faster.eval
    assert np.array_equal(actual['recall'], expected['recall'])
    assert np.array_equal(actual['scores'], expected['scores'])
    # precision: equal except where pycocotools' np.spacing(1) guard gives 1 / (1 + 2**-52)
    # = 1 - 2**-52 for 1 / 1
    differs = actual['precision'] != expected['precision']
    assert np.all(expected['precision'][differs] == 1 - 2.0**-52)
    assert np.all(actual['precision'][differs] == 1.0)
    assert differs.any()  # the set has detections that open a PR curve at precision 1
    # a real evaluation: some matches, some misses, and not a trivial score
    stats, _ = coco_eval.summarize(faster)
    assert 0.05 < stats[0] < 0.95


@pytest.mark.parametrize('backend', coco_eval.BACKENDS)
@pytest.mark.parametrize('iou_type', IOU_TYPES)
def test_twelve_numbers_are_pycocotools(coco_set, iou_type, backend):
    reference, printed = pycocotools_reference(coco_set, iou_type)
    coco = coco_eval.load_annotations(str(coco_set['ann']), backend)
    results = coco_eval.load_results(str(coco_set[iou_type]), coco, iou_type)
    metrics, lines = coco_eval.evaluate(coco, results, iou_type, backend)
    stats = [metrics[name] for name in coco_eval.METRIC_NAMES]
    expected = [float(v) for v in reference.stats]
    if backend == 'pycocotools':
        assert stats == expected  # the same library on the same input
    else:
        assert_stats_close(stats, expected, mean_depth(reference))
        assert stats[6:] == expected[6:]  # recall arrays are bitwise equal
    assert lines == printed.splitlines()  # 3 decimals: the same text


@pytest.mark.parametrize('max_dets', [(1, 10, 100), (1, 10, 300), (100, 300, 1000)])
def test_summary_replicates_pycocotools_summarize(coco_set, max_dets):
    """pycocotools_summary indexes and averages exactly as COCOeval.summarize()."""
    reference, printed = pycocotools_reference(coco_set, 'bbox', max_dets)
    stats, lines = coco_eval.pycocotools_summary(reference)
    assert stats == [float(v) for v in reference.stats]
    assert lines == printed.splitlines()


@pytest.mark.parametrize('iou_type', IOU_TYPES)
def test_max_dets_divergence(coco_set, iou_type):
    """faster-coco-eval's own summarize() takes every AP at maxDets[-1]; pycocotools' takes the
    first AP at maxDets=100 (-1 when 100 is not among them) and the others at maxDets[2]. Ours
    reports pycocotools' numbers with either backend."""
    # 1, 10, 300: no 100 among them
    reference, _ = pycocotools_reference(coco_set, iou_type, (1, 10, 300))
    faster = ours(coco_set, iou_type, 'faster_coco_eval', (1, 10, 300))
    with contextlib.redirect_stdout(io.StringIO()):
        faster.summarize()
    at_300 = faster.eval['precision'][..., 0, 2]
    assert reference.stats[0] == -1
    assert faster.stats[0] == np.mean(at_300[at_300 > -1]) > 0
    assert coco_eval.summarize(faster)[0][0] == -1

    # mmdet's proposal_nums 100, 300, 1000 with an image of 150 detections of one category
    reference, _ = pycocotools_reference(coco_set, iou_type, (100, 300, 1000))
    faster = ours(coco_set, iou_type, 'faster_coco_eval', (100, 300, 1000))
    with contextlib.redirect_stdout(io.StringIO()):
        faster.summarize()
    precision = faster.eval['precision'][..., 0, :]
    at_100, at_1000 = precision[..., 0], precision[..., 2]
    assert reference.stats[0] == pytest.approx(np.mean(at_100[at_100 > -1]), abs=1e-12)
    assert faster.stats[0] == np.mean(at_1000[at_1000 > -1])
    assert faster.stats[0] > reference.stats[0] + 1e-3  # the dense image's extra matches
    # the other AP numbers are at maxDets[2] = 1000 in both
    assert_stats_close(faster.stats[1:6], reference.stats[1:6], mean_depth(reference))
    stats, _ = coco_eval.summarize(faster)
    assert_stats_close(stats, reference.stats, mean_depth(reference))


def test_backend_is_checked(coco_set):
    with pytest.raises(ValueError, match=r"backend='cocoapi': use one of"):
        coco_eval.load_annotations(str(coco_set['ann']), 'cocoapi')
    coco = coco_eval.load_annotations(str(coco_set['ann']), 'pycocotools')
    results = coco_eval.load_results(str(coco_set['bbox']), coco, 'bbox')
    with pytest.raises(TypeError, match=r"backend='faster_coco_eval' needs its own COCO"):
        coco_eval.evaluate(coco, results, 'bbox', 'faster_coco_eval')
    with pytest.raises(ValueError, match=r'max_dets=\(1, 10\)'):
        coco_eval.run_cocoeval(coco, coco_eval.load_detections(coco, results, 'bbox'), 'bbox',
                               'pycocotools', max_dets=(1, 10))
