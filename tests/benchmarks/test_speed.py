"""tools/benchmark.py runs on CPU at small sizes (a smoke test of the code, not a timing)."""
import json
import subprocess
import sys

import torch

from convnext_dense.benchmarks import speed as benchmark
from tests.helpers import ROOT

TINY = dict(backbone_train=(1, 64, 64), backbone_infer=(2, 32, 32), det_train=(1, 64, 96),
            det_infer=(1, 64, 96), seg_train=(1, 64, 64), seg_infer=(1, 64, 128), instances=2)


def test_measure_counts_iterations():
    calls = []
    times, peak = benchmark.measure(lambda: calls.append(1), torch.device('cpu'), warmup=2,
                                    iters=5)
    assert len(calls) == 7 and len(times) == 5 and peak is None


def test_backbones_and_mask_rcnn_side_by_side():
    results = benchmark.bench_backbones(torch.device('cpu'), TINY, torch.float32, warmup=0,
                                        iters=1, compile_timm=False)
    results += benchmark.bench_models(torch.device('cpu'), TINY, amp=False, warmup=0, iters=1,
                                      which=('mask_rcnn', ))
    benchmark.add_ratios(results)
    contenders = {(r.case, r.contender) for r in results}
    assert ('Mask R-CNN-T train step', 'upstream (mmpretrain.ConvNeXt)') in contenders
    ours = [r for r in results if r.contender == 'ours']
    assert len(ours) == 4 and all(r.ratios for r in ours)
    assert '| Mask R-CNN-T inference | ours |' in benchmark.markdown_table(results)


def test_tool_writes_json(tmp_path):
    out = tmp_path / 'bench.json'
    subprocess.run([sys.executable, str(ROOT / 'tools/benchmark.py'), '--device', 'cpu',
                    '--parts', 'backbone', '--iters', '1', '--warmup', '0', '--out', str(out)],
                   check=True, capture_output=True, timeout=600)
    data = json.loads(out.read_text())
    assert {r['contender'] for r in data['results']} >= {'ours', 'timm eager', 'mmpretrain'}


def test_ops_side_by_side():
    sizes = dict(TINY, roi_feature=(1, 8, 16, 24), rois=4, nms_boxes=20)
    results = benchmark.bench_ops(torch.device('cpu'), sizes, warmup=0, iters=1)
    benchmark.add_ratios(results)
    assert {(r.case, r.contender) for r in results} == {
        ('RoIAlign fwd 4 RoIs', 'ours'), ('RoIAlign fwd 4 RoIs', 'torchvision'),
        ('NMS 20 boxes', 'ours'), ('NMS 20 boxes', 'torchvision')}
    assert all(set(r.ratios) == {'torchvision'} for r in results if r.contender == 'ours')
