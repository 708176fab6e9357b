"""tools/coco_eval.py gives pycocotools' own numbers for saved result files with either backend,
starts without torch or mmdet, reports its phases, and bad input is an error that names the
file."""
import copy
import json
import multiprocessing
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from convnext_dense.datasets import make_toy_data
from convnext_dense.evaluation import BACKENDS, METRIC_NAMES, evaluate_files
from tests.helpers import ROOT
from tests.numerics import assert_close_to_reference


def noisy_results(coco: COCO, seed: int = 0) -> tuple[list, list]:
    """bbox and segm results made from the ground truth: jittered boxes, dilated or eroded
    masks, some misses, false positives, random scores."""
    import cv2
    rng = np.random.default_rng(seed)
    bbox, segm = [], []
    kernel = np.ones((3, 3), np.uint8)
    for ann in coco.loadAnns(coco.getAnnIds()):
        if rng.random() < 0.1:
            continue  # missed
        x, y, w, h = ann['bbox']
        score = float(rng.uniform(0.2, 1.0))
        category = ann['category_id'] if rng.random() > 0.1 else int(rng.integers(1, 6))
        jitter = rng.normal(0, 0.08, 4) * [w, h, w, h]
        bbox.append(dict(image_id=ann['image_id'], category_id=category, score=score,
                         bbox=[float(x + jitter[0]), float(y + jitter[1]),
                               float(max(w + jitter[2], 1)), float(max(h + jitter[3], 1))]))
        mask = coco.annToMask(ann)
        mask = (cv2.dilate if rng.random() < 0.5 else cv2.erode)(mask, kernel)
        rle = mask_utils.encode(np.asfortranarray(mask))
        rle['counts'] = rle['counts'].decode('ascii')  # as mmdet writes it
        segm.append(dict(image_id=ann['image_id'], category_id=category, score=score,
                         segmentation=rle))
    for image in coco.loadImgs(coco.getImgIds()):  # false positives
        for _ in range(2):
            x, y = rng.uniform(0, image['width'] - 20, 2)
            score, category = float(rng.uniform(0, 0.6)), int(rng.integers(1, 6))
            bbox.append(dict(image_id=image['id'], category_id=category, score=score,
                             bbox=[float(x), float(y), 16.0, 16.0]))
            mask = np.zeros((image['height'], image['width']), np.uint8)
            mask[int(y):int(y) + 16, int(x):int(x) + 16] = 1
            rle = mask_utils.encode(np.asfortranarray(mask))
            rle['counts'] = rle['counts'].decode('ascii')
            segm.append(dict(image_id=image['id'], category_id=category, score=score,
                             segmentation=rle))
    return bbox, segm


@pytest.fixture(scope='module')
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp('coco_eval')
    make_toy_data(str(root / 'data'), num_train=1, num_val=8, size=96, seed=1)
    ann = root / 'data/toy_coco/annotations/instances_val.json'
    bbox, segm = noisy_results(COCO(str(ann)))
    paths = dict(ann=ann, bbox=root / 'res.bbox.json', segm=root / 'res.segm.json')
    paths['bbox'].write_text(json.dumps(bbox))
    paths['segm'].write_text(json.dumps(segm))
    return paths


def reference_stats(ann: Path, results: Path, iou_type: str) -> list[float]:
    coco = COCO(str(ann))
    evaluator = COCOeval(coco, coco.loadRes(str(results)), iou_type)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return [float(v) for v in evaluator.stats]


def assert_same_numbers(actual: list[float], expected: list[float], backend: str) -> None:
    """pycocotools' own numbers: identical from its own COCOeval; from faster-coco-eval within
    eps x the values each number averages (10 IoUs x 101 recall points x 5 categories), as its
    precisions differ from pycocotools' by at most eps (tests/evaluation/test_backends.py)."""
    if backend == 'pycocotools':
        assert actual == expected
    else:
        assert_close_to_reference(torch.tensor(actual, dtype=torch.float64),
                                  torch.tensor(expected, dtype=torch.float64), 10 * 101 * 5,
                                  dtype=torch.float64, name='12 numbers')


