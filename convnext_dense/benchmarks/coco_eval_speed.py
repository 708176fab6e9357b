"""Speed of COCO box + mask evaluation of result files (``tools/benchmark_coco_eval.py``):
pycocotools' own ``COCOeval`` against ``tools/coco_eval.py`` with either backend, each timed as a
whole process: wall time, and CPU time (user + system of the process and the processes it
started). The command line users run is timed, start-up included, so the benchmark runs a
checkout's ``tools/coco_eval.py``, which ``tools/benchmark_coco_eval.py`` names.

:func:`synthetic_coco` makes a COCO-like set (640x480 images, ~7 objects each with polygon
masks, a share stored as RLE, crowd regions, 10 categories) and detections made from it:
jittered copies of the objects (some with the wrong category), the rest false positives, each
with an RLE mask, ``detections_per_image`` per image. :func:`run_benchmark` writes it as COCO
JSON files and times, in turns so that a change in the machine's load hits every command alike:

* pycocotools' ``COCOeval`` run by a minimal script (:data:`REFERENCE_SCRIPT`: ``loadRes``,
  ``evaluate``, ``accumulate``, ``summarize`` for bbox and segm), the reference;
* ``tools/coco_eval.py --backend pycocotools --jobs 2`` (bbox and segm in two processes);
* ``tools/coco_eval.py --jobs 1`` (faster-coco-eval, the default backend, in one process);
* ``tools/coco_eval.py --jobs 2`` (faster-coco-eval in two processes, the default on Linux with
  2 CPUs);

and checks that all give the same 24 numbers.
"""
from __future__ import annotations

import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from ..datasets import uncompressed_rle

# pycocotools' COCOeval as its README shows it, nothing else: the reference of speed and numbers.
REFERENCE_SCRIPT = """
import json, sys
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
ann_file, bbox_file, segm_file = sys.argv[1:4]
gt = COCO(ann_file)
stats = {}
for iou_type, path in (('bbox', bbox_file), ('segm', segm_file)):
    evaluator = COCOeval(gt, gt.loadRes(path), iou_type)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    stats[iou_type] = [float(v) for v in evaluator.stats]
print('STATS ' + json.dumps(stats))
"""


def _polygons(rng: np.random.Generator, boxes: np.ndarray, vertices: int = 10) -> np.ndarray:
    """Star-shaped polygons inscribed in ``boxes`` (n x 4: x, y, w, h): n x ``vertices`` x 2."""
    angles = np.sort(rng.uniform(0, 2 * np.pi, (len(boxes), vertices)), axis=1)
    radii = rng.uniform(0.55, 1.0, (len(boxes), vertices))
    x, y, w, h = (boxes[:, i:i + 1] for i in range(4))
    return np.stack([x + w / 2 * (1 + radii * np.cos(angles)),
                     y + h / 2 * (1 + radii * np.sin(angles))], axis=2)


def _random_boxes(rng: np.random.Generator, count: int, width: int, height: int,
                  sizes: tuple[float, float] = (6, 320)) -> np.ndarray:
    """``count`` boxes (x, y, w, h) whose sides are log-uniform in ``sizes``: small, medium and
    large COCO objects."""
    side = np.exp(rng.uniform(math.log(sizes[0]), math.log(sizes[1]), count))
    w = np.minimum(side * rng.uniform(0.6, 1.6, count), width - 1)
    h = np.minimum(side * rng.uniform(0.6, 1.6, count), height - 1)
    return np.stack([rng.uniform(0, width - w), rng.uniform(0, height - h), w, h], axis=1)


def _as_json_rle(rle: dict, height: int, width: int) -> dict:
    return dict(size=[height, width], counts=rle['counts'].decode('ascii'))


