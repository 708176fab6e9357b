"""COCO evaluation of saved result files, without a model (``tools/coco_eval.py``).

The result files are those mmdet's ``CocoMetric`` writes with ``outfile_prefix`` (and the COCO
detection format in general): a JSON list of ``{image_id, category_id, bbox, score}`` for
``bbox`` and ``{image_id, category_id, segmentation, score}`` for ``segm``, ``segmentation``
being an RLE. They are checked against the annotation file first, so that results of another
annotation set, or a file that is not a result list, are an error naming the file instead of
an ``AssertionError`` or a ``KeyError`` inside pycocotools, or a silent AP of 0.

The numbers are pycocotools' ``COCOeval`` with its default parameters (``maxDets`` 1, 10,
100). mmdet's ``CocoMetric`` sets ``maxDets`` to its ``proposal_nums`` (100, 300, 1000), so its
AP can differ from these when an image has more than 100 detections, and its AR columns are
AR@100/300/1000.
"""
from __future__ import annotations

import contextlib
import io
import json
import os.path as osp
from typing import Any

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..engine.atomic_io import atomic_write
from ..engine.data_checks import check_coco_annotation

IOU_TYPES = ('bbox', 'segm')
# The 12 numbers of COCOeval.summarize(), in its order.
METRIC_NAMES = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'AR1', 'AR10', 'AR100', 'ARs', 'ARm',
                'ARl')
# What each result of an iou type needs besides image_id, category_id and score.
_RESULT_KEY = dict(bbox='bbox', segm='segmentation')


def load_annotations(ann_file: str) -> COCO:
    """The checked annotation file as a pycocotools ``COCO``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it is not JSON, not COCO (``images``, ``annotations``, ``categories``), or
            an annotation names an unknown image or category.
    """
    dataset = check_coco_annotation(ann_file)
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # "creating index..."
        coco.createIndex()
    return coco


def _preview(ids: list) -> str:
    shown = ', '.join(str(i) for i in ids[:5])
    return f'{shown}, ... ({len(ids)} in all)' if len(ids) > 5 else shown


def load_results(results_file: str, coco: COCO, iou_type: str,
                 ann_file: str = 'the annotation file') -> list[dict[str, Any]]:
    """Read and check a results file of ``iou_type`` against the annotations ``coco``.

    Args:
        ann_file: the annotation file's name, for the error messages.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it is not JSON, not a non-empty list of results with the keys of
            ``iou_type``, or names images or categories that ``coco`` does not have.
    """
    if iou_type not in IOU_TYPES:
        raise ValueError(f'iou_type={iou_type!r}: use one of {IOU_TYPES}')
    if not osp.isfile(results_file):
        raise FileNotFoundError(f'results file {results_file!r} does not exist')
    try:
        with open(results_file, encoding='utf-8') as f:
            results = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f'results file {results_file!r} is not JSON: {error}') from error
    if not isinstance(results, list):
        hint = ' (it looks like an annotation file)' \
            if isinstance(results, dict) and 'annotations' in results else ''
        raise ValueError(f'results file {results_file!r} is not a list of {iou_type} results '
                         f'but a {type(results).__name__}{hint}')
    if not results:
        raise ValueError(f'results file {results_file!r} is empty: no {iou_type} results to '
                         'evaluate')
    needed = ('image_id', 'category_id', 'score', _RESULT_KEY[iou_type])
    for index, result in enumerate(results):
        missing = [key for key in needed if not isinstance(result, dict) or key not in result]
        if missing:
            raise ValueError(f'results file {results_file!r}: result [{index}] has no '
                             f'{", ".join(missing)} (a {iou_type} result needs {needed})')
    unknown_images = sorted({r['image_id'] for r in results} - set(coco.getImgIds()),
                            key=str)
    if unknown_images:
        raise ValueError(f'results file {results_file!r} is for another annotation set: image '
                         f'ids {_preview(unknown_images)} not in {ann_file}')
    categories = set(coco.getCatIds())
    unknown_categories = sorted({r['category_id'] for r in results} - categories, key=str)
    if unknown_categories:
        raise ValueError(f'results file {results_file!r}: category ids '
                         f'{_preview(unknown_categories)} are not among the categories of '
                         f'{ann_file} ({_preview(sorted(categories))})')
    return results


def evaluate(coco: COCO, results: list[dict[str, Any]],
             iou_type: str) -> tuple[dict[str, float], list[str]]:
    """COCOeval of checked ``results`` against ``coco``.

    Returns:
        ``(metrics, lines)``: the 12 numbers by :data:`METRIC_NAMES`, and COCOeval's own
        summary lines, one per number.
    """
    if iou_type == 'segm':
        # pycocotools' loadRes takes a result's area from its box whenever it has one, and mmdet
        # writes boxes into its segm results too: the areas, and so the small/medium/large
        # split, would be the boxes'. mmdet's CocoMetric and detectron2 drop the boxes as well.
        results = [{k: v for k, v in r.items() if k != 'bbox'} for r in results]
    output = io.StringIO()
    with contextlib.redirect_stdout(output):  # pycocotools prints progress and the summary
        detections = coco.loadRes(results)
        evaluator = COCOeval(coco, detections, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        summary_start = output.tell()
        evaluator.summarize()
    lines = output.getvalue()[summary_start:].strip().splitlines()
    metrics = {name: float(value) for name, value in zip(METRIC_NAMES, evaluator.stats)}
    return metrics, lines


def evaluate_files(ann_file: str, result_files: dict[str, str]) -> dict[str, Any]:
    """Evaluate result files of one annotation file.

    Args:
        ann_file: the COCO annotation file (ground truth).
        result_files: results file by iou type (``'bbox'``, ``'segm'``).

    Returns:
        ``{'ann_file': ..., IOU_TYPE: {'results_file': ..., 'num_results': ...,
        'metrics': {AP: ..., ...}, 'lines': [...]}}`` for each given iou type. Every file is
        checked before any evaluation starts.
    """
    if not result_files:
        raise ValueError('no results file to evaluate: give a bbox and/or a segm results file')
    unknown = sorted(set(result_files) - set(IOU_TYPES))
    if unknown:
        raise ValueError(f'iou types {unknown} are not supported; use {IOU_TYPES}')
    coco = load_annotations(ann_file)
    loaded = {iou_type: load_results(path, coco, iou_type, ann_file)
              for iou_type, path in result_files.items()}
    summary: dict[str, Any] = dict(ann_file=ann_file)
    for iou_type, results in loaded.items():
        num_results = len(results)
        metrics, lines = evaluate(coco, results, iou_type)
        summary[iou_type] = dict(results_file=result_files[iou_type], num_results=num_results,
                                 metrics=metrics, lines=lines)
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as text: per iou type, COCOeval's 12 lines, each prefixed by its name."""
    out = []
    for iou_type in IOU_TYPES:
        if iou_type not in summary:
            continue
        part = summary[iou_type]
        out.append(f"{iou_type}: {part['results_file']} ({part['num_results']} results)")
        for name, line in zip(METRIC_NAMES, part['lines']):
            out.append(f'  {name:<6}{line.strip()}')
    return '\n'.join(out)


def save_summary(summary: dict[str, Any], path: str) -> None:
    """Write the summary as JSON, atomically (all or nothing)."""
    data = {key: value if not isinstance(value, dict)
            else {k: v for k, v in value.items() if k != 'lines'}
            for key, value in summary.items()}
    atomic_write(json.dumps(data, indent=2).encode('utf-8'), path)
