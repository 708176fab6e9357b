"""faster-coco-eval fed in bulk: detections indexed, and their IoUs with the ground truth computed,
group by group instead of result by result.

faster-coco-eval matches and accumulates in C++, but prepares that work in Python, one result at
a time: ``COCO.loadRes`` calls the mask library twice per result (area, box) and walks every
result again to index it; ``COCOeval._prepare`` re-encodes every detection mask into a second RLE
and indexes every result once more; ``computeIoU`` runs once per (image, category) pair in a
thread pool (whose threads mostly wait for the GIL). On 2,000 images x 100 detections that Python
is most of an evaluation's time. Here the same data is built with one mask-library call for all
areas, NumPy sorts for the grouping and the score order, and one ``mask_api.iou`` call per
(image, category) group, on the masks as the results hold them.

The C++ matching and accumulation (``COCOevalEvaluateAccumulate``) are faster-coco-eval's own,
fed the same annotations in the same order and the IoU matrices of its own ``mask_api.iou`` on the
same boxes and RLEs, detections in the same (stable) score order: the precision and recall arrays
are bitwise those of ``COCOeval_faster`` after ``loadRes`` (``tests/evaluation/test_bulk.py``).
Anything else (keypoints, boundary IoU, LVIS style) takes faster-coco-eval's own code.
"""
from __future__ import annotations

import copy
from collections import defaultdict
from operator import itemgetter
from typing import Any

import numpy as np
from faster_coco_eval import COCO, COCOeval_faster
from faster_coco_eval.core import mask as mask_api

_IMAGE_ID = itemgetter('image_id')
_CATEGORY_ID = itemgetter('category_id')
_SCORE = itemgetter('score')


def _runs(keys: np.ndarray) -> np.ndarray:
    """Start offsets of the runs of equal rows of sorted ``keys`` (n or n x k), and n last."""
    if len(keys) == 0:
        return np.zeros(1, np.int64)
    change = keys[1:] != keys[:-1]
    if change.ndim == 2:
        change = change.any(axis=1)
    return np.concatenate([[0], np.flatnonzero(change) + 1, [len(keys)]])


def _as_objects(items: list) -> np.ndarray:
    """``items`` as a 1-d object array (for fancy indexing), whatever the items are."""
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def _is_box(box: Any) -> bool:
    return (isinstance(box, (list, tuple)) and len(box) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box))


def result_boxes(results: list[dict[str, Any]]) -> np.ndarray:
    """The ``bbox`` of each result as an n x 4 float64 array (the doubles the C++ reads).

    Raises:
        ValueError: a box is not four numbers (naming the first such result).
    """
    if not results:
        return np.zeros((0, 4))
    try:
        boxes = np.array(list(map(itemgetter('bbox'), results)), dtype=np.float64)
    except (TypeError, ValueError):  # ragged, or not numbers
        boxes = None
    if boxes is not None and boxes.shape == (len(results), 4):
        return boxes
    bad = next((i for i, result in enumerate(results) if not _is_box(result['bbox'])), 0)
    raise ValueError(f'result [{bad}] has bbox {results[bad]["bbox"]!r}: a box is '
                     '[x, y, width, height]')