def synthetic_coco(num_images: int, *,
                   objects_per_image: float = 7.0,
                   detections_per_image: int = 100,
                   num_categories: int = 10,
                   image_size: tuple[int, int] = (640, 480),
                   rle_fraction: float = 0.1,
                   crowd_fraction: float = 0.1,
                   no_detection_fraction: float = 0.0,
                   seed: int = 0) -> tuple[dict, list[dict], list[dict]]:
    """A COCO annotation dict and bbox and segm results for it.

    Args:
        objects_per_image: mean of the Poisson number of objects per image (some images have
            none).
        detections_per_image: detections of each image that has detections: two jittered
            copies of each object (10% with another category), the rest false positives.
        rle_fraction: share of objects whose mask is stored as a compressed RLE, not a polygon.
        crowd_fraction: share of images with a crowd region (``iscrowd=1``, uncompressed RLE).
        no_detection_fraction: share of images without any detection.

    Returns:
        ``(annotations, bbox_results, segm_results)``; the segm results hold the masks of the
        bbox results' detections, as RLEs with string counts (as mmdet writes them).
    """
    width, height = image_size
    rng = np.random.default_rng(seed)
    images, annotations, bbox_results, segm_results = [], [], [], []
    for image_id in range(1, num_images + 1):
        images.append(dict(id=image_id, width=width, height=height,
                           file_name=f'{image_id:012d}.jpg'))
        count = rng.poisson(objects_per_image)
        boxes = _random_boxes(rng, count, width, height)
        shapes = _polygons(rng, boxes)
        labels = rng.integers(1, num_categories + 1, count)
        polygons = [[shape.ravel().tolist()] for shape in shapes]
        if count and rng.random() < 0.2:  # an object in two parts
            part = _polygons(rng, _random_boxes(rng, 1, width, height, (6, 60)))[0]
            polygons[0].append(part.ravel().tolist())
        rles = [mask_utils.merge(mask_utils.frPyObjects(p, height, width)) for p in polygons]
        for label, polygon, rle in zip(labels, polygons, rles):
            stored = _as_json_rle(rle, height, width) if rng.random() < rle_fraction else polygon
            annotations.append(dict(id=len(annotations) + 1, image_id=image_id,
                                    category_id=int(label), segmentation=stored,
                                    area=float(mask_utils.area(rle)),
                                    bbox=mask_utils.toBbox(rle).tolist(), iscrowd=0))
        if rng.random() < crowd_fraction:
            crowd = np.zeros((height, width), np.uint8)
            x, y, w, h = _random_boxes(rng, 1, width, height, (80, 300))[0].astype(int)
            crowd[y:y + h, x:x + w] = 1
            rle = mask_utils.encode(np.asfortranarray(crowd))
            annotations.append(dict(id=len(annotations) + 1, image_id=image_id,
                                    category_id=int(rng.integers(1, num_categories + 1)),
                                    segmentation=uncompressed_rle(crowd),
                                    area=float(mask_utils.area(rle)),
                                    bbox=mask_utils.toBbox(rle).tolist(), iscrowd=1))
        if detections_per_image == 0 or rng.random() < no_detection_fraction:
            continue
        # two jittered copies of each object: moved, scaled and with noisy vertices
        copies = np.repeat(np.arange(count), 2)[:detections_per_image]
        size = boxes[copies, None, 2:]
        center = boxes[copies, None, :2] + size / 2
        moved = ((shapes[copies] - center) * rng.normal(1, 0.08, (len(copies), 1, 2)) + center
                 + rng.normal(0, 0.08, (len(copies), 1, 2)) * size
                 + rng.normal(0, 0.02, shapes[copies].shape) * size)
        copy_labels = np.where(rng.random(len(copies)) < 0.1,
                               rng.integers(1, num_categories + 1, len(copies)), labels[copies])
        false = detections_per_image - len(copies)
        shapes_all = np.concatenate([moved, _polygons(
            rng, _random_boxes(rng, false, width, height, (6, 200)))])
        labels_all = np.concatenate([copy_labels, rng.integers(1, num_categories + 1, false)])
        scores = np.concatenate([rng.uniform(0.3, 1.0, len(copies)),
                                 rng.uniform(0.0, 0.7, false)]).round(5)
        shapes_all = np.clip(shapes_all, 0, [width, height])
        rles = mask_utils.frPyObjects([p.ravel().tolist() for p in shapes_all], height, width)
        det_boxes = mask_utils.toBbox(rles).round(2)
        for label, score, rle, box in zip(labels_all.tolist(), scores.tolist(), rles,
                                          det_boxes.tolist()):
            common = dict(image_id=image_id, category_id=label, score=score)
            bbox_results.append(dict(common, bbox=box))
            segm_results.append(dict(common, segmentation=_as_json_rle(rle, height, width)))
    categories = [dict(id=i, name=f'class_{i}', supercategory='object')
                  for i in range(1, num_categories + 1)]
    return (dict(images=images, annotations=annotations, categories=categories),
            bbox_results, segm_results)


