"""The user's main job, run through the real tools in subprocesses: train (the toy runs the suite
shares, tests/conftest.py), test (COCO AP / mIoU), demo picture, distributed training on 2 CPU
processes, kill and resume, and bad input (the tools' errors that need no run:
tests/tools/test_errors.py). tools/make_toy_data.py itself: tests/datasets/test_toy.py."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import convnext_dense  # noqa: F401  (checkpoints load with weights_only=True)
from convnext_dense.apis import read_image
from convnext_dense.datasets import COCO_METAINFO, SEG_METAINFO
from convnext_dense.visualization import MIN_PANEL_HEIGHT, compose, upscale
from tests.conftest import TRAINED_DET_ITERS, TRAINED_SEG_ITERS, TRAINED_SEG_OPTIONS
from tests.helpers import DET_CONFIG, ROOT, SEG_CONFIG, run_tool, run_tool_in_process, short_run

TOY_METAINFO = {DET_CONFIG: COCO_METAINFO, SEG_CONFIG: SEG_METAINFO}  # their datasets'
PYTHON = sys.executable


def scalars(work_dir: Path) -> list[dict]:
    files = sorted(work_dir.glob('*/vis_data/scalars.json'))
    assert files, f'no scalars.json under {work_dir}'
    return [json.loads(line) for line in files[-1].read_text().splitlines()]


def check_picture(path: Path, image: Path, config: str, titles: list[str]) -> list[np.ndarray]:
    """The demo picture ``path`` decodes, has the size of the layout of ``len(titles)``
    panels of ``image`` (scaled up to at least MIN_PANEL_HEIGHT) with the config's class legend,
    shows ``image`` exactly (nearest neighbour) in its first panel, and no panel is uniform.
    Returns the panels."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, f'{path} ({path.stat().st_size} bytes) does not decode'
    picture = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rgb = read_image(str(image))
    metainfo = TOY_METAINFO[config]
    layout = compose([(title, np.zeros_like(rgb)) for title in titles], metainfo['classes'],
                     metainfo['palette'])
    assert picture.shape == layout.image.shape, (picture.shape, layout.image.shape)
    assert layout.scale == 3  # the toy images are 128x128
    panels = [box.crop(picture) for _, box in layout.panels]
    assert all(panel.shape == (3 * 128, 3 * 128, 3) for panel in panels)
    assert picture.shape[0] > MIN_PANEL_HEIGHT and picture.shape[1] > len(titles) * 384
    assert np.array_equal(panels[0], upscale(rgb, 3))
    for title, panel in zip(titles, panels):
        colours = len(np.unique(panel.reshape(-1, 3), axis=0))
        assert panel.std() > 5 and colours > 100, (title, panel.std(), colours)
    for (name, swatch), colour in zip(layout.legend, metainfo['palette']):  # in colour
        assert (swatch.crop(picture) == colour).all(), name
    return panels


def test_segmentation_train_test_demo(workspace, trained_seg):
    """tools/train.py --tensorboard (the ``trained_seg`` run), then test, demo and demo with the
    ground truth of its checkpoint."""
    checkpoint = trained_seg / f'iter_{TRAINED_SEG_ITERS}.pth'
    assert checkpoint.is_file()
    # --tensorboard: an event file TensorBoard itself reads, with the training loss and mIoU
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events, = trained_seg.glob('*/vis_data/events.out.tfevents.*')
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    tags = accumulator.Tags()['scalars']
    assert 'loss' in tags and 'mIoU' in tags, tags
    assert [event.step for event in accumulator.Scalars('loss')] == \
        list(range(1, TRAINED_SEG_ITERS + 1))
    result = run_tool([ROOT / 'tools/test.py', SEG_CONFIG, checkpoint, '--work-dir',
                       workspace / 'seg_test', '--out', workspace / 'seg_pred'],
                      cwd=workspace)
    assert 'mIoU' in result.stdout and 'aAcc' in result.stdout
    assert any((workspace / 'seg_pred').iterdir())
    image = next((workspace / 'data/toy_ade/images/validation').iterdir())
    out = workspace / 'seg_demo.png'
    run_tool([ROOT / 'tools/demo.py', image, SEG_CONFIG, checkpoint, '--out', out],
             cwd=workspace)
    assert out.stat().st_size > 0
    input_panel, prediction = check_picture(out, image, SEG_CONFIG, ['input', 'prediction'])
    assert not np.array_equal(prediction, input_panel)
    # with the ground truth (the label map of the image, as tools/demo.sh passes it)
    label_map = workspace / 'data/toy_ade/annotations/validation' / f'{image.stem}.png'
    out = workspace / 'seg_demo_gt.png'
    result = run_tool([ROOT / 'tools/demo.py', image, SEG_CONFIG, checkpoint, '--out', out,
                       '--gt', label_map], cwd=workspace)
    assert 'input 128x128 (shown x3), ground truth, prediction' in result.stdout
    input_panel, truth, prediction = check_picture(out, image, SEG_CONFIG,
                                                   ['input', 'ground truth', 'prediction'])
    shapes = upscale(cv2.imread(str(label_map), cv2.IMREAD_UNCHANGED), 3) > 0
    assert shapes.any() and not shapes.all()
    # the ground truth tints every pixel, the background (class 0) included
    tinted = np.abs(truth.astype(int) - input_panel).max(axis=2) > 0
    assert tinted[shapes].mean() > 0.9 and tinted[~shapes].mean() > 0.9


