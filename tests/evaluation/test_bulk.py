"""convnext_dense.evaluation.bulk gives faster-coco-eval's own index and arrays, bitwise: the
detections indexed by ``index_detections`` are those of ``COCO.loadRes``, and ``BulkCOCOeval``
(bulk ``_prepare`` and IoUs) gives ``COCOeval_faster``'s IoU matrices, precision, recall and
score arrays, on a set with crowd regions, polygon and RLE masks, images without objects or
detections and an image with 150 detections of one category (where maxDets truncates), for
bbox and segm, per category and class-agnostic, on subsets of images and categories. What it
does not cover (boundary IoU) runs faster-coco-eval's own code and gives its arrays as well.
Exactness, not a tolerance: both feed the same C++ the same annotations and the same IoUs.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from faster_coco_eval import COCO, COCOeval_faster

from convnext_dense.evaluation.bulk import BulkCOCOeval, index_detections
from tests.evaluation.test_backends import write_mixed_set

IOU_TYPES = ('bbox', 'segm')
# params changes: (name, function of (params, ground truth))
VARIANTS = {
    'default': lambda p, gt: None,
    'class-agnostic': lambda p, gt: setattr(p, 'useCats', 0),
    'subset': lambda p, gt: (setattr(p, 'imgIds', sorted(gt.getImgIds())[1::2]),
                             setattr(p, 'catIds', [3, 1])),
    'class-agnostic subset': lambda p, gt: (setattr(p, 'useCats', 0),
                                            setattr(p, 'catIds', [4, 2, 1])),
    'proposal_nums': lambda p, gt: setattr(p, 'maxDets', [100, 300, 1000]),
    'few detections': lambda p, gt: setattr(p, 'maxDets', [1, 3, 5]),
    'iou thresholds': lambda p, gt: setattr(p, 'iouThrs', np.array([0.3, 0.5, 0.9])),
}


@pytest.fixture(scope='module')
def coco_set(tmp_path_factory) -> dict[str, Path]:
    return write_mixed_set(tmp_path_factory.mktemp('bulk'))


def ground_truth(paths: dict[str, Path]) -> COCO:
    coco = COCO()
    coco.dataset = json.loads(paths['ann'].read_text())
    coco.createIndex()
    return coco


def evaluated(paths: dict[str, Path], iou_type: str, variant: str, bulk: bool,
              evaluated_type: str | None = None, score_decimals: int | None = None):
    """faster-coco-eval's own (loadRes, COCOeval_faster) or the bulk path, evaluated and
    accumulated; the results are read anew each time (both paths write into them)."""
    gt = ground_truth(paths)
    results = json.loads(paths[iou_type].read_text())
    if score_decimals is not None:
        for result in results:
            result['score'] = round(result['score'], score_decimals)
    if bulk:
        detections, evaluator_class = index_detections(gt, results, iou_type), BulkCOCOeval
    else:
        detections, evaluator_class = gt.loadRes(results), COCOeval_faster
    evaluator = evaluator_class(gt, detections, evaluated_type or iou_type,
                                print_function=lambda *args: None)
    VARIANTS[variant](evaluator.params, gt)
    evaluator.evaluate()
    evaluator.accumulate()
    return evaluator


def assert_same_evaluation(bulk, reference) -> None:
    for key in ('precision', 'recall', 'scores'):
        assert np.array_equal(bulk.eval[key], reference.eval[key]), key
    assert bulk.eval['matched'] == reference.eval['matched']
    nonempty = {pair for pair, iou in reference.ious.items() if len(iou)}
    assert nonempty and {pair for pair, iou in bulk.ious.items() if len(iou)} == nonempty
    for pair in nonempty:
        assert np.array_equal(bulk.ious[pair], reference.ious[pair]), pair


@pytest.mark.parametrize('variant', list(VARIANTS))
@pytest.mark.parametrize('iou_type', IOU_TYPES)
def test_bulk_evaluation_is_faster_coco_eval(coco_set, iou_type, variant):
    reference = evaluated(coco_set, iou_type, variant, bulk=False)
    bulk = evaluated(coco_set, iou_type, variant, bulk=True)
    assert bulk._bulk_ious is not None  # the bulk path ran, not the fallback
    assert_same_evaluation(bulk, reference)
    assert (reference.eval['precision'] > 0).any() and (reference.eval['precision'] < 1).any()


@pytest.mark.parametrize('variant', ['default', 'class-agnostic', 'few detections'])
@pytest.mark.parametrize('iou_type', IOU_TYPES)
def test_tied_scores(coco_set, iou_type, variant):
    """Scores rounded to one decimal: many ties, which both order by file position (a stable
    sort), within a category and, class-agnostic, across the categories of an image."""
    reference = evaluated(coco_set, iou_type, variant, bulk=False, score_decimals=1)
    bulk = evaluated(coco_set, iou_type, variant, bulk=True, score_decimals=1)
    assert_same_evaluation(bulk, reference)


def test_truncation_matters_in_the_set(coco_set):
    """The dense image's 150 detections exceed maxDets 100: the variants above check that the
    bulk path cuts each group after the same detections as faster-coco-eval."""
    at_100 = evaluated(coco_set, 'bbox', 'default', bulk=True).eval['precision']
    at_1000 = evaluated(coco_set, 'bbox', 'proposal_nums', bulk=True).eval['precision']
    assert not np.array_equal(at_100[..., -1], at_1000[..., -1])


def test_boundary_iou_runs_faster_coco_eval_own_code(coco_set):
    reference = evaluated(coco_set, 'segm', 'default', bulk=False, evaluated_type='boundary')
    gt = ground_truth(coco_set)
    evaluator = BulkCOCOeval(gt, gt.loadRes(json.loads(coco_set['segm'].read_text())),
                             'boundary', print_function=lambda *args: None)
    evaluator.evaluate()
    evaluator.accumulate()
    assert evaluator._bulk_ious is None  # faster-coco-eval's own _prepare and computeIoU
    assert_same_evaluation(evaluator, reference)


@pytest.mark.parametrize('iou_type', IOU_TYPES)
def test_index_is_load_res(coco_set, iou_type):
    gt = ground_truth(coco_set)
    results = json.loads(coco_set[iou_type].read_text())
    reference = gt.loadRes(copy.deepcopy(results))
    index = index_detections(gt, results, iou_type)
    # loadRes's additions that no evaluation reads: a segm result's mask box, a box polygon
    extra = 'bbox' if iou_type == 'segm' else 'segmentation'
    expected = {i: {k: v for k, v in ann.items() if k != extra}
                for i, ann in reference.anns.items()}
    assert index.anns == expected
    assert index.dataset['annotations'] is results  # indexed in place, as loadRes does
    def ids(image_to_anns):
        return {image: [ann['id'] for ann in anns] for image, anns in image_to_anns.items()}
    assert ids(index.imgToAnns) == ids(reference.imgToAnns)
    assert all(ann is index.anns[ann['id']] for anns in index.imgToAnns.values() for ann in anns)
    assert index.catToImgs == reference.catToImgs
    assert index.imgs == reference.imgs and index.cats == reference.cats
    assert index.dataset['categories'] == reference.dataset['categories']
    assert index.dataset['images'] == reference.dataset['images']
    assert index.getAnnIds(imgIds=[2], catIds=[1]) == reference.getAnnIds(imgIds=[2], catIds=[1])


def test_index_errors(coco_set):
    gt = ground_truth(coco_set)
    results = json.loads(coco_set['bbox'].read_text())
    foreign = copy.deepcopy(results)
    foreign[3]['image_id'] = 999
    with pytest.raises(ValueError, match=r'images that are not in the annotations: \[999\]'):
        index_detections(gt, foreign, 'bbox')
    short = copy.deepcopy(results)
    short[5]['bbox'] = [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match=r'result \[5\] has bbox \[1.0, 2.0, 3.0\]: a box is'):
        index_detections(gt, short, 'bbox')
    with pytest.raises(ValueError, match="iou_type='keypoints': use bbox or segm"):
        index_detections(gt, results, 'keypoints')
