"""``FastCocoMetric``: mmdet's ``CocoMetric`` computed by faster-coco-eval (default) or
pycocotools, with the numbers of mmdet's ``CocoMetric`` from either.

``val_evaluator = dict(type='FastCocoMetric', backend='faster_coco_eval', ann_file=...,
metric=['bbox', 'segm'])`` takes every argument of ``CocoMetric`` and reports the same keys
(``coco/bbox_mAP``, ..., ``AR@100`` for proposals, per-class precisions with ``classwise``). The
per-image matching and accumulation run in faster-coco-eval's C++, the indexing of the results and
their IoUs in bulk (:mod:`convnext_dense.evaluation.bulk`), one iou type after the other: unlike
``tools/coco_eval.py`` it does not fork, as it runs inside the training or test process, where a
fork next to CUDA and OpenMP threads is not safe. The 12 numbers follow pycocotools'
``summarize()`` on both backends (see
:mod:`convnext_dense.evaluation.coco_eval`), so ``mAP`` stays AP@100 under ``CocoMetric``'s
``proposal_nums`` (100, 300, 1000), as ``CocoMetric`` reports it.

It is registered as ``FastCocoMetric``, not ``FasterCocoMetric``: onedl-mmdetection registers a
``FasterCocoMetric`` of its own in mmdet's registry (faster-coco-eval's summary: ``mAP`` at
``maxDets[-1]`` = 1000), which would hide a root-registry entry of that name, or be replaced by
it. The class is built on first use, so that ``import convnext_dense`` does not import mmdet's
evaluation code for mmseg users.
"""
from __future__ import annotations

import functools
import os.path as osp
import tempfile
from collections import OrderedDict

import numpy as np
from mmengine.registry import METRICS

from .coco_eval import (
    DEFAULT_BACKEND,
    check_backend,
    coco_from_dataset,
    load_detections,
    paused_gc,
    run_cocoeval,
    summarize,
)

# mmdet's CocoMetric names of the 12 numbers (its AR names assume proposal_nums 100/300/1000).
METRIC_ITEMS = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l', 'AR@100', 'AR@300',
                'AR@1000', 'AR_s@1000', 'AR_m@1000', 'AR_l@1000')
DETECTION_ITEMS = METRIC_ITEMS[:6]
PROPOSAL_ITEMS = METRIC_ITEMS[6:]


def _class_ap(precision: np.ndarray) -> float:
    valid = precision[precision > -1]
    return float(np.mean(valid)) if valid.size else float('nan')


