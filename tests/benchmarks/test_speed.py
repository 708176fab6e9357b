"""tools/benchmark.py: the cpu suite runs the gpu suite's code at small sizes (a smoke test of the
code, not a timing), and the table goes where the docs expect it."""
import copy
import json
import subprocess
import sys

import pytest
import torch

from convnext_dense.benchmarks import speed
from convnext_dense.engine import build_model
from tests.helpers import ROOT


def test_measure_counts_iterations():
    calls = []
    times, peak = speed.measure(lambda: calls.append(1), torch.device('cpu'), warmup=2, iters=5)
    assert len(calls) == 7 and len(times) == 5 and peak is None


def test_ratios_are_to_the_first_contender_of_each_case():
    timings = [speed.Timing('a', 'ours', [2.0]), speed.Timing('a', 'ref', [5.0]),
               speed.Timing('b', 'x', [4.0]), speed.Timing('b', 'y', [2.0])]
    speed.add_ratios(timings)
    assert timings[0].ratios == {'ref': 2.5} and timings[2].ratios == {'y': 0.5}
    assert timings[1].ratios == {} and timings[3].ratios == {}


def test_gpu_suite_refuses_a_cpu_device():
    with pytest.raises(ValueError, match='--suite gpu needs a CUDA device'):
        speed.run_suite('gpu', torch.device('cpu'))
    with pytest.raises(ValueError,
                       match="--suite tpu: unknown suite; use one of \\['cpu', 'gpu'\\]"):
        speed.run_suite('tpu', torch.device('cpu'))


def test_table_is_written_between_the_markers(tmp_path):
    result = speed.SuiteResult('gpu', dict(device='H100', torch='2.14.1'),
                               [speed.Timing('case', 'ours fast', [1.0, 2.0, 3.0], 0.5)],
                               kernel_tops={'step, ours fast': [('gemm', 1.25, 3)]},
                               skipped=['x: why'])
    doc = tmp_path / 'performance.md'
    doc.write_text(f'intro\n{speed.BEGIN.format("gpu")}\nold table\n{speed.END.format("gpu")}\n'
                   'outro\n')
    speed.write_into(doc, result)
    text = doc.read_text()
    assert text.startswith('intro\n') and text.endswith('outro\n') and 'old table' not in text
    assert '| case | ours fast | 2.0 | 1.2-2.8 | 0.50 | - |' in text
    assert '| `gemm` | 1.25 | 3 |' in text and 'Not run: x: why.' in text
    assert 'device H100, torch 2.14.1' in text
    doc.write_text('no markers\n')
    with pytest.raises(ValueError, match='has no <!-- benchmark-suite:gpu:begin -->'):
        speed.write_into(doc, result)


def test_build_model_as_the_tools_build_it():
    """One builder for the benchmark's contenders and the installation check's depth count: the
    config's own model, without the pretrained download, BN for SyncBN off CUDA; the config is
    left as it was."""
    from convnext_dense.models import ConvNeXt
    cfg = speed.load_model_config('convnext_dense::upernet/convnext_t_ade20k.py')
    before = copy.deepcopy(cfg.model)
    assert before.backbone.init_cfg.type == 'Pretrained'
    model = build_model(cfg)
    assert cfg.model == before
    assert isinstance(model.backbone, ConvNeXt) and model.backbone.init_cfg is None
    assert model.decode_head.num_classes == 150
    norms = [type(m) for m in model.modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and torch.nn.SyncBatchNorm not in norms


def test_docs_have_the_gpu_section():
    text = (ROOT / 'docs/performance.md').read_text()
    assert speed.BEGIN.format('gpu') in text and speed.END.format('gpu') in text


def run_cpu_suite(tmp_path, *models):
    out = tmp_path / 'bench.json'
    proc = subprocess.run([sys.executable, str(ROOT / 'tools/benchmark.py'), '--suite', 'cpu',
                           '--parts', 'backbone', 'models', 'ops', '--models', *models,
                           '--out', str(out)], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def check_model_cases(data, labels):
    pairs = [(r['case'], r['contender']) for r in data['results']]
    for label in labels:
        for step in ('train step', 'inference'):
            # one block of rows per case, ours fast first (the ratios are to it)
            assert [c for k, c in pairs if k == f'{label} {step}'] == [
                speed.OURS_FAST, speed.OURS_PLAIN, speed.UPSTREAM]
    first = [r for r in data['results'] if r['contender'] == speed.OURS_FAST]
    assert len(first) == 2 * len(labels)
    assert all(set(r['ratios']) == {speed.OURS_PLAIN, speed.UPSTREAM} for r in first)


def test_cpu_suite_runs_the_gpu_suites_code(tmp_path):
    """Every part and contender of the gpu suite, at the cpu suite's sizes, through the tool
    (one detector; the other models run the same code: test_cpu_suite_runs_every_model)."""
    stdout, data = run_cpu_suite(tmp_path, 'mask_rcnn')
    pairs = [(r['case'], r['contender']) for r in data['results']]
    shape = '1x3x32x64 bf16'
    for case in (f'backbone ConvNeXt-atto fwd+bwd {shape}',
                 f'backbone ConvNeXt-atto forward {shape}'):
        assert [c for k, c in pairs if k == case] == [
            'ours compiled', 'ours eager', 'timm eager', 'timm compiled']
    check_model_cases(data, ['Mask R-CNN-T'])
    assert ('RoIAlign fwd 512 RoIs', 'torchvision') in pairs
    assert all(r['median_ms'] > 0 for r in data['results'])
    assert data['skipped'] == ['ours fused kernels: Triton kernels need a CUDA device with '
                               'Triton'] and data['environment']['torch'] == torch.__version__
    assert '| Mask R-CNN-T train step | ours fast |' in stdout


@pytest.mark.slow
def test_cpu_suite_runs_every_model(tmp_path):
    _, data = run_cpu_suite(tmp_path, 'mask_rcnn', 'cascade', 'upernet')
    check_model_cases(data, ['Mask R-CNN-T', 'Cascade Mask R-CNN-T', 'UperNet-T'])
