"""convnext_dense.benchmarks.coco_eval_speed on 20 images: the synthetic set is valid COCO with
what it promises, the four commands run, agree on the 24 numbers and fill the table (no timing
is asserted)."""
import json

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from convnext_dense.benchmarks.coco_eval_speed import (
    agreement_bound,
    format_table,
    max_difference,
    run_benchmark,
    synthetic_coco,
)
from tests.helpers import ROOT


def test_synthetic_set():
    dataset, bbox, segm = synthetic_coco(20, detections_per_image=30, seed=1)
    assert len(dataset['images']) == 20
    assert len(bbox) == len(segm) == 20 * 30
    assert [(b['image_id'], b['score']) for b in bbox] == \
        [(s['image_id'], s['score']) for s in segm]
    coco = COCO()
    coco.dataset = dataset
    coco.createIndex()
    crowd = [a for a in dataset['annotations'] if a['iscrowd']]
    assert crowd and all(isinstance(a['segmentation']['counts'], list) for a in crowd)
    for ann in dataset['annotations']:  # stored areas and boxes are the masks'
        rle = coco.annToRLE(ann)
        assert ann['area'] == float(mask_utils.area(rle))
        assert np.allclose(ann['bbox'], mask_utils.toBbox(rle))
    # segm results: the masks of the bbox results' detections
    boxes = mask_utils.toBbox([s['segmentation'] for s in segm])
    assert np.allclose(boxes, [b['bbox'] for b in bbox], atol=0.005)
    again = synthetic_coco(20, detections_per_image=30, seed=1)
    assert json.dumps(again) == json.dumps((dataset, bbox, segm))  # fixed seed, same set


def test_benchmark_runs(tmp_path):
    result = run_benchmark(tmp_path, ROOT / 'tools/coco_eval.py', num_images=20, repeats=1,
                           detections_per_image=20, log=lambda message: None)
    assert (result.num_images, result.num_detections) == (20, 400)
    assert [len(c.seconds) for c in result.contenders] == [1, 1, 1, 1]
    assert all(c.cpu_seconds[0] > 0 for c in result.contenders)
    reference = result.contenders[0].stats
    assert 0 < reference['bbox'][0] < 1 and 0 < reference['segm'][0] < 1
    assert max_difference(result.contenders[1].stats, reference) == 0  # pycocotools itself
    for faster in result.contenders[2:]:
        assert max_difference(faster.stats, reference) <= agreement_bound(result.num_categories)
    assert result.contenders[2].stats == result.contenders[3].stats  # one or two processes
    table = format_table(result).splitlines()
    assert len(table) == 2 + 4
    assert table[2].startswith("| pycocotools' COCOeval (minimal script) |")
    assert '| 1.00x |' in table[2]