@functools.cache
def _metric_class() -> type:
    from mmdet.datasets.api_wrappers import COCO as MMDetCOCO
    from mmdet.evaluation.metrics import CocoMetric
    from mmengine.fileio import load
    from mmengine.logging import MMLogger
    from terminaltables import AsciiTable

    class FastCocoMetric(CocoMetric):
        """mmdet's ``CocoMetric`` with a choice of COCO library.

        Args:
            backend: ``'faster_coco_eval'`` (C++ matching and accumulation) or
                ``'pycocotools'`` (pycocotools' own ``COCOeval``); the same numbers.
            *args, **kwargs: those of mmdet's ``CocoMetric``, except ``use_mp_eval`` (mmdet's
                multi-process pycocotools evaluation; use ``CocoMetric`` for it).
        """

        def __init__(self, *args, backend: str = DEFAULT_BACKEND, **kwargs) -> None:
            self.backend = check_backend(backend)
            if kwargs.get('use_mp_eval'):
                raise ValueError('use_mp_eval=True is mmdet\'s multi-process pycocotools '
                                 f'evaluation, which FastCocoMetric does not run; keep '
                                 f'backend={DEFAULT_BACKEND!r} (C++) or use CocoMetric')
            super().__init__(*args, **kwargs)  # reads ann_file with mmdet's (pycocotools') COCO
            if self._coco_api is not None and self.backend != 'pycocotools':
                self._coco_api = self._coco_index(self._coco_api.dataset)

        def _coco_index(self, dataset: dict):
            """The backend's ``COCO`` of an annotation dict (the dict is shared)."""
            if self.backend == 'pycocotools':
                # mmdet's COCO: pycocotools' with the snake_case names that
                # CocoMetric.fast_eval_recall calls (faster-coco-eval's COCO has them too)
                coco = MMDetCOCO()
                coco.dataset = dataset
                coco.createIndex()
                return coco
            return coco_from_dataset(dataset, self.backend)

        def compute_metrics(self, results: list) -> dict[str, float]:
            """``CocoMetric.compute_metrics`` with the evaluation run by ``self.backend``."""
            logger = MMLogger.get_current_instance()
            gts, preds = zip(*results)
            tmp_dir = None
            if self.outfile_prefix is None:
                tmp_dir = tempfile.TemporaryDirectory()
                outfile_prefix = osp.join(tmp_dir.name, 'results')
            else:
                outfile_prefix = self.outfile_prefix
            try:
                with paused_gc():
                    return self._compute(gts, preds, outfile_prefix, logger)
            finally:
                if tmp_dir is not None:
                    tmp_dir.cleanup()

        def _compute(self, gts, preds, outfile_prefix: str, logger) -> dict[str, float]:
            if self._coco_api is None:
                logger.info('Converting ground truth to coco format...')
                coco_json_path = self.gt_to_coco_json(gt_dicts=gts,
                                                      outfile_prefix=outfile_prefix)
                self._coco_api = self._coco_index(load(coco_json_path))
            if self.cat_ids is None:
                self.cat_ids = self._coco_api.get_cat_ids(cat_names=self.dataset_meta['classes'])
            if self.img_ids is None:
                self.img_ids = self._coco_api.get_img_ids()
            result_files = self.results2json(preds, outfile_prefix)
            eval_results = OrderedDict()
            if self.format_only:
                logger.info(f'results are saved in {osp.dirname(outfile_prefix)}')
                return eval_results
            for item in self.metric_items or ():
                if item not in METRIC_ITEMS:
                    raise KeyError(f'metric item "{item}" is not supported; use {METRIC_ITEMS}')

            for metric in self.metrics:
                logger.info(f'Evaluating {metric}...')
                if metric == 'proposal_fast':
                    recalls = self.fast_eval_recall(preds, self.proposal_nums, self.iou_thrs,
                                                    logger=logger)
                    for num, recall in zip(self.proposal_nums, recalls):
                        eval_results[f'AR@{num}'] = recall
                    logger.info(''.join(f'\nAR@{num}\t{recall:.4f}'
                                        for num, recall in zip(self.proposal_nums, recalls)))
                    continue
                iou_type = 'bbox' if metric == 'proposal' else metric
                if metric not in result_files:
                    raise KeyError(f'{metric} is not in results')
                predictions = load(result_files[metric])
                if not predictions:
                    logger.error('The testing results of the whole dataset is empty.')
                    break
                detections = load_detections(self._coco_api, predictions, iou_type)
                evaluator = run_cocoeval(
                    self._coco_api, detections, iou_type, self.backend, img_ids=self.img_ids,
                    cat_ids=self.cat_ids, max_dets=self.proposal_nums, iou_thrs=self.iou_thrs,
                    use_cats=metric != 'proposal', log=logger.info, label=metric)
                stats, lines = summarize(evaluator, self.backend)
                logger.info('\n' + '\n'.join(lines))
                value = dict(zip(METRIC_ITEMS, stats))
                if metric == 'proposal':
                    for item in self.metric_items or PROPOSAL_ITEMS:
                        eval_results[item] = round(value[item], 3)
                    continue
                if self.classwise:
                    self._log_classwise(evaluator.eval['precision'], eval_results, logger)
                for item in self.metric_items or DETECTION_ITEMS:
                    eval_results[f'{metric}_{item}'] = round(value[item], 3)
                logger.info(f'{metric}_mAP_copypaste: '
                            + ' '.join(f'{v:.3f}' for v in stats[:6]))
            return eval_results

        def _log_classwise(self, precisions: np.ndarray, eval_results: dict, logger) -> None:
            """Per-category AP as ``CocoMetric`` reports it: at the last ``maxDets`` (all
            areas; IoU 0.5 and 0.75; small, medium and large), ``{name}_precision`` being the
            AP over all IoUs."""
            if len(self.cat_ids) != precisions.shape[2]:
                raise RuntimeError(f'{len(self.cat_ids)} categories evaluated, '
                                   f'{precisions.shape[2]} in the precision array')
            rows = []
            for index, cat_id in enumerate(self.cat_ids):
                name = self._coco_api.loadCats(cat_id)[0]['name']
                per_category = precisions[:, :, index, :, -1]
                aps = [_class_ap(per_category[:, :, 0]), _class_ap(per_category[0, :, 0]),
                       _class_ap(per_category[5, :, 0])]
                aps += [_class_ap(per_category[:, :, area]) for area in (1, 2, 3)]
                eval_results[f'{name}_precision'] = round(aps[0], 3)
                rows.append([name] + [f'{round(ap, 3)}' for ap in aps])
            headers = ['category', 'mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l']
            logger.info('\n' + AsciiTable([headers] + rows).table)

    return FastCocoMetric


@METRICS.register_module(name='FastCocoMetric')
def build_fast_coco_metric(*args, **kwargs):
    """mmdet's ``CocoMetric`` evaluated by faster-coco-eval or pycocotools (same arguments, plus
    ``backend``)."""
    return _metric_class()(*args, **kwargs)