def write_synthetic_coco(folder: str | Path, num_images: int, **kwargs) -> dict[str, Path]:
    """:func:`synthetic_coco` written as ``instances.json``, ``results.bbox.json`` and
    ``results.segm.json`` in ``folder``; returns their paths by ``ann``, ``bbox``, ``segm``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dataset, bbox, segm = synthetic_coco(num_images, **kwargs)
    paths = dict(ann=folder / 'instances.json', bbox=folder / 'results.bbox.json',
                 segm=folder / 'results.segm.json')
    for key, data in (('ann', dataset), ('bbox', bbox), ('segm', segm)):
        paths[key].write_text(json.dumps(data))
    return paths


@dataclass
class Contender:
    name: str
    argv: list[str]
    seconds: list[float] = field(default_factory=list)  # wall time
    cpu_seconds: list[float] = field(default_factory=list)  # user + system, all threads
    stats: dict[str, list[float]] | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_seconds)


def contenders(paths: dict[str, Path], out_dir: Path, tool: str | Path,
               python: str = sys.executable) -> list[Contender]:
    """The four commands, the reference first; ``tool``: the file of ``tools/coco_eval.py``."""
    files = [str(paths['ann']), str(paths['bbox']), str(paths['segm'])]
    tool = [python, str(tool), '--ann', files[0], '--bbox', files[1], '--segm', files[2]]
    return [
        Contender("pycocotools' COCOeval (minimal script)",
                  [python, '-c', REFERENCE_SCRIPT, *files]),
        Contender('tools/coco_eval.py --backend pycocotools --jobs 2',
                  tool + ['--backend', 'pycocotools', '--jobs', '2',
                          '--out', str(out_dir / 'pycocotools.json')]),
        Contender('tools/coco_eval.py --jobs 1 (faster_coco_eval, one process)',
                  tool + ['--jobs', '1', '--out', str(out_dir / 'faster_coco_eval_1.json')]),
        Contender('tools/coco_eval.py --jobs 2 (faster_coco_eval, bbox and segm side by side)',
                  tool + ['--jobs', '2', '--out', str(out_dir / 'faster_coco_eval_2.json')]),
    ]


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(contender: Contender) -> None:
    cpu = _cpu_of_children()
    start = time.perf_counter()
    done = subprocess.run(contender.argv, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f'{contender.name} failed (exit {done.returncode}):\n'
                           f'{done.stderr[-3000:]}')
    contender.seconds.append(seconds)
    # CPU time as well: on a shared machine the wall time also measures the other jobs. The
    # tool's own children (bbox and segm side by side) are in it: it waits for them, and the
    # usage of waited-for descendants adds up to its parent's.
    contender.cpu_seconds.append(_cpu_of_children() - cpu)
    if contender.stats is None:
        if contender.argv[1] == '-c':
            line = next(line for line in done.stdout.splitlines() if line.startswith('STATS '))
            contender.stats = json.loads(line[len('STATS '):])
        else:
            summary = json.loads(Path(contender.argv[-1]).read_text())
            contender.stats = {iou_type: list(summary[iou_type]['metrics'].values())
                               for iou_type in ('bbox', 'segm')}


def max_difference(stats: dict[str, list[float]], reference: dict[str, list[float]]) -> float:
    """The largest absolute difference over the 24 numbers."""
    return max(abs(a - b) for iou_type in ('bbox', 'segm')
               for a, b in zip(stats[iou_type], reference[iou_type], strict=True))


def agreement_bound(num_categories: int) -> float:
    """How far two correct backends' numbers may be apart: each is a mean of at most 10 IoUs x
    101 recall points x ``num_categories`` precisions, which differ by at most eps (see
    convnext_dense/evaluation/coco_eval.py)."""
    return float(np.finfo(np.float64).eps) * 10 * 101 * num_categories


@dataclass
class BenchmarkResult:
    num_images: int
    num_categories: int
    num_annotations: int
    num_detections: int
    repeats: int
    contenders: list[Contender]
    environment: dict[str, str]


def run_benchmark(folder: str | Path, tool: str | Path, num_images: int = 2000,
                  repeats: int = 3, seed: int = 0, log=print, **data_kwargs) -> BenchmarkResult:
    """Write the synthetic set into ``folder`` and time the four commands ``repeats`` times
    each, in turns; ``tool``: the file of ``tools/coco_eval.py``."""
    if not Path(tool).is_file():
        raise FileNotFoundError(f'tool={str(tool)!r}: no such file (tools/coco_eval.py of a '
                                'checkout)')
    folder = Path(folder)
    start = time.perf_counter()
    paths = write_synthetic_coco(folder, num_images, seed=seed, **data_kwargs)
    dataset = json.loads(paths['ann'].read_text())
    num_detections = len(json.loads(paths['bbox'].read_text()))
    log(f'synthetic set: {num_images} images, {len(dataset["annotations"])} objects, '
        f'{num_detections} detections ({time.perf_counter() - start:.1f} s) in {folder}')
    runs = contenders(paths, folder, tool)
    environment = dict(
        python=platform.python_version(), cpus=str(os.cpu_count()),
        cpus_available=str(len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')
                           else os.cpu_count()),
        load_average=' '.join(f'{v:.1f}' for v in os.getloadavg()),
        **{name: metadata.version(name) for name in ('pycocotools', 'faster-coco-eval')})
    for round_index in range(repeats):
        for contender in runs:
            _run(contender)
            log(f'[{round_index + 1}/{repeats}] {contender.name}: '
                f'{contender.seconds[-1]:.2f} s wall, {contender.cpu_seconds[-1]:.2f} s CPU')
    environment['load_average_after'] = ' '.join(f'{v:.1f}' for v in os.getloadavg())
    return BenchmarkResult(num_images, len(dataset['categories']), len(dataset['annotations']),
                           num_detections, repeats, runs, environment)


def format_table(result: BenchmarkResult) -> str:
    """A markdown table: wall and CPU time (medians), speed-up over the reference by each, and
    the largest difference of the 24 numbers from the reference's."""
    reference = result.contenders[0]
    lines = [f'| command | wall time (median of {result.repeats}) | speed-up, wall | '
             'CPU time, user + system incl. child processes (median) | speed-up, CPU | '
             'max abs difference of the 24 numbers |', '|---|---|---|---|---|---|']
    for contender in result.contenders:
        lines.append(f'| {contender.name} | {contender.median:.2f} s | '
                     f'{reference.median / contender.median:.2f}x | '
                     f'{contender.cpu_median:.2f} s | '
                     f'{reference.cpu_median / contender.cpu_median:.2f}x | '
                     f'{max_difference(contender.stats, reference.stats):.2g} |')
    return '\n'.join(lines)