def run_tool(*args, cwd=None):
    return subprocess.run([sys.executable, ROOT / 'tools/coco_eval.py', *map(str, args)],
                          capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize('backend', BACKENDS)
def test_tool_matches_cocoeval(files, tmp_path, backend):
    out = tmp_path / 'summary' / 'coco.json'
    result = run_tool('--ann', files['ann'], '--bbox', files['bbox'], '--segm', files['segm'],
                      '--out', out, '--backend', backend)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary['backend'] == backend
    for iou_type in ('bbox', 'segm'):
        expected = reference_stats(files['ann'], files[iou_type], iou_type)
        assert 0.1 < expected[0] < 0.95  # noisy: neither trivial nor perfect
        metrics = summary[iou_type]['metrics']
        assert list(metrics) == list(METRIC_NAMES)
        assert_same_numbers([metrics[name] for name in METRIC_NAMES], expected, backend)
        # printed: each of the 12 numbers with its name, in COCOeval's format
        section = result.stdout.split(f'{iou_type}: ')[1].splitlines()[1:13]
        for name, line, value in zip(METRIC_NAMES, section, expected):
            assert line.split()[0] == name and line.endswith(f'= {value:0.3f}')
    assert summary['bbox']['num_results'] == len(json.loads(files['bbox'].read_text()))
    assert not [p for p in out.parent.iterdir() if p != out]  # no partial file left
    # progress on stderr: each phase when it starts and its time when it ends
    phases = [f'loading annotations {files["ann"]}', f'bbox: loading results {files["bbox"]}',
              'segm: indexing', 'segm: matching']
    for phase in phases:
        assert re.search(re.escape(phase) + r'.* \.\.\.$', result.stderr, re.M), result.stderr
        assert re.search(re.escape(phase) + r'.*: \d+\.\d\d s$', result.stderr, re.M)


# The tool's code path run in a fresh interpreter, as `python tools/coco_eval.py` runs it.
FRESH_RUN = """
import runpy, sys
sys.argv = [{tool!r}] + {args!r}
runpy.run_path({tool!r}, run_name='__main__')
heavy = sorted(name for name in ('torch', 'mmdet', 'mmcv', 'mmseg', 'convnext_dense.models')
               if name in sys.modules)
print('HEAVY', heavy, file=sys.stderr)
"""


def test_tool_starts_without_torch_or_mmdet(files, tmp_path):
    """Evaluating files needs no model code: the tool imports neither torch nor mmdet, even
    when it writes --out (python -X importtime tools/coco_eval.py ... shows what it imports)."""
    args = ['--ann', str(files['ann']), '--bbox', str(files['bbox']), '--segm',
            str(files['segm']), '--out', str(tmp_path / 'out.json')]
    for backend in BACKENDS:
        code = FRESH_RUN.format(tool=str(ROOT / 'tools/coco_eval.py'),
                                args=args + ['--backend', backend])
        result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
        assert 'HEAVY []' in result.stderr, result.stderr[-1000:]
        assert 'AP75' in result.stdout


def test_quiet_and_bad_backend(files):
    result = run_tool('--ann', files['ann'], '--bbox', files['bbox'], '--quiet')
    assert result.returncode == 0 and result.stderr == ''
    result = run_tool('--ann', files['ann'], '--bbox', files['bbox'], '--backend', 'cocoapi')
    assert result.returncode == 2 and "invalid choice: 'cocoapi'" in result.stderr
    with pytest.raises(ValueError, match=r"backend='cocoapi': use one of"):
        evaluate_files(str(files['ann']), dict(bbox=str(files['bbox'])), backend='cocoapi')


@pytest.mark.parametrize('backend', BACKENDS)
def test_segm_areas_are_the_masks_even_with_boxes(files, tmp_path, backend):
    """mmdet writes a box into each segm result; pycocotools (and faster-coco-eval) would then
    take the area from the box. The tool evaluates masks by their own areas, as mmdet's
    CocoMetric does."""
    segm = json.loads(files['segm'].read_text())
    for result in segm:  # boxes much larger than the masks: other area ranges
        result['bbox'] = [0.0, 0.0, 95.0, 95.0]
    with_boxes = tmp_path / 'with_boxes.segm.json'
    with_boxes.write_text(json.dumps(segm))
    expected = reference_stats(files['ann'], files['segm'], 'segm')  # no boxes
    assert reference_stats(files['ann'], with_boxes, 'segm') != expected  # the pitfall is real
    summary = evaluate_files(str(files['ann']), dict(segm=str(with_boxes)), backend)
    metrics = summary['segm']['metrics']
    assert_same_numbers([metrics[name] for name in METRIC_NAMES], expected, backend)


@pytest.mark.parametrize('backend', BACKENDS)
def test_bbox_only(files, backend):
    summary = evaluate_files(str(files['ann']), dict(bbox=str(files['bbox'])), backend)
    assert 'segm' not in summary
    expected = reference_stats(files['ann'], files['bbox'], 'bbox')
    assert_same_numbers(list(summary['bbox']['metrics'].values()), expected, backend)


def write(path: Path, obj) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


def test_missing_and_foreign_annotation_file(files, tmp_path):
    missing = tmp_path / 'nope.json'
    with pytest.raises(FileNotFoundError, match=r"annotation file '.*nope\.json' does not exist"):
        evaluate_files(str(missing), dict(bbox=str(files['bbox'])))
    not_coco = write(tmp_path / 'labels.json', dict(images=[], labels=[]))
    with pytest.raises(ValueError, match=r"labels\.json' is not a COCO annotation file"):
        evaluate_files(not_coco, dict(bbox=str(files['bbox'])))


def test_bad_results_files(files, tmp_path):
    ann = str(files['ann'])
    with pytest.raises(FileNotFoundError, match=r"results file '.*gone\.json' does not exist"):
        evaluate_files(ann, dict(bbox=str(tmp_path / 'gone.json')))
    (tmp_path / 'broken.json').write_text('[{"image_id": 1,')
    with pytest.raises(ValueError, match=r"results file '.*broken\.json' is not JSON"):
        evaluate_files(ann, dict(bbox=str(tmp_path / 'broken.json')))
    with pytest.raises(ValueError, match=r"instances_val\.json' is not a list of bbox results "
                       r'but a dict \(it looks like an annotation file\)'):
        evaluate_files(ann, dict(bbox=ann))
    empty = write(tmp_path / 'empty.json', [])
    with pytest.raises(ValueError, match=r"results file '.*empty\.json' is empty"):
        evaluate_files(ann, dict(segm=empty))
    # bbox results given as segm results
    with pytest.raises(ValueError, match=r"res\.bbox\.json'.*result \[0\] has no segmentation"):
        evaluate_files(ann, dict(segm=str(files['bbox'])))


def test_results_of_another_annotation_set(files, tmp_path):
    results = json.loads(files['bbox'].read_text())
    foreign = copy.deepcopy(results)
    foreign[0]['image_id'] = 999
    foreign[1]['image_id'] = 1000
    path = write(tmp_path / 'foreign.bbox.json', foreign)
    with pytest.raises(ValueError, match=r"results file '.*foreign\.bbox\.json' is for another "
                       r'annotation set: image ids 1000, 999 not in .*instances_val\.json'):
        evaluate_files(str(files['ann']), dict(bbox=path))
    result = run_tool('--ann', files['ann'], '--bbox', path)
    assert result.returncode != 0
    assert 'is for another annotation set: image ids 1000, 999 not in' in result.stderr
    assert 'Traceback' not in result.stderr

    results[0]['category_id'] = 91
    path = write(tmp_path / 'cats.bbox.json', results)
    with pytest.raises(ValueError, match=r"cats\.bbox\.json': category ids 91 are not among the "
                       r'categories of .*instances_val\.json \(1, 2, 3, 4, 5\)'):
        evaluate_files(str(files['ann']), dict(bbox=path))


def test_no_results_file(files):
    with pytest.raises(ValueError, match='no results file to evaluate'):
        evaluate_files(str(files['ann']), {})
    with pytest.raises(ValueError, match=r"iou types \['keypoints'\] are not supported"):
        evaluate_files(str(files['ann']), dict(keypoints=str(files['bbox'])))


def test_jobs_give_the_same_summary(files):
    """bbox and segm evaluated side by side in two forked processes (jobs=2) or one after the
    other (jobs=1): the same summary, each phase reported through ``log`` from either."""
    result_files = dict(bbox=str(files['bbox']), segm=str(files['segm']))
    summaries, logs = {}, {}
    for jobs in (1, 2):
        logs[jobs] = []
        summaries[jobs] = evaluate_files(str(files['ann']), result_files, log=logs[jobs].append,
                                         jobs=jobs)
    assert summaries[1] == summaries[2]
    assert list(summaries[2]) == ['ann_file', 'backend', 'bbox', 'segm']
    for jobs in (1, 2):
        starts = sorted(line for line in logs[jobs] if line.endswith(' ...'))
        ends = sorted(line.rsplit(':', 1)[0] + ' ...' for line in logs[jobs]
                      if re.search(r': \d+\.\d\d s$', line))
        assert starts == ends and len(starts) == 7  # annotations, 3 phases per iou type
    assert not multiprocessing.active_children()  # the children were joined


def test_default_jobs(files, monkeypatch):
    from convnext_dense.evaluation import coco_eval
    monkeypatch.setattr(sys, 'platform', 'linux')
    monkeypatch.setattr(coco_eval, 'available_cpus', lambda: 1)
    assert coco_eval.default_jobs() == 1
    monkeypatch.setattr(coco_eval, 'available_cpus', lambda: 8)
    assert coco_eval.default_jobs() == 2 and coco_eval.default_jobs(1) == 1
    monkeypatch.setattr(sys, 'platform', 'darwin')
    assert coco_eval.default_jobs() == 1  # forks only when asked to
    monkeypatch.setattr(sys, 'platform', 'win32')
    monkeypatch.setattr(multiprocessing, 'get_all_start_methods', lambda: ['spawn'])
    assert coco_eval.default_jobs() == 1
    with pytest.raises(ValueError, match='jobs=2: this platform cannot fork processes'):
        evaluate_files(str(files['ann']), dict(bbox=str(files['bbox'])), jobs=2)


def test_errors_of_forked_evaluations(files, tmp_path):
    """With jobs=2 a bad file is the same error as with jobs=1, raised by the parent; with two
    bad files, that of the first; no evaluation starts and no child is left behind."""
    ann, bbox, segm = str(files['ann']), str(files['bbox']), str(files['segm'])
    broken = tmp_path / 'broken.json'
    broken.write_text('[{"image_id": 1,')
    no_masks = str(files['bbox'])  # box results given as segm results
    log = []
    with pytest.raises(ValueError, match=r"results file '.*broken\.json' is not JSON"):
        evaluate_files(ann, dict(bbox=str(broken), segm=segm), log=log.append, jobs=2)
    assert not [line for line in log if 'indexing' in line or 'matching' in line]
    with pytest.raises(ValueError, match=r"res\.bbox\.json'.*result \[0\] has no segmentation"):
        evaluate_files(ann, dict(bbox=bbox, segm=no_masks), jobs=2)
    with pytest.raises(ValueError, match=r"broken\.json' is not JSON"):
        evaluate_files(ann, dict(bbox=str(broken), segm=no_masks), jobs=2)
    with pytest.raises(FileNotFoundError, match=r"results file '.*gone\.json' does not exist"):
        evaluate_files(ann, dict(bbox=bbox, segm=str(tmp_path / 'gone.json')), jobs=2)
    assert not multiprocessing.active_children()
    with pytest.raises(ValueError, match=r'jobs=0: use a positive number of processes'):
        evaluate_files(ann, dict(bbox=bbox), jobs=0)
    result = run_tool('--ann', ann, '--bbox', bbox, '--jobs', '0')
    assert result.returncode == 2 and '--jobs 0: use 1 or more processes' in result.stderr


def test_a_child_that_dies(files, monkeypatch):
    """A forked evaluation that ends without reporting (killed, crashed) is an error naming
    its iou type and exit code, not a hang."""
    from convnext_dense.evaluation import coco_eval

    def die(coco, results, iou_type, *args):
        if iou_type == 'segm':
            os._exit(3)
        return real(coco, results, iou_type, *args)

    real = coco_eval._evaluate_file
    monkeypatch.setattr(coco_eval, '_evaluate_file', die)
    with pytest.raises(RuntimeError, match=r'process evaluating segm ended with exit code 3'):
        evaluate_files(str(files['ann']), dict(bbox=str(files['bbox']), segm=str(files['segm'])),
                       jobs=2)
    assert not multiprocessing.active_children()