def index_detections(coco_gt: COCO, results: list[dict[str, Any]], iou_type: str) -> COCO:
    """What ``coco_gt.loadRes(results)`` gives for ``bbox`` or ``segm`` results, built in bulk.

    Like ``loadRes``, it numbers the results from 1 (``id``) and sets ``iscrowd=0`` and ``area``
    (the box's ``w * h`` for ``bbox``, the mask's pixel count for ``segm``) in the result dicts
    themselves. Unlike it, a segm result's area is its mask's even when the result has a box
    (``loadRes`` would take the box's, see ``coco_eval.load_detections``), and it adds neither
    the mask's box to segm results nor the box polygon to box results: no bbox or segm
    evaluation reads them, and the mask's box alone would cost a third of a segm indexing.

    Raises:
        ValueError: a result names an image that ``coco_gt`` does not have, or has a box that is
            not four numbers.
    """
    if iou_type not in ('bbox', 'segm'):
        raise ValueError(f'iou_type={iou_type!r}: use bbox or segm')
    image_ids = list(map(_IMAGE_ID, results))
    unknown = set(image_ids) - coco_gt.imgs.keys()
    if unknown:
        raise ValueError(f'results name images that are not in the annotations: '
                         f'{sorted(unknown, key=str)[:5]}')
    if iou_type == 'bbox':
        boxes = result_boxes(results)
        areas = (boxes[:, 2] * boxes[:, 3]).tolist()
        for number, (result, area) in enumerate(zip(results, areas), 1):
            result['id'] = number
            result['area'] = area
            result['iscrowd'] = 0
    else:
        masks = list(map(itemgetter('segmentation'), results))
        areas = mask_api.area(masks).tolist() if masks else []
        for number, (result, area) in enumerate(zip(results, areas), 1):
            result['id'] = number
            result['area'] = area
            result['iscrowd'] = 0

    detections = COCO()
    detections.dataset = dict(info=copy.deepcopy(coco_gt.dataset.get('info', {})),
                              images=list(coco_gt.dataset['images']),
                              categories=copy.deepcopy(coco_gt.dataset['categories']),
                              annotations=results)
    detections.anns = dict(zip(range(1, len(results) + 1), results))
    detections.imgs = dict(coco_gt.imgs)
    detections.cats = {cat['id']: cat for cat in detections.dataset['categories']}
    # createIndex's per-image and per-category lists, both in file order
    items = _as_objects(results)
    images = np.asarray(image_ids, dtype=np.int64)
    order = np.argsort(images, kind='stable')
    runs = _runs(images[order])
    detections.imgToAnns = defaultdict(list, {
        int(images[order[start]]): items[order[start:end]].tolist()
        for start, end in zip(runs[:-1], runs[1:])})
    categories = np.asarray(list(map(_CATEGORY_ID, results)), dtype=np.int64)
    order = np.argsort(categories, kind='stable')
    runs = _runs(categories[order])
    detections.catToImgs = defaultdict(list, {
        int(categories[order[start]]): images[order[start:end]].tolist()
        for start, end in zip(runs[:-1], runs[1:])})
    return detections