COCO_LINE = re.compile(r'^\s*(?:[A-Za-z0-9]+\s+)?(Average (?:Precision|Recall) .*= '
                       r'(-?\d+\.\d{3}))$', re.MULTILINE)


def coco_lines(output: str) -> list[tuple[str, str]]:
    """COCOeval.summarize()'s lines in ``output``: (line from 'Average' on, printed value)."""
    return [(match[0].strip(), match[1]) for match in COCO_LINE.findall(output)]


def test_detection_train_test_eval_demo(workspace, trained_det):
    """tools/train.py (the ``trained_det`` run), then test, COCO evaluation, demo and demo with
    the ground truth of its checkpoint."""
    # 30 iterations: after 4 every AP and AR is 0.000, and comparing zeros with zeros would not
    # tell two COCO evaluations apart (here: bbox AP 0.05, AP50 0.15, AR100 0.19)
    iters = TRAINED_DET_ITERS
    checkpoint = trained_det / f'iter_{iters}.pth'
    assert checkpoint.is_file()
    prefix = workspace / 'det_results'
    # score_thr=0: every image gets detections (up to max_per_img=100), so the result files
    # cannot be empty. proposal_nums=(1, 10, 100): pycocotools' own maxDets, which
    # tools/coco_eval.py uses; CocoMetric's default (100, 300, 1000) reports other AR columns.
    result = run_tool([ROOT / 'tools/test.py', DET_CONFIG, checkpoint, '--work-dir',
                       workspace / 'det_test', '--out', workspace / 'det.pkl', '--cfg-options',
                       f'test_evaluator.outfile_prefix={prefix}',
                       'model.test_cfg.rcnn.score_thr=0.0',
                       'test_evaluator.proposal_nums=(1,10,100)'], cwd=workspace)
    output = result.stdout + result.stderr
    assert 'Evaluating bbox' in output and 'Evaluating segm' in output
    assert output.count('Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all') == 2
    assert (workspace / 'det.pkl').stat().st_size > 0
    ann = workspace / 'data/toy_coco/annotations/instances_val.json'
    image_ids = {image['id'] for image in json.loads(ann.read_text())['images']}
    for iou_type in ('bbox', 'segm'):
        results_file = Path(f'{prefix}.{iou_type}.json')
        assert results_file.is_file(), f'tools/test.py wrote no {results_file}'
        results = json.loads(results_file.read_text())
        assert {r['image_id'] for r in results} == image_ids, f'an image without {iou_type}'
        assert len(results) <= 100 * len(image_ids)

    # mmdet's CocoMetric in tools/test.py: pycocotools' summary on stdout (bbox, then segm),
    # and the metrics in the run's json log (rounded to 3 decimals)
    mmdet_lines = coco_lines(result.stdout)
    assert len(mmdet_lines) == 24, result.stdout[-4000:]
    logged, = (workspace / 'det_test').glob('*/[0-9]*_[0-9]*.json')
    logged = json.loads(logged.read_text())
    summary_file = workspace / 'det_coco_eval.json'
    evaluated = run_tool([ROOT / 'tools/coco_eval.py', '--ann', ann, '--bbox',
                          f'{prefix}.bbox.json', '--segm', f'{prefix}.segm.json', '--out',
                          summary_file], cwd=workspace)
    assert 'AP50' in evaluated.stdout
    ours = coco_lines(evaluated.stdout)
    assert len(ours) == 24, evaluated.stdout
    summary = json.loads(summary_file.read_text())
    names = ['AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'AR1', 'AR10', 'AR100', 'ARs', 'ARm',
             'ARl']
    mmdet_keys = ['mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l']
    for index, iou_type in enumerate(('bbox', 'segm')):
        theirs_part, ours_part = (lines[12 * index:12 * index + 12]
                                  for lines in (mmdet_lines, ours))
        metrics = summary[iou_type]['metrics']
        assert list(metrics) == names
        # the same 12 lines (IoU, area, maxDets and value as printed) ...
        different = [(t[0], o[0]) for t, o in zip(theirs_part, ours_part) if t[0] != o[0]]
        assert not different, f'{iou_type}: tools/coco_eval.py vs CocoMetric: {different}'
        # ... and tools/coco_eval.py's full-precision numbers round to what CocoMetric printed
        assert [f'{metrics[name]:.3f}' for name in names] == [v for _, v in theirs_part]
        assert [logged[f'coco/{iou_type}_{key}'] for key in mmdet_keys] == \
            [round(metrics[name], 3) for name in names[:6]]
    assert any(value > 0 for value in summary['bbox']['metrics'].values()), \
        f'all bbox numbers are 0 after {iters} iterations: nothing was compared'

    image = next((workspace / 'data/toy_coco/val').iterdir())
    out = workspace / 'det_demo.png'
    run_tool([ROOT / 'tools/demo.py', image, DET_CONFIG, checkpoint, '--out', out,
              '--score-thr', '0.0'], cwd=workspace)
    assert out.stat().st_size > 0
    input_panel, prediction = check_picture(out, image, DET_CONFIG, ['input', 'prediction'])
    assert not np.array_equal(prediction, input_panel)
    # with the ground truth: the annotation file, the image found by its file name
    out = workspace / 'det_demo_gt.png'
    result = run_tool([ROOT / 'tools/demo.py', image, DET_CONFIG, checkpoint, '--out', out,
                       '--gt', ann, '--score-thr', '0.0'], cwd=workspace)
    coco = json.loads(ann.read_text())
    image_id, = [r['id'] for r in coco['images'] if r['file_name'] == image.name]
    count = sum(a['image_id'] == image_id for a in coco['annotations'])
    assert f'ground truth: {count} objects, prediction: ' in result.stdout
    input_panel, truth, prediction = check_picture(out, image, DET_CONFIG,
                                                   ['input', 'ground truth', 'prediction'])
    assert not np.array_equal(truth, input_panel)
    assert not np.array_equal(prediction, input_panel)


