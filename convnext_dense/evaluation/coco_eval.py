"""COCO box and mask AP of saved result files (``tools/coco_eval.py``), with faster-coco-eval or
pycocotools, and the 12 numbers of pycocotools' ``COCOeval.summarize()`` from either.

The result files are those mmdet's ``CocoMetric`` writes with ``outfile_prefix`` (and the COCO
detection format in general): a JSON list of ``{image_id, category_id, bbox, score}`` for
``bbox`` and ``{image_id, category_id, segmentation, score}`` for ``segm``, ``segmentation``
being an RLE. They are checked against the annotation file first, so that results of another
annotation set, or a file that is not a result list, are an error naming the file instead of
an ``AssertionError`` or a ``KeyError`` inside the COCO library, or a silent AP of 0.

Two backends compute the same numbers:

* ``'faster_coco_eval'`` (default): faster-coco-eval's ``COCOeval_faster``, whose per-image
  matching and accumulation run in C++ (a port of detectron2's ``COCOeval_opt``), fed in bulk
  (:mod:`.bulk`: the detections indexed and their IoUs computed per (image, category) group
  instead of per result in Python; bitwise the arrays of ``COCOeval_faster`` itself). Its
  precision/recall arrays are pycocotools' with one exception: pycocotools divides by
  ``tp + fp + np.spacing(1)``, which changes the quotient only where ``tp + fp == 1`` (precision
  ``1 - 2**-52`` instead of ``1.0``; the eps vanishes in any denominator >= 2). Each of the 12
  numbers is a mean of such values, so the two backends agree to ``eps * (number of values
  averaged)``, about 1e-12.
* ``'pycocotools'``: pycocotools' own ``COCOeval``, the reference.

Both report pycocotools' summary (:func:`pycocotools_summary`): its ``summarize()`` looks AP up at
``maxDets=100`` whatever ``params.maxDets`` holds (-1 when 100 is not among them) and the other
AP numbers and the per-area AR at ``maxDets[2]``; faster-coco-eval's own ``summarize()`` takes
every AP at ``maxDets[-1]`` instead. The two differ only for a ``maxDets`` other than (1, 10, 100),
e.g. mmdet's ``CocoMetric``, which sets ``maxDets`` to its ``proposal_nums`` (100, 300, 1000) and
reads ``mAP`` at 100 but ``mAP_50`` ... ``mAP_l`` at 1000; the tool uses pycocotools' default
(1, 10, 100), so its AR columns are AR@1/10/100.

:func:`evaluate_files` evaluates bbox and segm side by side in two forked processes on Linux
where the process may use two CPUs (``jobs``), sharing the annotation index; the numbers do not
depend on it.

This module imports neither torch nor mmengine, mmcv, mmdet (``tools/coco_eval.py`` starts in
well under a second); the COCO library of the chosen backend is imported on first use.
"""
from __future__ import annotations

import collections
import contextlib
import gc
import io
import json
import multiprocessing
import multiprocessing.connection
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any

import numpy as np

from .annotations import check_coco_annotation, read_json

BACKENDS = ('faster_coco_eval', 'pycocotools')
DEFAULT_BACKEND = 'faster_coco_eval'
IOU_TYPES = ('bbox', 'segm')
# The 12 numbers of COCOeval.summarize(), in its order.
METRIC_NAMES = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'AR1', 'AR10', 'AR100', 'ARs', 'ARm',
                'ARl')
DEFAULT_MAX_DETS = (1, 10, 100)
# What each result of an iou type needs besides image_id, category_id and score.
_RESULT_KEY = dict(bbox='bbox', segm='segmentation')

Log = Callable[[str], None]


def check_backend(backend: str) -> str:
    """``backend`` if it is one of :data:`BACKENDS`; a ``ValueError`` naming it otherwise."""
    if backend not in BACKENDS:
        raise ValueError(f'backend={backend!r}: use one of {BACKENDS}')
    return backend