class BulkCOCOeval(COCOeval_faster):
    """``COCOeval_faster`` whose ``_prepare`` indexes the detections and computes all IoUs in
    bulk (``computeIoU`` then looks them up); the same arrays as ``COCOeval_faster``.

    Applies to ``bbox`` and ``segm`` with ``useCats`` on or off; keypoints, ``boundary`` and
    ``lvis_style`` evaluations run faster-coco-eval's own ``_prepare`` and ``computeIoU``.
    """

    def __init__(self, *args, **kwargs) -> None:
        # the IoUs are ready before evaluate() asks for them: no thread pool to hand them out
        kwargs.setdefault('rle_iou_max_workers', 1)
        super().__init__(*args, **kwargs)
        self._bulk_ious: dict | None = None

    def _bulk_applies(self) -> bool:
        p = self.params
        cat_ids = list(p.catIds)
        return (p.iouType in ('bbox', 'segm') and not p.compute_boundary and not self.lvis_style
                and len(p.imgIds) > 0 and len(cat_ids) > 0 and len(set(cat_ids)) == len(cat_ids))

    def computeIoU(self, imgId: int, catId: int):  # noqa: N802,N803 (faster-coco-eval's names)
        if self._bulk_ious is None:
            return super().computeIoU(imgId, catId)
        return self._bulk_ious.get((imgId, catId), [])

    def _prepare(self) -> None:
        self._bulk_ious = None
        if not self._bulk_applies():
            super()._prepare()
            return
        p = self.params
        self.gt_dataset.clean()
        self.dt_dataset.clean()
        use_cats = bool(p.useCats)
        cat_ids = [int(c) for c in p.catIds]
        max_dets = int(p.maxDets[-1])
        is_segm = bool(p.compute_rle)

        # ground truth: faster-coco-eval's own selection, flags and RLEs (a few per image)
        gts = self.cocoGt.loadAnns(self.cocoGt.getAnnIds(imgIds=p.imgIds, catIds=p.catIds))
        for gt in gts:  # crowd regions match but do not count, as in both libraries
            gt['ignore'] = int(gt.get('iscrowd', 0))
        if is_segm:
            sizes = {}
            for gt in gts:
                image = self.cocoGt.imgs[gt['image_id']]
                sizes[gt['image_id']] = (image['height'], image['width'])
            mask_api.calculateRleForAllAnnotations(gts, sizes, True, False,
                                                   self.boundary_dilation_ratio,
                                                   self.boundary_cpu_count)
        append = self.gt_dataset.append_ref
        gt_groups: dict[tuple[int, int], list] = defaultdict(list)
        for gt in gts:
            append(gt['image_id'], gt['category_id'], gt)
            gt_groups[gt['image_id'], gt['category_id'] if use_cats else -1].append(gt)
        if not use_cats:  # the C++ merges an image's categories in the order of catIds
            position = {c: i for i, c in enumerate(cat_ids)}
            for group in gt_groups.values():
                group.sort(key=lambda gt: position[gt['category_id']])

        # detections: those of the evaluated images and categories, in file order
        dts = self.cocoDt.dataset['annotations']
        images = np.fromiter(map(_IMAGE_ID, dts), dtype=np.int64, count=len(dts))
        categories = np.fromiter(map(_CATEGORY_ID, dts), dtype=np.int64, count=len(dts))
        keep = np.isin(images, np.asarray(p.imgIds, dtype=np.int64)) & np.isin(categories,
                                                                                cat_ids)
        if not keep.all():
            kept = np.flatnonzero(keep)
            dts = [dts[i] for i in kept.tolist()]
            images, categories = images[kept], categories[kept]
        list(map(self.dt_dataset.append_ref, images.tolist(), categories.tolist(), dts))
        scores = np.fromiter(map(_SCORE, dts), dtype=np.float64, count=len(dts))

        # each (image, category) group by descending score, ties in file order: the order of
        # computeIoU's stable argsort of -score, and of the C++'s stable sort
        if use_cats:
            order = np.lexsort((-scores, categories, images))
            keys = np.stack([images, categories], axis=1)[order]
        else:  # per image, merged in catIds order before the stable sort by score
            position = {c: i for i, c in enumerate(cat_ids)}
            rank = np.fromiter(map(position.__getitem__, categories.tolist()), dtype=np.int64,
                               count=len(categories))
            order = np.lexsort((rank, -scores, images))
            keys = images[order][:, None]
        runs = _runs(keys)
        if is_segm:
            payload = _as_objects(list(map(itemgetter('segmentation'), dts)))
        else:
            payload = result_boxes(dts)

        ious = {}
        for start, end in zip(runs[:-1].tolist(), runs[1:].tolist()):
            key = (int(keys[start, 0]), int(keys[start, 1]) if use_cats else -1)
            group = gt_groups.get(key)
            if not group:
                continue
            chosen = order[start:min(end, start + max_dets)]
            if is_segm:
                found, truth = payload[chosen].tolist(), [gt['rle'] for gt in group]
            else:
                found = payload[chosen]
                truth = np.array([gt['bbox'] for gt in group], dtype=np.float64).reshape(-1, 4)
            ious[key] = mask_api.iou(found, truth, [int(gt.get('iscrowd', 0)) for gt in group])
        self._bulk_ious = ious
        self._nonempty_iou_pairs = set(ious)