@pytest.mark.parametrize('task', ['mask_rcnn', 'upernet'])
def test_test_tool_loads_mmcv1_era_checkpoint(workspace, task):
    """The paper's fine-tuned models are mmdet 2.x / mmseg 0.x checkpoints, written by mmcv 1.x's
    save_checkpoint: CLASSES (and PALETTE) in meta, no dataset_meta or message_hub."""
    from collections import OrderedDict

    from mmengine.config import Config
    config = DET_CONFIG if task == 'mask_rcnn' else SEG_CONFIG
    cfg = Config.fromfile(config)
    if task == 'mask_rcnn':
        from mmdet.registry import MODELS
        from mmdet.utils import register_all_modules
        library = dict(mmdet_version='2.18.0')
    else:
        from mmseg.registry import MODELS
        from mmseg.utils import register_all_modules
        library = dict(mmseg_version='0.20.2',
                       PALETTE=[list(c) for c in TOY_METAINFO[config]['palette']])
    register_all_modules()
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    meta = dict(mmcv_version='1.4.2', time='Mon Jan 10 12:00:00 2022', seed=0,
                env_info='sys.platform: linux\nPython: 3.8.12', config=cfg.pretty_text,
                exp_name=Path(config).name, epoch=36, iter=87936,
                CLASSES=tuple(TOY_METAINFO[config]['classes']),
                hook_msgs=dict(last_ckpt='work_dirs/x/epoch_36.pth'), **library)
    checkpoint = workspace / f'{task}_mmcv1.pth'
    torch.save(dict(meta=meta, state_dict=OrderedDict(model.state_dict())), checkpoint)
    result = run_tool([ROOT / 'tools/test.py', config, checkpoint, '--work-dir',
                       workspace / f'{task}_mmcv1_test'], cwd=workspace)
    output = result.stdout + result.stderr
    # LoadCheckpointHook refuses a file that lacks any of the model's tensors
    assert 'every tensor of the model loaded' in output, output[-3000:]
    assert 'missing keys' not in output and 'unexpected key' not in output, output[-3000:]
    assert ('bbox_mAP' in output) if task == 'mask_rcnn' else ('mIoU' in output)