def coco_api(backend: str) -> tuple[type, type]:
    """The ``(COCO, COCOeval)`` classes of ``backend``, imported on first use."""
    check_backend(backend)
    if backend == 'pycocotools':
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
        return COCO, COCOeval
    from faster_coco_eval import COCO

    from .bulk import BulkCOCOeval  # COCOeval_faster, prepared in bulk
    return COCO, BulkCOCOeval


@contextlib.contextmanager
def phase(log: Log | None, text: str) -> Iterator[None]:
    """Report ``text ...`` to ``log`` when a phase starts and its wall time when it ends, so that
    a long file shows where the time goes (neither library reports progress inside a phase)."""
    if log is None:
        yield
        return
    log(f'{text} ...')
    start = time.perf_counter()
    yield
    log(f'{text}: {time.perf_counter() - start:.2f} s')


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Python's cyclic garbage collector off for the duration: loading and indexing hundreds of
    thousands of result dicts (none of them in a reference cycle) otherwise makes it traverse the
    growing heap again and again, a fifth of the CPU time of a 2,000-image evaluation."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def coco_from_dataset(dataset: dict[str, Any], backend: str = DEFAULT_BACKEND):
    """``backend``'s ``COCO`` index of an annotation dict (the dict is shared, not copied)."""
    coco_class, _ = coco_api(backend)
    coco = coco_class()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints "creating index..."
        coco.createIndex()
    return coco


def load_annotations(ann_file: str, backend: str = DEFAULT_BACKEND):
    """The checked annotation file as ``backend``'s ``COCO``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it is not JSON, not COCO (``images``, ``annotations``, ``categories``), or
            an annotation names an unknown image or category; ``backend`` is unknown.
    """
    check_backend(backend)
    return coco_from_dataset(check_coco_annotation(ann_file), backend)


def _preview(ids: list) -> str:
    shown = ', '.join(str(i) for i in ids[:5])
    return f'{shown}, ... ({len(ids)} in all)' if len(ids) > 5 else shown


def _raise_incomplete_result(results_file: str, results: list, iou_type: str,
                             needed: tuple[str, ...]) -> None:
    """A ``ValueError`` naming the first result that is not a dict with the ``needed`` keys."""
    needed_set = set(needed)
    for index, result in enumerate(results):
        if not isinstance(result, dict) or not needed_set <= result.keys():
            missing = [key for key in needed if not isinstance(result, dict) or key not in result]
            raise ValueError(f'results file {results_file!r}: result [{index}] has no '
                             f'{", ".join(missing)} (a {iou_type} result needs {needed})')
    raise AssertionError('called for results that all have the needed keys')


