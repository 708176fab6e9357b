"""tools/check_install.py: the whole check through the real tools on 2 gloo processes (toy Mask
R-CNN; every model in the slow suite), failures injected into the installation (a non-finite loss,
a checkpoint that is not written) and into the runs it reads, the derived configs and the
synthetic data the configs' own datasets read."""
import copy
import importlib.util
import json
import math
import os
import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

import convnext_dense  # noqa: F401  (registers the plugin)
from convnext_dense.benchmarks import install_check as ic
from convnext_dense.benchmarks import speed
from convnext_dense.engine import build_model
from convnext_dense.testing import det_batch, det_images, seg_batch, seg_images
from convnext_dense.testing.datasets import write_ade_like, write_coco_like
from tests.helpers import ROOT, run_tool
from tests.numerics import rounding_depth, tolerance


def load_tool():
    spec = importlib.util.spec_from_file_location('check_install', ROOT / 'tools/check_install.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


PAPER_CONFIGS: dict = {}
_load_model_config = speed.load_model_config


def load_once(config: str):
    """speed.load_model_config, each config read once for all scripted checks (a second or two
    each)."""
    if config not in PAPER_CONFIGS:
        PAPER_CONFIGS[config] = _load_model_config(config)
    return copy.deepcopy(PAPER_CONFIGS[config])


# -- the tolerance -----------------------------------------------------------------------------
def test_tolerance_is_the_numerics_one():
    cfg, _ = ic.check_config(ic.CASES['upernet'], ic.PLANS['toy'], '/data',
                             paper=load_once(ic.CASES['upernet'].config))
    model = build_model(cfg)
    depth = ic.rounding_depth(model)
    assert depth == rounding_depth(model) > 10
    for loss in (6.5, 0.0078125, -2.25):  # exact in fp32, as numerics' tensor holds them
        assert ic.loss_tolerance(loss, depth) == tolerance(torch.tensor(loss), depth,
                                                           torch.bfloat16)


def test_compare_losses():
    plain = {'step': 3, 'loss': 2.0, 'loss_cls': 1.5, 'acc': 50.0, 'time': 1.0}
    limit = ic.loss_tolerance(1.5, 40)
    fast = dict(plain, loss_cls=1.5 + 0.9 * limit, acc=0.0, time=9.0)  # acc: not a loss
    worst, failure = ic.compare_losses(plain, fast, 40)
    assert failure is None and worst == pytest.approx(0.9)
    worst, failure = ic.compare_losses(plain, dict(fast, loss_cls=1.5 - 1.1 * limit), 40)
    assert worst == pytest.approx(1.1)
    assert failure.startswith('at iteration 3, loss_cls is ') and 'depth 40' in failure
    _, failure = ic.compare_losses(plain, {'step': 3, 'loss': 2.0}, 40)
    assert 'the two paths log other loss terms' in failure
    _, failure = ic.compare_losses(plain, dict(plain, loss=math.nan), 40)
    assert failure is not None and 'loss is nan' in failure  # NaN is beyond any tolerance


def test_first_non_finite_and_error_line():
    records = [{'step': 1, 'loss': 1.0}, {'step': 2, 'loss': math.inf, 'aux.loss_ce': math.nan,
                                          'acc': math.nan}]
    assert ic.first_non_finite(records) == \
        'a loss is not finite at iteration 2: loss=inf, aux.loss_ce=nan'
    assert ic.first_non_finite(records[:1]) is None
    log = ('Traceback (most recent call last):\n  File "x.py", line 1\n'
           '[rank0]: convnext_dense.engine.fail_safe.NonFiniteTrainingError: iteration 1: loss '
           'nan\nE1205 ...\ntorch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n'
           '====\ntools/train.py FAILED\n')
    assert ic.error_line(log) == ('convnext_dense.engine.fail_safe.NonFiniteTrainingError: '
                                  'iteration 1: loss nan')
    assert ic.error_line('a\nlast words\n\n') == 'last words'


# -- the derived configs ------------------------------------------------------------------------
@pytest.mark.parametrize('name', list(ic.CASES))
def test_full_size_config_is_the_paper_config(name, tmp_path):
    """Only the listed keys change; the model, optimizer and schedule shapes are the paper's,
    and the written file reads back as the same config."""
    case = ic.CASES[name]
    paper = load_once(case.config)
    cfg, notes = ic.check_config(case, ic.PLANS['full'], '/data/x', paper=load_once(case.config))
    path = tmp_path / 'config.py'
    ic.write_config(cfg, notes, case, path)
    assert Config.fromfile(str(path))._cfg_dict.to_dict() == cfg._cfg_dict.to_dict()
    assert path.read_text().startswith(f'# Written by tools/check_install.py: {case.config}')
    for key in ('optim_wrapper', 'param_scheduler', 'env_cfg', 'default_scope'):
        assert cfg[key] == paper[key], key
    model, reference = cfg.model.to_dict(), paper.model.to_dict()
    assert model['backbone'].pop('init_cfg') is None
    assert model['backbone'].pop('drop_path_rate') == 0.0
    reference['backbone'].pop('init_cfg'), reference['backbone'].pop('drop_path_rate')
    detection = cfg.default_scope == 'mmdet'
    if detection:
        assert model.pop('data_preprocessor') == dict(
            reference.pop('data_preprocessor'), type='BucketDetDataPreprocessor',
            bucket_sizes=[(800, 1344)])
        assert model['test_cfg']['rcnn'].pop('score_thr') == 0.0
        reference['test_cfg']['rcnn'].pop('score_thr')
        assert cfg.test_evaluator.ann_file == '/data/x/annotations/instances_val2017.json'
        pipeline = cfg.train_dataloader.dataset.pipeline
        assert [t.type for t in pipeline] == ['LoadImageFromFile', 'LoadAnnotations',
                                              'RandomFlip', 'RandomChoiceResize', 'PackDetInputs']
        assert pipeline[3] == paper.train_dataloader.dataset.pipeline[3].transforms[0][0]
    else:
        assert cfg.train_dataloader.dataset.pipeline == paper.train_dataloader.dataset.pipeline
    assert model == reference
    assert cfg.test_dataloader.dataset.pipeline == paper.test_dataloader.dataset.pipeline
    assert cfg.train_dataloader.dataset.data_root == cfg.test_dataloader.dataset.data_root == \
        '/data/x'
    assert cfg.train_cfg == dict(type='IterBasedTrainLoop', max_iters=10, val_interval=10)
    assert cfg.val_cfg is None and cfg.val_dataloader is None and cfg.val_evaluator is None
    assert cfg.default_hooks.checkpoint.save_begin == 2
    assert cfg.log_processor == dict(type='LogProcessor', window_size=1, by_epoch=False)


def test_toy_configs_and_cfg_options():
    suite = ic.PLANS['toy'].suite
    det, notes = ic.check_config(ic.CASES['cascade'], ic.PLANS['toy'], '/d',
                                 {'train_dataloader.num_workers': 0},
                                 load_once(ic.CASES['cascade'].config))
    assert det.model.backbone.arch == ic.TOY_ARCH
    assert det.model.data_preprocessor.bucket_sizes == [tuple(suite.det_train[1:])]
    assert [h.conv_out_channels for h in det.model.roi_head.bbox_head] == [32] * 3
    assert [stage.sampler.num for stage in det.model.train_cfg.rcnn] == [32] * 3
    resizes = [t for t in det.train_dataloader.dataset.pipeline if 'scales' in t]
    assert [t.scales for t in resizes] == [[(128, 96)]]
    assert det.train_dataloader.num_workers == 0 and "--cfg-options {'train" in notes[-1]
    seg, _ = ic.check_config(ic.CASES['upernet_v2_b'], ic.PLANS['toy'], '/d',
                             paper=load_once(ic.CASES['upernet_v2_b'].config))
    assert seg.model.backbone.version == 'v2' and seg.model.data_preprocessor.size == (64, 64)
    assert seg.model.test_cfg.crop_size == (64, 64) and seg.model.test_cfg.stride == (42, 42)
    with pytest.raises(KeyError, match="did you mean 'max_iters'"):
        ic.check_config(ic.CASES['upernet'], ic.PLANS['toy'], '/d', {'train_cfg.max_iter': 3},
                        load_once(ic.CASES['upernet'].config))
    with pytest.raises(ValueError, match='pipeline step Mosaic'):
        ic._resize_to([dict(type='Mosaic', img_scale=(640, 640), scale=(640, 640))],
                      (128, 96), None)


# -- the synthetic data, read by the configs' own datasets ----------------------------------------
def test_batches_keep_their_draws():
    """det_batch / seg_batch draw as before det_images / seg_images existed (the other tests'
    inputs), and are those generators' first images."""
    generator = torch.Generator().manual_seed(0)
    image = (torch.rand(3, 40, 56, generator=generator) * 255).byte()
    xy = torch.rand(3, 2, generator=generator) * torch.tensor([56, 40]) * .7
    wh = (torch.rand(3, 2, generator=generator) * .25 + .05) * torch.tensor([56, 40])
    labels = torch.randint(0, 80, (3, ), generator=generator)
    batch = det_batch(2, 40, 56, instances=3)
    first = batch['data_samples'][0].gt_instances
    assert torch.equal(batch['inputs'][0], image) and torch.equal(labels, first.labels)
    assert torch.equal(first.bboxes, torch.cat([xy, xy + wh], dim=1))
    second = list(det_images(2, 40, 56, 3))[1]
    assert torch.equal(batch['inputs'][1], second.image)
    x0, y0, x1, y1 = second.boxes[0].long().tolist()
    mask = batch['data_samples'][1].gt_instances.masks.masks[0]
    assert mask.sum() == (x1 - x0) * (y1 - y0) == mask[y0:y1, x0:x1].sum()
    generator = torch.Generator().manual_seed(0)
    image = (torch.rand(3, 8, 12, generator=generator) * 255).byte()
    labels = torch.randint(0, 150, (1, 8, 12), generator=generator)
    batch = seg_batch(1, 8, 12)
    assert torch.equal(batch['inputs'][0], image)
    assert torch.equal(batch['data_samples'][0].gt_sem_seg.data, labels)


def build_dataset(config: str, root: str, split: str):
    cfg, _ = ic.check_config(ic.CASES[config], ic.PLANS['full'], root,
                             paper=load_once(ic.CASES[config].config))
    from importlib import import_module
    registry = import_module(f'{cfg.default_scope}.registry').DATASETS
    dataset_cfg = cfg[f'{split}_dataloader'].dataset
    dataset_cfg.pipeline = []
    return registry.build(dataset_cfg)


def assert_same_image(path: str, image: torch.Tensor) -> None:
    """The JPEG at ``path``, read as mmcv reads it (BGR), is ``image`` (RGB): within JPEG's
    quality-95 error (mean 3 levels on noise), where another image or the channels swapped
    are 85 levels off on average (two independent uniform draws)."""
    from mmcv import imread
    decoded = torch.from_numpy(imread(path)[..., ::-1].copy()).permute(2, 0, 1).int()
    assert decoded.shape == image.shape
    assert (decoded - image.int()).abs().float().mean() < 8
    assert (decoded.flip(0) - image.int()).abs().float().mean() > 40


def test_coco_like_data_reads_back(tmp_path):
    classes = ic.dataset_classes(load_once(ic.CASES['mask_rcnn'].config))
    assert len(classes) == 80
    root = str(tmp_path / 'coco')
    assert write_coco_like(root, (3, 2), 64, 96, 5, classes) == dict(train2017=3, val2017=2)
    dataset = build_dataset('mask_rcnn', root, 'train')  # mmdet's CocoDataset, as configured
    assert len(dataset) == 3
    for index, drawn in enumerate(det_images(3, 64, 96, 5, num_classes=80)):
        info = dataset.get_data_info(index)
        assert (info['height'], info['width']) == (64, 96)
        boxes = [instance['bbox'] for instance in info['instances']]
        assert boxes == drawn.boxes.long().float().tolist()
        assert [instance['bbox_label'] for instance in info['instances']] == \
            drawn.labels.tolist()
        assert_same_image(info['img_path'], drawn.image)
    assert len(build_dataset('mask_rcnn', root, 'test')) == 2


def test_ade_like_data_reads_back(tmp_path):
    import cv2
    root = str(tmp_path / 'ade')
    write_ade_like(root, (2, 1), 16, 24, num_classes=150)
    dataset = build_dataset('upernet', root, 'train')  # mmseg's ADE20KDataset
    assert len(dataset) == 2
    for info, (image, labels) in zip([dataset.get_data_info(i) for i in range(2)],
                                     seg_images(2, 16, 24, 151)):
        written = cv2.imread(info['seg_map_path'], cv2.IMREAD_UNCHANGED)
        assert torch.equal(torch.from_numpy(written).long(), labels)
        assert_same_image(info['img_path'], image)
    assert labels.min() == 0 and labels.max() == 150  # "other" and all 150 classes drawn
    with pytest.raises(ValueError, match='one positive image count per split'):
        write_ade_like(root, (2, 0), 16, 24, 150)


# -- the check's verdicts, with a scripted stand-in for torchrun ----------------------------------
class ScriptedRuns:
    """Stands in for ``launch``: leaves in each work dir what a run of the tools leaves there
    (the log lines the check reads, vis_data/scalars.json, checkpoints, the test metrics file),
    in the formats the real runs write (the real toy run below reads them the same way), with
    the losses of an iteration the same on both paths unless a fault says otherwise.

    Faults, by step (``plain``, ``fast``, ``test``): ``nan`` (a loss of iteration 2),
    ``no-checkpoint``, ``exit`` (status 1 and an exception), ``hang`` (a timeout), ``restart``
    (the fast run starts at iteration 1), ``eager``, ``mismatch`` (the fast path's classification
    loss doubled), ``no-metric``, ``one-process``.
    """

    def __init__(self, **faults):
        self.faults = faults
        self.calls = []

    def __call__(self, script, args, log, timeout, env):
        args = [str(arg) for arg in args]
        self.calls.append((script, args, env))
        work_dir = Path(args[args.index('--work-dir') + 1]) / '20260101_000000'
        step = 'test' if script == 'dist_test.sh' else 'fast' if '--bf16' in args else 'plain'
        fault = self.faults.get(step)
        processes = int(args[2] if step == 'test' else args[1])
        if fault == 'one-process':
            processes = 1
        lines = [f'    GPU number: {processes}']
        if fault == 'eager':
            lines.append('12/05 - mmengine - WARNING - torch.compile: ConvNeXt.forward ran '
                         'eagerly for inputs ((1, 3, 96, 128),)')
        work_dir.mkdir(parents=True)
        cfg = Config.fromfile(args[0])
        if step == 'test':
            metrics = {'coco/bbox_mAP': 0.0, 'coco/segm_mAP': 0.0, 'mIoU': 1.5, 'time': 0.25}
            if fault == 'no-metric':
                metrics = {'time': 0.25}
            (work_dir / '20260101_000000.json').write_text(json.dumps(metrics) + '\n')
        else:
            last = cfg.train_cfg.max_iters
            first = 1 if step == 'plain' or fault == 'restart' else \
                int(Path(args[args.index('--resume') + 1]).stem.split('_')[1]) + 1
            (work_dir / 'vis_data').mkdir()
            with open(work_dir / 'vis_data' / 'scalars.json', 'w') as f:
                for step_ in range(first, last + 1):
                    loss_cls = (1.0 + step_ / 10) * (2 if fault == 'mismatch' else 1)
                    if fault == 'nan' and step_ == 2:
                        loss_cls = math.nan
                    f.write(json.dumps({'lr': 1e-4, 'loss': loss_cls + 0.5, 'loss_cls': loss_cls,
                                        'loss_bbox': 0.5, 'acc': 50.0, 'time': 0.5,
                                        'data_time': 0.01, 'memory': 2048, 'iter': step_,
                                        'step': step_}) + '\n')
            if fault != 'no-checkpoint':
                for iteration in {cfg.default_hooks.checkpoint.save_begin, last}:
                    if iteration >= first:
                        (work_dir.parent / f'iter_{iteration}.pth').write_bytes(b'x')
        if fault == 'exit':
            lines.append('RuntimeError: the kernel failed')
        Path(log).write_text('\n'.join(lines) + '\n')
        return (None if fault == 'hang' else 1 if fault == 'exit' else 0), 1.0


def scripted_check(tmp_path, monkeypatch, capsys, *argv, **faults):
    runs = ScriptedRuns(**faults)
    monkeypatch.setattr(ic, 'tools_launcher', lambda tools_dir: runs)
    monkeypatch.setattr(speed, 'load_model_config', load_once)
    status = load_tool().main(['--device', 'cpu', '--work-dir', str(tmp_path / 'w'),
                               '--out', str(tmp_path / 'out.json'), *argv])
    out, err = capsys.readouterr()
    return status, out, err, runs


def test_scripted_check_passes(tmp_path, monkeypatch, capsys):
    status, out, err, runs = scripted_check(tmp_path, monkeypatch, capsys, '--models', 'upernet')
    assert status == 0, err
    assert 'check_install.py: all 3 steps passed' in out
    assert [script for script, _, _ in runs.calls] == ['dist_train.sh'] * 2 + ['dist_test.sh']
    (_, plain, env), (_, fast, _), (_, test, _) = runs.calls
    config = str(tmp_path / 'w/upernet/config.py')
    assert plain == [config, '2', '--work-dir', str(tmp_path / 'w/upernet/plain')]
    assert fast[4:] == ['--resume', str(tmp_path / 'w/upernet/plain/iter_1.pth'), '--bf16',
                        '--channels-last', '--compile', '--cfg-options',
                        'fast_path.compile.backend=aot_eager']
    assert test[:3] == [config, str(tmp_path / 'w/upernet/fast/iter_3.pth'), '2']
    assert env == {'CUDA_VISIBLE_DEVICES': ''}  # --device cpu hides GPUs from the ranks
    assert '| UperNet-T | plain | 2 | 0.500 | 8.0 | 2.0 GiB | ok: losses finite' in out
    assert 'iteration 2 losses within bf16 tolerance (largest difference 0% of it' in out
    assert '| UperNet-T | tools/test.py | 2 | 0.250 | 8.0 | - | ok: mIoU 1.5 |' in out
    result = json.loads((tmp_path / 'out.json').read_text())
    assert [step['ok'] for step in result['steps']] == [True] * 3
    assert Path(tmp_path / 'w/data/ade/images/training').is_dir()


FAST = '--bf16 --channels-last --compile'


@pytest.mark.parametrize('step, fault, message', [
    ('plain', 'nan', 'a loss is not finite at iteration 2: loss=nan, loss_cls=nan'),
    ('plain', 'no-checkpoint', 'no checkpoint {w}/upernet/plain/iter_1.pth after iteration 1'),
    ('plain', 'exit', 'tools/train.py exited with status 1: RuntimeError: the kernel failed'),
    ('plain', 'hang', 'timed out after 900 s'),
    ('plain', 'one-process', 'the run did not report 2 processes'),
    ('fast', 'restart', 'did not resume from iteration 1: its first iteration is 1'),
    ('fast', 'eager', 'torch.compile fell back to eager execution: torch.compile: '
     'ConvNeXt.forward ran eagerly'),
    ('fast', 'mismatch', 'at iteration 2, loss is 2.9 on the fast path and 1.7 on the plain one'),
    ('fast', 'no-checkpoint', 'no checkpoint {w}/upernet/fast/iter_3.pth at the end of the run'),
    ('test', 'no-metric', 'tools/test.py reported mIoU=None'),
    ('test', 'exit', 'tools/test.py exited with status 1: RuntimeError: the kernel failed'),
])
def test_scripted_failures_are_named(tmp_path, monkeypatch, capsys, step, fault, message):
    status, out, err, runs = scripted_check(tmp_path, monkeypatch, capsys, '--models', 'upernet',
                                            **{step: fault})
    message = message.format(w=tmp_path / 'w')
    path = {'plain': 'plain', 'fast': FAST, 'test': 'tools/test.py'}[step]
    assert status == 1
    assert f'check_install.py: FAILED: UperNet-T, {path}: {message}' in err, err
    assert f'| **FAILED**: {message}' in out
    steps = json.loads((tmp_path / 'out.json').read_text())['steps']
    ran = ['plain', 'fast', 'test'].index(step) + 1
    assert len(runs.calls) == ran  # the steps after a failed one are not run
    assert [s['ok'] for s in steps[:ran - 1]] == [True] * (ran - 1)
    assert all(s['skipped'] and s['failure'] == f'not run: the {path} step failed'
               for s in steps[ran:])
    assert (tmp_path / 'w').is_dir()  # kept for the logs


def test_first_failure_of_several_models(tmp_path, monkeypatch, capsys):
    runs = ScriptedRuns(test='exit')
    monkeypatch.setattr(speed, 'load_model_config', load_once)
    check, report = ic.run(['upernet_v2_b', 'upernet'], ic.PLANS['toy'], 2, 'cpu',
                           str(tmp_path / 'w'), 60., runs, echo=lambda line: None)
    assert len(runs.calls) == 6  # the second model still runs
    assert check.first_failure.case.label == 'UperNet V2-B'
    assert check.first_failure.path == ic.EVALUATE
    assert report.count('**FAILED**') == 2


def test_gpu_branch_commands(tmp_path, monkeypatch, capsys):
    """What runs on a GPU machine (full sizes, inductor, every visible GPU), taken on the CPU with
    a fake CUDA device; the runs are scripted."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 1)
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda device=None: 'Fake GPU')
    monkeypatch.setattr(torch.distributed, 'is_nccl_available', lambda: True)
    doc = tmp_path / 'performance.md'
    doc.write_text(f'intro\n{ic.BEGIN}\nNot measured on a GPU yet.\n{ic.END}\noutro\n')
    status, out, err, runs = scripted_check(
        tmp_path, monkeypatch, capsys, '--device', 'cuda', '--models', 'mask_rcnn',
        '--write-docs', str(doc))
    assert status == 0, err
    written = doc.read_text()
    assert written.startswith(f'intro\n{ic.BEGIN}\nMeasured with `python tools/check_install.py')
    assert written.endswith(f'{ic.END}\noutro\n') and 'Not measured' not in written
    assert '| Mask R-CNN-T | tools/test.py | 1 |' in written
    (_, plain, env), (_, fast, _), (_, test, _) = runs.calls
    assert plain[1] == '1' and env == {}  # every visible GPU, and the ranks see them
    assert fast[4:] == ['--resume', str(tmp_path / 'w/mask_rcnn/plain/iter_2.pth'), '--bf16',
                        '--channels-last', '--compile']  # inductor: the user's own flags
    assert test[1] == str(tmp_path / 'w/mask_rcnn/fast/iter_10.pth')
    assert 'Fake GPU' in out and '--sizes full` on 1 process' in out
    assert '| Mask R-CNN-T | plain | 1 | 0.500 | 4.0 | 2.0 GiB | ok' in out
    images = list((tmp_path / 'w/data/coco/train2017').iterdir())
    assert len(images) == 1 * 2 * 10  # one image per process and iteration: no epoch ends
    import cv2
    assert cv2.imread(str(images[0])).shape == (800, 1344, 3)
    with pytest.raises(ValueError, match='--gpus 2: only 1 CUDA devices are visible'):
        ic.preflight('cuda', 2)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(ValueError, match='--device cuda: no CUDA device is visible'):
        ic.preflight('cuda', 1)


def test_docs_have_the_section(tmp_path):
    text = (ROOT / 'docs/performance.md').read_text()
    assert ic.BEGIN in text and ic.END in text
    assert load_tool().main(['--device', 'cpu', '--write-docs']) == 2  # a GPU run's table only


# -- the real runs ---------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def toy_check(tmp_path_factory):
    """check_install on the toy Mask R-CNN: 3 launches of 2 gloo processes each (the cost of
    this file: about a minute of a 2-core CPU)."""
    folder = tmp_path_factory.mktemp('check')
    out = folder / 'out.json'
    result = run_tool([ROOT / 'tools/check_install.py', '--device', 'cpu', '--models',
                       'mask_rcnn', '--work-dir', folder / 'w', '--out', out], cwd=folder,
                      check=False, timeout=1200)
    return result, json.loads(out.read_text()) if out.exists() else None, folder / 'w'


def test_toy_check_passes(toy_check):
    result, summary, work_dir = toy_check
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert 'check_install.py: all 3 steps passed' in result.stdout
    plain, fast, test = summary['steps']
    assert [step['path'] for step in summary['steps']] == [ic.PLAIN, ic.FAST, ic.EVALUATE]
    assert len(plain['iteration_ms']) == 2 and len(fast['iteration_ms']) == 1
    assert 'iteration 2 losses within bf16 tolerance' in fast['details'][0]
    assert re.fullmatch(r'coco/bbox_mAP [\d.e-]+, coco/segm_mAP [\d.e-]+', test['details'][0])
    logs = {name: (work_dir / f'mask_rcnn/{name}.log').read_text()
            for name in ('plain', 'fast', 'test')}
    for log in logs.values():
        assert 'distributed on gloo over 2 CPU processes' in log
    assert 'fast_path.bf16: bf16 autocast' in logs['fast']
    assert 'batches padded to the size buckets [(96, 128)]' in logs['fast']
    assert 'resumed epoch: 0, iter: 1' in logs['fast']
    assert 'every tensor of the model loaded' in logs['test']  # the fast checkpoint, plain model
    if importlib.util.find_spec('convnext_dense.ops.roi_ops'):  # the route, as it is logged
        assert summary['routes']['Mask R-CNN-T'].startswith("roi_ops='auto': RoIAlign and NMS")


BREAK_LOSS = '''"""A broken install for the check to find: each step's first loss is NaN."""
from mmengine.model import BaseModel

_parse_losses = BaseModel.parse_losses


def parse_losses(self, losses):
    key = next(key for key in losses if 'loss' in key)
    losses[key] = losses[key] * float('nan')
    return _parse_losses(self, losses)


BaseModel.parse_losses = parse_losses
'''

BREAK_CHECKPOINTS = '''"""A broken install for the check to find: checkpoints are not written."""
from mmengine.hooks import CheckpointHook

CheckpointHook._save_checkpoint = lambda self, runner: None
'''


def injected_check(tmp_path, source: str):
    """tools/check_install.py on the toy UperNet with a module imported by every rank
    (``custom_imports`` through ``--cfg-options``) that breaks the installation."""
    (tmp_path / 'breakage.py').write_text(source)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    return run_tool([ROOT / 'tools/check_install.py', '--device', 'cpu', '--models', 'upernet',
                     '--work-dir', tmp_path / 'w', '--cfg-options',
                     'custom_imports.imports=[convnext_dense,breakage]'],
                    cwd=tmp_path, check=False, timeout=900, env=env)


def test_injected_non_finite_loss_fails(tmp_path):
    result = injected_check(tmp_path, BREAK_LOSS)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert ('check_install.py: FAILED: UperNet-T, plain: a loss is not finite at iteration 1: '
            'loss=nan, decode.loss_ce=nan') in result.stderr, result.stderr[-3000:]
    assert result.stdout.count('not run: the plain step failed') == 2


@pytest.mark.slow
def test_injected_missing_checkpoint_fails(tmp_path):
    result = injected_check(tmp_path, BREAK_CHECKPOINTS)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    checkpoint = tmp_path / 'w/upernet/plain/iter_1.pth'
    assert (f'check_install.py: FAILED: UperNet-T, plain: no checkpoint {checkpoint} after '
            'iteration 1') in result.stderr, result.stderr[-3000:]


@pytest.mark.slow
def test_toy_check_of_every_model(tmp_path):
    result = run_tool([ROOT / 'tools/check_install.py', '--device', 'cpu', '--work-dir',
                       tmp_path / 'w'], cwd=tmp_path, check=False, timeout=3600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert 'check_install.py: all 12 steps passed' in result.stdout
    for label in ('Mask R-CNN-T', 'Cascade Mask R-CNN-T', 'UperNet-T', 'UperNet V2-B'):
        assert result.stdout.count(f'| {label} | ') == 3