DETERMINISTIC_SEG = """
_base_ = [{base!r}]
# No random augmentation and no dropout (each rank draws its own), GroupNorm instead of
# BatchNorm in the heads (BN statistics over 2 images per process differ from those over 4;
# SyncBN needs CUDA), and SGD at a constant lr (Adam's first steps are sign(grad): rounding
# noise in near-zero gradients would flip whole steps), so that 1 and 2 processes compute
# the same steps.
_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
             dict(type='Resize', scale=(128, 128), keep_ratio=False), dict(type='PackSegInputs')]
train_dataloader = dict(dataset=dict(pipeline=_pipeline))
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
_gn = dict(type='GN', num_groups=16, requires_grad=True)
model = dict(backbone=dict(drop_path_rate=0.0),
             decode_head=dict(norm_cfg=_gn, dropout_ratio=0.0),
             auxiliary_head=dict(norm_cfg=_gn, dropout_ratio=0.0))
optim_wrapper = dict(optimizer=dict(_delete_=True, type='SGD', lr=0.05, momentum=0.9))
"""


def fixed_batch_loss(config: str, checkpoint: Path, data_root: Path) -> float:
    """The model's loss on the first 4 validation images (eval-mode BatchNorm)."""
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS, MODELS
    cfg = Config.fromfile(config)
    init_default_scope('mmseg')
    model = MODELS.build(cfg.model)
    model.load_state_dict(torch.load(checkpoint, weights_only=True)['state_dict'])
    model.eval()
    dataset_cfg = cfg.val_dataloader.dataset
    dataset_cfg.data_root = str(data_root)
    dataset = DATASETS.build(dataset_cfg)
    data = model.data_preprocessor(pseudo_collate([dataset[i] for i in range(4)]), True)
    with torch.no_grad():
        loss, _ = model.parse_losses(model.loss(data['inputs'], data['data_samples']))
    return loss.item()


def test_distributed_matches_single_process(workspace):
    """2 gloo processes x 2 images vs 1 process x 4 images, same seed and data order.

    Not bitwise equal (gradients are summed in another order), so the stated tolerance: after
    6 steps, the two models' losses on a fixed batch differ by less than 2% of what the
    1-process run's loss moved between its step-2 and step-6 checkpoints.
    """
    config = workspace / 'seg_deterministic.py'
    config.write_text(DETERMINISTIC_SEG.format(base=SEG_CONFIG))
    steps = 6
    single = workspace / 'single'
    run_tool([ROOT / 'tools/train.py', config, '--work-dir', single, *short_run(steps, 2),
              'train_dataloader.batch_size=4', 'default_hooks.checkpoint.max_keep_ckpts=5'],
             cwd=workspace)
    dist = workspace / 'dist'
    # a port free now: a fixed one clashes with another test run on the machine
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, PORT=str(port), PYTHON=PYTHON, OMP_NUM_THREADS='1')
    result = subprocess.run(['bash', ROOT / 'tools/dist_train.sh', config, '2',
                             '--work-dir', dist, *short_run(steps, steps),
                             'train_dataloader.batch_size=2'],
                            cwd=workspace, capture_output=True, text=True, env=env,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert 'distributed on gloo over 2 CPU processes' in result.stdout + result.stderr
    assert any('mIoU' in row for row in scalars(dist))  # it evaluated too
    data_root = workspace / 'data/toy_ade'
    early = fixed_batch_loss(str(config), single / 'iter_2.pth', data_root)
    single_loss = fixed_batch_loss(str(config), single / f'iter_{steps}.pth', data_root)
    dist_loss = fixed_batch_loss(str(config), dist / f'iter_{steps}.pth', data_root)
    progress = abs(single_loss - early)
    assert progress > 0.01, (early, single_loss)
    assert abs(dist_loss - single_loss) < 0.02 * progress, (early, single_loss, dist_loss)


# 2 processes that import mmseg and compile (aot_eager): 4 min on a loaded 2-core CPU; the
# in-suite twin is tests/engine/test_fast_path.py::test_ddp_buckets_take_the_channels_last_layout
@pytest.mark.slow
def test_distributed_fast_path(workspace):
    """2 gloo processes with --channels-last --bf16 --compile: the model is channels-last before
    DDP lays out its gradient buckets (no "Grad strides do not match bucket view strides"
    warning, which torch gives for a model converted after wrapping); trains and evaluates."""
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, PORT=str(port), PYTHON=PYTHON, OMP_NUM_THREADS='1')
    work_dir = workspace / 'dist_fast_path'
    result = subprocess.run(['bash', ROOT / 'tools/dist_train.sh', SEG_CONFIG, '2',
                             '--work-dir', work_dir, '--channels-last', '--bf16', '--compile',
                             *short_run(2, 2), 'train_dataloader.batch_size=2',
                             'fast_path.compile.backend=aot_eager'],
                            cwd=workspace, capture_output=True, text=True, env=env,
                            timeout=900)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    assert 'distributed on gloo over 2 CPU processes' in log
    assert "type='ChannelsLastDistributedDataParallel'" in log  # the config dump
    assert 'bucket view strides' not in log
    assert 'ran eagerly' not in log
    assert any('mIoU' in row for row in scalars(work_dir))