def load_results(results_file: str, coco, iou_type: str,
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
    results = read_json(results_file, 'results file')
    if not isinstance(results, list):
        hint = ' (it looks like an annotation file)' \
            if isinstance(results, dict) and 'annotations' in results else ''
        raise ValueError(f'results file {results_file!r} is not a list of {iou_type} results '
                         f'but a {type(results).__name__}{hint}')
    if not results:
        raise ValueError(f'results file {results_file!r} is empty: no {iou_type} results to '
                         'evaluate')
    needed = ('image_id', 'category_id', 'score', _RESULT_KEY[iou_type])
    try:  # one pass in C over hundreds of thousands of results; the loop below names a bad one
        collections.deque(map(itemgetter(*needed), results), maxlen=0)
    except (KeyError, TypeError, IndexError):
        _raise_incomplete_result(results_file, results, iou_type, needed)
    unknown_images = sorted(set(map(itemgetter('image_id'), results)) - set(coco.getImgIds()),
                            key=str)
    if unknown_images:
        raise ValueError(f'results file {results_file!r} is for another annotation set: image '
                         f'ids {_preview(unknown_images)} not in {ann_file}')
    categories = set(coco.getCatIds())
    unknown_categories = sorted(set(map(itemgetter('category_id'), results)) - categories,
                                key=str)
    if unknown_categories:
        raise ValueError(f'results file {results_file!r}: category ids '
                         f'{_preview(unknown_categories)} are not among the categories of '
                         f'{ann_file} ({_preview(sorted(categories))})')
    return results


def load_detections(coco, results: list[dict[str, Any]], iou_type: str):
    """``coco.loadRes(results)``: the results indexed as a ``COCO`` of the same backend (for
    faster-coco-eval, built in bulk by :func:`.bulk.index_detections`, the same index).

    For ``segm``, the areas are the masks' whatever boxes the results hold: both libraries'
    ``loadRes`` take a result's area from its box whenever it has one, and mmdet writes boxes
    into its segm results too, so the areas, and with them the small/medium/large split, would
    be the boxes'. The boxes are left out of what pycocotools' ``loadRes`` sees (mmdet's
    ``CocoMetric`` and detectron2 drop them as well); the bulk index takes every segm area from
    the mask.
    """
    faster_coco_eval = sys.modules.get('faster_coco_eval')  # imported if coco is its COCO
    if faster_coco_eval is not None and isinstance(coco, faster_coco_eval.COCO):
        from .bulk import index_detections
        return index_detections(coco, results, iou_type)
    if iou_type == 'segm' and any('bbox' in r for r in results):
        results = [{k: v for k, v in r.items() if k != 'bbox'} for r in results]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools: "Loading and preparing..."
        return coco.loadRes(results)


def _silent(*args, **kwargs) -> None:
    """faster-coco-eval's ``print_function`` when the caller reports phases itself."""


def run_cocoeval(coco, detections, iou_type: str, backend: str = DEFAULT_BACKEND, *,
                 img_ids: Sequence[int] | None = None,
                 cat_ids: Sequence[int] | None = None,
                 max_dets: Sequence[int] = DEFAULT_MAX_DETS,
                 iou_thrs: Any = None,
                 use_cats: bool = True,
                 log: Log | None = None,
                 label: str | None = None):
    """``backend``'s ``COCOeval`` of ``detections`` against ``coco``, evaluated and accumulated
    (``evaluator.eval`` holds the precision and recall arrays).

    Args:
        img_ids, cat_ids: evaluate these images / categories (default: all of ``coco``).
        max_dets: ``params.maxDets``; at least 3 values, as ``summarize()`` reads three.
        iou_thrs: ``params.iouThrs`` (default: 0.50:0.05:0.95).
        use_cats: ``params.useCats`` (False: class-agnostic, as for proposals).
        log: reports the phases with their wall time.
        label: names the evaluation in the phase lines (default: ``iou_type``).
    """
    check_backend(backend)
    if len(max_dets) < 3:
        raise ValueError(f'max_dets={tuple(max_dets)}: COCOeval.summarize() needs at least 3 '
                         'values (AR at the first three)')
    _, evaluator_class = coco_api(backend)
    extra = dict(print_function=_silent) if backend == 'faster_coco_eval' else {}
    evaluator = evaluator_class(coco, detections, iou_type, **extra)
    params = evaluator.params
    if img_ids is not None:
        params.imgIds = list(img_ids)
    if cat_ids is not None:
        params.catIds = list(cat_ids)
    params.maxDets = list(max_dets)
    if iou_thrs is not None:
        params.iouThrs = iou_thrs
    params.useCats = int(use_cats)
    label = label or iou_type
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints each step
        if backend == 'faster_coco_eval':  # evaluate() matches and accumulates, in C++
            with phase(log, f'{label}: matching and accumulating ({backend})'):
                evaluator.evaluate()
                evaluator.accumulate()
        else:
            with phase(log, f'{label}: matching ({backend})'):
                evaluator.evaluate()
            with phase(log, f'{label}: accumulating ({backend})'):
                evaluator.accumulate()
    return evaluator


_SUMMARY_LINE = ' {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}'


def _summary_rows(max_dets: Sequence[int]) -> list[tuple[bool, float | None, str, int]]:
    """``(is_ap, iou_thr, area, max_det)`` of each of the 12 numbers as pycocotools 2.0's
    ``summarize()`` reads them: the first AP at ``maxDets=100`` (its default argument, not taken
    from the parameters), the other AP numbers and the per-area AR at ``maxDets[2]``."""
    first, second, third = max_dets[:3]
    return [(True, None, 'all', 100), (True, .5, 'all', third), (True, .75, 'all', third),
            (True, None, 'small', third), (True, None, 'medium', third),
            (True, None, 'large', third), (False, None, 'all', first),
            (False, None, 'all', second), (False, None, 'all', third),
            (False, None, 'small', third), (False, None, 'medium', third),
            (False, None, 'large', third)]


def pycocotools_summary(evaluator) -> tuple[list[float], list[str]]:
    """The 12 numbers and lines of pycocotools' ``COCOeval.summarize()`` from an accumulated
    evaluator of either backend (both hold ``eval['precision']`` [T, R, K, A, M] and
    ``eval['recall']`` [T, K, A, M]), indexed and averaged in pycocotools' order."""
    params = evaluator.params
    stats, lines = [], []
    for is_ap, iou_thr, area, max_det in _summary_rows(params.maxDets):
        values = evaluator.eval['precision' if is_ap else 'recall']
        if iou_thr is not None:
            values = values[np.where(iou_thr == params.iouThrs)[0]]
        area_index = [i for i, label in enumerate(params.areaRngLbl) if label == area]
        det_index = [i for i, m in enumerate(params.maxDets) if m == max_det]
        values = values[..., area_index, det_index]
        valid = values[values > -1]
        stats.append(float(np.mean(valid)) if valid.size else -1.0)
        iou = (f'{params.iouThrs[0]:0.2f}:{params.iouThrs[-1]:0.2f}' if iou_thr is None
               else f'{iou_thr:0.2f}')
        lines.append(_SUMMARY_LINE.format('Average Precision' if is_ap else 'Average Recall',
                                          '(AP)' if is_ap else '(AR)', iou, area, max_det,
                                          stats[-1]))
    return stats, lines


def summarize(evaluator, backend: str = DEFAULT_BACKEND) -> tuple[list[float], list[str]]:
    """pycocotools' 12 numbers and summary lines of an accumulated ``evaluator``: from its own
    ``summarize()`` with ``backend='pycocotools'``, from :func:`pycocotools_summary` otherwise."""
    if check_backend(backend) == 'pycocotools':
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            evaluator.summarize()
        return [float(v) for v in evaluator.stats], output.getvalue().splitlines()
    return pycocotools_summary(evaluator)


def evaluate(coco, results: list[dict[str, Any]], iou_type: str,
             backend: str = DEFAULT_BACKEND,
             log: Log | None = None) -> tuple[dict[str, float], list[str]]:
    """COCO evaluation of checked ``results`` against ``coco`` (a ``COCO`` of ``backend``) with
    pycocotools' default parameters.

    Returns:
        ``(metrics, lines)``: the 12 numbers by :data:`METRIC_NAMES`, and the summary lines of
        pycocotools' ``COCOeval.summarize()``, one per number.
    """
    coco_class, _ = coco_api(backend)
    if not isinstance(coco, coco_class):
        raise TypeError(f'coco is a {type(coco).__module__}.{type(coco).__name__}; '
                        f'backend={backend!r} needs its own COCO (load_annotations(ann_file, '
                        'backend))')
    with phase(log, f'{iou_type}: indexing {len(results)} results'):
        detections = load_detections(coco, results, iou_type)
    evaluator = run_cocoeval(coco, detections, iou_type, backend, log=log)
    stats, lines = summarize(evaluator, backend)
    return dict(zip(METRIC_NAMES, stats)), lines


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def can_fork() -> bool:
    """Whether :func:`evaluate_files` can fork its children (which share the parent's annotation
    index instead of loading it again): not on Windows."""
    return 'fork' in multiprocessing.get_all_start_methods()


def default_jobs(num_iou_types: int = len(IOU_TYPES)) -> int:
    """Processes :func:`evaluate_files` uses by default: on Linux one per iou type, at most one
    per CPU; elsewhere 1 (macOS can fork, but system libraries may not survive it, which is why
    Python no longer forks there by default; ``jobs=2`` asks for it)."""
    if not sys.platform.startswith('linux') or not can_fork():
        return 1
    return max(1, min(num_iou_types, available_cpus()))


def _evaluate_file(coco, results: list[dict[str, Any]], iou_type: str, results_file: str,
                   backend: str, log: Log | None) -> dict[str, Any]:
    num_results = len(results)
    metrics, lines = evaluate(coco, results, iou_type, backend, log)
    return dict(results_file=results_file, num_results=num_results, metrics=metrics, lines=lines)


def _load_checked(coco, iou_type: str, path: str, ann_file: str,
                  log: Log | None) -> list[dict[str, Any]]:
    with phase(log, f'{iou_type}: loading results {path}'):
        return load_results(path, coco, iou_type, ann_file)


# What a forked child evaluated, kept until it ends: multiprocessing ends a child with os._exit,
# so hundreds of thousands of result dicts are never freed one by one (a tenth of an evaluation).
_KEPT_UNTIL_EXIT: list = []


def _child_evaluation(connection, coco, iou_type: str, path: str, ann_file: str, backend: str,
                      log: Log | None) -> None:
    """A forked child's part of :func:`evaluate_files`: check one file, report, wait for the
    parent's go (every file checked), evaluate the file and send the result; its phase lines go
    to the parent too (which hands them to ``log``), an error is sent instead of a result."""
    def send_log(text: str) -> None:
        connection.send(('log', text))

    child_log = send_log if log is not None else None
    try:
        results = _load_checked(coco, iou_type, path, ann_file, child_log)
        _KEPT_UNTIL_EXIT.append(results)
        connection.send(('checked', None))
        if connection.recv() != 'go':
            return
        connection.send(('done', _evaluate_file(coco, results, iou_type, path, backend,
                                                child_log)))
    except BaseException as error:  # noqa: BLE001 (any failure is the parent's to raise)
        try:
            connection.send(('error', error))
        except Exception:  # noqa: BLE001 (an error that does not pickle)
            connection.send(('error', RuntimeError(f'{type(error).__name__}: {error}')))


def _gather(children: list, expected: str, log: Log | None) -> dict[str, Any]:
    """Wait until every child has sent ``expected`` (or an error), handing their phase lines
    to ``log`` as they come; raise the error of the first child (in ``children``'s order) that
    sent one."""
    pending = {connection: (iou_type, process) for iou_type, process, connection in children}
    received = {}
    while pending:
        for connection in multiprocessing.connection.wait(list(pending)):
            iou_type, process = pending[connection]
            try:
                kind, payload = connection.recv()
            except EOFError:
                process.join()
                raise RuntimeError(f'the process evaluating {iou_type} ended with exit code '
                                   f'{process.exitcode} before it sent its {expected} '
                                   'message') from None
            if kind == 'log':
                if log is not None:
                    log(payload)
                continue
            del pending[connection]
            received[iou_type] = kind, payload
    for iou_type, _, _ in children:
        kind, payload = received[iou_type]
        if kind == 'error':
            raise payload
        if kind != expected:
            raise RuntimeError(f'the process evaluating {iou_type} sent {kind!r}, not '
                               f'{expected!r}')
    return {iou_type: payload for iou_type, (_, payload) in received.items()}


def _evaluate_in_processes(coco, result_files: dict[str, str], ann_file: str, backend: str,
                           log: Log | None) -> dict[str, dict[str, Any]]:
    """Each iou type in a forked child, side by side, sharing the annotation index this process
    loaded. Every file is checked before any evaluation starts; the error raised is that of the
    first bad file in ``result_files``."""
    context = multiprocessing.get_context('fork')
    children = []
    try:
        for iou_type, path in result_files.items():
            connection, child_end = context.Pipe()
            process = context.Process(
                target=_child_evaluation, name=f'coco_eval {iou_type}', daemon=True,
                args=(child_end, coco, iou_type, path, ann_file, backend, log))
            process.start()
            child_end.close()
            children.append((iou_type, process, connection))
        _gather(children, 'checked', log)
        for _, _, connection in children:
            connection.send('go')
        parts = _gather(children, 'done', log)
    finally:
        for _, process, connection in children:
            if process.is_alive():  # after an error: a child waiting for its go stops
                with contextlib.suppress(OSError):
                    connection.send('stop')
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join()
            connection.close()
    return {iou_type: parts[iou_type] for iou_type in result_files}


def evaluate_files(ann_file: str, result_files: dict[str, str],
                   backend: str = DEFAULT_BACKEND,
                   log: Log | None = None,
                   jobs: int | None = None) -> dict[str, Any]:
    """Evaluate result files of one annotation file.

    Args:
        ann_file: the COCO annotation file (ground truth).
        result_files: results file by iou type (``'bbox'``, ``'segm'``).
        backend: ``'faster_coco_eval'`` or ``'pycocotools'`` (the same numbers, see the module
            docstring).
        log: reports each phase (loading, indexing, evaluating) with its wall time.
        jobs: processes to use (default: :func:`default_jobs`): with 2 or more, each iou type
            is loaded and evaluated in a forked child, side by side, so bbox and segm take the
            time of the slower one on 2 cores; with 1, one after the other in this process. The
            numbers are the same with any ``jobs``.

    Returns:
        ``{'ann_file': ..., 'backend': ..., IOU_TYPE: {'results_file': ..., 'num_results': ...,
        'metrics': {AP: ..., ...}, 'lines': [...]}}`` for each given iou type. Every file is
        checked before any evaluation starts.
    """
    check_backend(backend)
    if not result_files:
        raise ValueError('no results file to evaluate: give a bbox and/or a segm results file')
    unknown = sorted(set(result_files) - set(IOU_TYPES))
    if unknown:
        raise ValueError(f'iou types {unknown} are not supported; use {IOU_TYPES}')
    if jobs is None:
        jobs = default_jobs(len(result_files))
    elif isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f'jobs={jobs!r}: use a positive number of processes')
    elif jobs > 1 and not can_fork():
        raise ValueError(f'jobs={jobs}: this platform cannot fork processes; use jobs=1')
    with paused_gc():
        with phase(log, f'loading annotations {ann_file}'):
            coco = load_annotations(ann_file, backend)
        summary: dict[str, Any] = dict(ann_file=ann_file, backend=backend)
        if jobs > 1 and len(result_files) > 1:
            summary.update(_evaluate_in_processes(coco, result_files, ann_file, backend, log))
            return summary
        loaded = {iou_type: _load_checked(coco, iou_type, path, ann_file, log)
                  for iou_type, path in result_files.items()}
        for iou_type, results in loaded.items():
            summary[iou_type] = _evaluate_file(coco, results, iou_type, result_files[iou_type],
                                               backend, log)
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as text: per iou type, the 12 summary lines, each prefixed by its name."""
    out = []
    for iou_type in IOU_TYPES:
        if iou_type not in summary:
            continue
        part = summary[iou_type]
        out.append(f"{iou_type}: {part['results_file']} ({part['num_results']} results, "
                   f"{summary.get('backend', DEFAULT_BACKEND)})")
        for name, line in zip(METRIC_NAMES, part['lines']):
            out.append(f'  {name:<6}{line.strip()}')
    return '\n'.join(out)


def save_summary(summary: dict[str, Any], path: str) -> None:
    """Write the summary as JSON, atomically (all or nothing)."""
    # Imported here: mmengine (which fileio.atomic extends) would add a third of a second to every
    # start of tools/coco_eval.py, and only --out needs it.
    from ..fileio.atomic import atomic_write
    data = {key: value if not isinstance(value, dict)
            else {k: v for k, v in value.items() if k != 'lines'}
            for key, value in summary.items()}
    atomic_write(json.dumps(data, indent=2).encode('utf-8'), path)