def test_kill_and_resume_is_bitwise(workspace, trained_seg):
    """Killed (SIGKILL) after its iteration-4 checkpoint and resumed, a run ends with the
    weights of the uninterrupted ``trained_seg`` run of the same options, bit for bit."""
    options = TRAINED_SEG_OPTIONS
    killed = workspace / 'killed'
    process = subprocess.Popen([PYTHON, ROOT / 'tools/train.py', SEG_CONFIG, '--work-dir',
                                killed, *options], cwd=workspace, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while not (killed / 'iter_4.pth').exists():
        assert process.poll() is None, 'training ended before it could be killed'
        assert time.time() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / f'iter_{TRAINED_SEG_ITERS}.pth').exists()
    pointer = (killed / 'last_checkpoint').read_text().strip()
    torch.load(pointer, weights_only=True)  # points at a complete checkpoint

    run_tool([ROOT / 'tools/train.py', SEG_CONFIG, '--work-dir', killed, '--resume', *options],
             cwd=workspace)
    last = f'iter_{TRAINED_SEG_ITERS}.pth'
    expected = torch.load(trained_seg / last, weights_only=True)['state_dict']
    resumed = torch.load(killed / last, weights_only=True)['state_dict']
    assert expected.keys() == resumed.keys()
    different = [k for k in expected if not torch.equal(expected[k], resumed[k])]
    assert not different, different[:5]


# -- bad input --------------------------------------------------------------------------------
def test_checkpoint_of_another_model(workspace, tmp_path, monkeypatch):
    # mmengine's load_from would warn and evaluate untrained weights; tools/test.py refuses
    checkpoint = tmp_path / 'resnet.pth'
    torch.save({'state_dict': {'backbone.conv1.weight': torch.zeros(64, 3, 7, 7)}}, checkpoint)
    result = run_tool([ROOT / 'tools/test.py', SEG_CONFIG, checkpoint, '--work-dir',
                       tmp_path / 'w'], cwd=workspace, check=False)
    assert result.returncode != 0
    assert f"checkpoint '{checkpoint}' lacks" in result.stderr[-3000:]
    assert "it is a checkpoint of another model (first keys in it: ['backbone.conv1.weight']" \
        in result.stderr[-3000:]
    image = next((workspace / 'data/toy_ade/images/validation').iterdir())
    out = tmp_path / 'demo.png'
    # the demo refuses it too (run in this process: the error is raised out of the tool)
    with pytest.raises(ValueError, match=re.escape(f"checkpoint '{checkpoint}' lacks")):
        run_tool_in_process('tools/demo.py', image, SEG_CONFIG, checkpoint, '--out', out,
                            monkeypatch=monkeypatch)
    assert not out.exists()


def test_corrupt_image(workspace, tmp_path):
    import shutil
    data = tmp_path / 'data'
    shutil.copytree(workspace / 'data', data)
    victim = sorted((data / 'toy_ade/images/training').iterdir())[0]
    victim.write_bytes(b'not an image')
    result = run_tool([ROOT / 'tools/train.py', SEG_CONFIG, '--work-dir', tmp_path / 'w',
                       *short_run(4, 4), 'train_dataloader.num_workers=0',
                       'train_dataloader.persistent_workers=False'], cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert victim.name in result.stderr[-3000:]
