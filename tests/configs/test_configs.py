"""The paper's detection and segmentation configs: they parse, build (pretrained loading off,
SyncBN reverted to BN), have the paper's parameter counts and layer-decay settings, wire the
backbone's outputs into the neck / decode head, and (T/S/B) train one step and infer on a tiny
input; tools/analysis/get_flops.py runs on one of them."""
from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

from convnext_dense.analysis import build_model_for_analysis, default_flops_shape
from convnext_dense.models import ARCH_SETTINGS
from tests.helpers import ROOT

CONFIG_DIRS = ('configs/mask_rcnn', 'configs/upernet')


def _read_metafile() -> dict[str, dict]:
    """configs/metafile.yml, the one source of the paper's numbers and recipes, by config."""
    with open(ROOT / 'configs/metafile.yml', encoding='utf-8') as f:
        models = {m['config']: m for m in yaml.safe_load(f)['Models']}
    for model in models.values():  # the same network as another config: its params
        if 'same_model_as' in model:
            model['paper'].setdefault(
                'params_m', models[model['same_model_as']]['paper']['params_m'])
    return models


METAFILE = _read_metafile()
# config: (arch, params of the paper in M, decay_rate, decay_type, num_layers, lr, amp).
PAPER = {
    name: (m['arch'], m['paper']['params_m'], m['recipe']['decay_rate'],
           m['recipe']['decay_type'], m['recipe']['num_layers'], m['recipe']['lr'],
           m['recipe']['amp'])
    for name, m in METAFILE.items()
}
# drop path of the official configs
DROP_PATH = {name: m['recipe']['drop_path_rate'] for name, m in METAFILE.items()}

FORWARD_ARCHS = ('tiny', 'small', 'base')  # L/XL: build only, too slow on a CPU
# Same model and optimizer settings as another config's forward test (alias, 1x schedule,
# 22K weights): run with the slow tests only.
SAME_MODEL_AS = {
    'mask_rcnn/convnext_t_coco_3x.py': 'mask_rcnn/mask_rcnn_convnext_t_coco_3x.py',
    'mask_rcnn/mask_rcnn_convnext_t_coco_1x.py': 'mask_rcnn/mask_rcnn_convnext_t_coco_3x.py',
    'mask_rcnn/cascade_convnext_b_in22k_coco_3x.py': 'mask_rcnn/cascade_convnext_b_coco_3x.py',
    'upernet/convnext_b_in22k_ade20k_640.py': 'upernet/convnext_b_ade20k.py',
}


def _config_names() -> list[str]:
    names = []
    for folder in CONFIG_DIRS:
        for path in sorted((ROOT / folder).glob('*.py')):  # not recursive: skips _base_/
            if 'toy' not in path.name:
                names.append(str(path.relative_to(ROOT / 'configs')))
    return names


CONFIGS = _config_names()


def load(name: str) -> Config:
    return Config.fromfile(str(ROOT / 'configs' / name))


def is_det(cfg: Config) -> bool:
    return cfg.default_scope == 'mmdet'


def cpu_optim_wrapper(model, cfg: Config):
    """The config's optim wrapper, with AMP replaced by a plain OptimWrapper (CPU)."""
    optim_cfg = copy.deepcopy(cfg.optim_wrapper)
    if optim_cfg.type == 'AmpOptimWrapper':
        optim_cfg.type = 'OptimWrapper'
        optim_cfg.pop('loss_scale', None)
        optim_cfg.pop('dtype', None)
    return build_optim_wrapper(model, optim_cfg)


def test_every_config_is_in_the_table():
    assert sorted(CONFIGS) == sorted(PAPER)


@pytest.mark.parametrize('name', CONFIGS)
def test_config_settings(name):
    cfg = load(name)
    arch, _, decay_rate, decay_type, num_layers, lr, amp = PAPER[name]
    dims = ARCH_SETTINGS[arch]['dims']
    assert cfg.custom_imports == dict(imports=['convnext_dense'], allow_failed_imports=False)
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=16)
    backbone = cfg.model.backbone
    assert backbone.type == 'ConvNeXt' and backbone.arch == arch
    assert backbone.drop_path_rate == DROP_PATH[name]
    assert tuple(backbone.out_indices) == (0, 1, 2, 3)
    assert backbone.init_cfg.type == 'Pretrained'
    ckpt = backbone.init_cfg.checkpoint
    assert ckpt.startswith('https://dl.fbaipublicfiles.com/convnext/convnext_')
    assert f'convnext_{arch}_' in ckpt
    assert ('_22k_224.pth' if 'in22k' in name else '_1k_224.pth') in ckpt

    optim = cfg.optim_wrapper
    assert optim.constructor == 'ConvNeXtLayerDecayOptimWrapperConstructor'
    assert optim.paramwise_cfg == dict(
        decay_rate=decay_rate, decay_type=decay_type, num_layers=num_layers)
    assert optim.optimizer.type == 'AdamW'
    assert optim.optimizer.lr == pytest.approx(lr)
    assert optim.optimizer.weight_decay == 0.05
    assert tuple(optim.optimizer.betas) == (0.9, 0.999)
    if amp:
        assert optim.type == 'AmpOptimWrapper' and optim.loss_scale == 'dynamic'
    else:
        assert optim.type == 'OptimWrapper'
    assert cfg.train_dataloader.batch_size == 2  # x 8 GPUs = 16

    if is_det(cfg):
        assert list(cfg.model.neck.in_channels) == dims
        assert cfg.flops_shape == (800, 1280)
        epochs = 12 if name.endswith('_1x.py') else 36
        assert cfg.train_cfg.max_epochs == epochs
        step = cfg.param_scheduler[1]
        assert step.type == 'MultiStepLR' and step.end == epochs
        assert list(step.milestones) == ([8, 11] if epochs == 12 else [27, 33])
        choice = [t for t in cfg.train_pipeline if t.type == 'RandomChoice']
        assert len(choice) == 1 and len(choice[0].transforms) == 2  # multi-scale | crop branch
        scales = choice[0].transforms[0][0].scales
        assert min(s[0] for s in scales) == 480 and max(s[0] for s in scales) == 800
        if 'cascade' in name:
            for head in cfg.model.roi_head.bbox_head:
                assert head.type == 'ConvFCBBoxHead'
                assert (head.num_shared_convs, head.num_shared_fcs) == (4, 1)
                assert head.norm_cfg.type == 'SyncBN'
                assert head.loss_bbox == dict(type='GIoULoss', loss_weight=10.0)
                assert head.reg_decoded_bbox
    else:
        assert list(cfg.model.decode_head.in_channels) == dims
        assert list(cfg.model.decode_head.in_index) == [0, 1, 2, 3]
        aux = cfg.model.auxiliary_head
        assert aux.in_channels == dims[aux.in_index]
        assert cfg.model.decode_head.num_classes == aux.num_classes == 150
        crop = 640 if '_640' in name else 512
        assert cfg.crop_size == (crop, crop)
        assert cfg.model.data_preprocessor.size == (crop, crop)
        assert default_flops_shape(cfg) == (crop, 4 * crop)
        assert cfg.train_cfg.max_iters == 160000
        warmup, poly = cfg.param_scheduler
        assert (warmup.type, warmup.end, warmup.start_factor) == ('LinearLR', 1500, 1e-6)
        assert (poly.type, poly.begin, poly.end, poly.power) == ('PolyLR', 1500, 160000, 1.0)
        if name.endswith('_ms.py'):
            assert cfg.model.test_cfg.mode == 'whole'
            assert cfg.tta_model.type == 'SegTTAModel'
            aug = cfg.tta_pipeline[1]
            assert aug.type == 'TestTimeAug'
            assert [t.scale_factor for t in aug.transforms[0]] == [
                0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
            assert [t.prob for t in aug.transforms[1]] == [0., 1.]  # flip
        else:
            stride = {512: 341, 640: 426}[crop]
            assert cfg.model.test_cfg == dict(
                mode='slide', crop_size=(crop, crop), stride=(stride, stride))


@pytest.mark.parametrize('name', CONFIGS)
def test_build_and_param_count(name):
    """Every config builds; its parameters are within 1% of the paper's (UperNet's counts
    include the auxiliary FCN head, as the paper's do)."""
    cfg = load(name)
    model = build_model_for_analysis(cfg)
    arch, paper_m = PAPER[name][:2]
    assert not any('SyncBatchNorm' in type(m).__name__ for m in model.modules())
    backbone = model.backbone
    assert list(backbone.out_channels) == ARCH_SETTINGS[arch]['dims']
    if is_det(cfg):
        assert [c.in_channels for c in model.neck.lateral_convs] == list(backbone.out_channels)
    else:
        head = model.decode_head
        assert [c.in_channels for c in head.lateral_convs] == list(backbone.out_channels[:-1])
        assert head.psp_modules[0][1].conv.in_channels == backbone.out_channels[-1]
    params = sum(p.numel() for p in model.parameters())
    assert params / 1e6 == pytest.approx(paper_m, rel=0.01), params

    # the decay constructor accepts the config's settings for this model
    optim_wrapper = cpu_optim_wrapper(model, cfg)
    lrs = sorted({g['lr'] for g in optim_wrapper.optimizer.param_groups})
    _, _, decay_rate, decay_type, num_layers, lr, _ = PAPER[name]
    assert lrs[-1] == pytest.approx(lr)
    # layer ids 0..num_layers+1 -> num_layers + 2 distinct rates (stage_wise: 0..5)
    expected = (num_layers if decay_type == 'layer_wise' else 4) + 2
    assert len(lrs) == expected
    assert lrs[0] == pytest.approx(lr * decay_rate ** (num_layers + 1))


def _det_batch(num_classes: int = 80):
    from mmdet.testing import demo_mm_inputs
    torch.manual_seed(0)
    np.random.seed(0)
    return demo_mm_inputs(batch_size=1, image_shapes=[(3, 96, 128)], num_items=[3],
                          num_classes=num_classes, with_mask=True)


def _seg_batch(size: int = 64, batch_size: int = 2):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    torch.manual_seed(0)
    inputs, samples = [], []
    for _ in range(batch_size):
        inputs.append(torch.randint(0, 256, (3, size, size), dtype=torch.uint8))
        sample = SegDataSample(metainfo=dict(
            img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, size, size)))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def _tiny_model_cfg(cfg: Config):
    """The config's model with a few RoIs / a tiny crop so one CPU step takes seconds; the
    architecture is unchanged."""
    model_cfg = copy.deepcopy(cfg.model)
    if is_det(cfg):
        train = model_cfg.train_cfg
        train.rpn_proposal.update(nms_pre=200, max_per_img=64)
        for stage in (train.rcnn if isinstance(train.rcnn, list) else [train.rcnn]):
            stage.sampler.num = 32
        model_cfg.test_cfg.rpn.update(nms_pre=200, max_per_img=64)
    else:
        model_cfg.data_preprocessor.size = (64, 64)
    return model_cfg


@pytest.mark.parametrize('name', [
    pytest.param(n, marks=[pytest.mark.slow] if n in SAME_MODEL_AS else [])
    for n in CONFIGS if PAPER[n][0] in FORWARD_ARCHS and not n.endswith('_ms.py')])
def test_train_step_and_inference(name):
    cfg = load(name)
    model = build_model_for_analysis(cfg, _tiny_model_cfg(cfg))
    optim_wrapper = cpu_optim_wrapper(model, cfg)
    data = _det_batch() if is_det(cfg) else _seg_batch()
    before = model.backbone.downsample_layers[0][0].weight.detach().clone()
    model.train()
    losses = model.train_step(copy.deepcopy(data), optim_wrapper)
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert not torch.equal(before, model.backbone.downsample_layers[0][0].weight)

    model.eval()
    with torch.no_grad():
        results = model.test_step(copy.deepcopy(data))
    assert len(results) == len(data['inputs'])
    if is_det(cfg):
        pred = results[0].pred_instances
        assert pred.bboxes.shape[1] == 4 and len(pred.masks) == len(pred.bboxes)
    else:
        assert results[0].pred_sem_seg.data.shape == (1, 64, 64)


@pytest.mark.parametrize(
    'name', [n for n in CONFIGS if n.endswith('_ms.py') and PAPER[n][0] == 'tiny'])
def test_multi_scale_flip_inference(name, tmp_path):
    """The *_ms.py TTA settings work end to end: tta_pipeline on an image file, SegTTAModel
    around the config's model (what ``tools/test.py --tta`` builds)."""
    import cv2
    from mmcv.transforms import Compose
    from mmseg.models import SegTTAModel

    cfg = load(name)
    model = build_model_for_analysis(cfg, _tiny_model_cfg(cfg)).eval()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / 'img.jpg'), rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))
    cv2.imwrite(str(tmp_path / 'seg.png'), rng.integers(0, 151, (96, 128), dtype=np.uint8))
    pipeline = Compose(cfg.tta_pipeline)
    out = pipeline(dict(img_path=str(tmp_path / 'img.jpg'),
                        seg_map_path=str(tmp_path / 'seg.png'),
                        reduce_zero_label=True, seg_fields=[]))
    assert len(out['inputs']) == 12  # 6 scales x 2 flips
    tta = SegTTAModel(module=model).eval()
    batch = {key: [[v] for v in values] for key, values in out.items()}
    with torch.no_grad():
        results = tta.test_step(batch)
    assert results[0].pred_sem_seg.data.shape == (1, 96, 128)


def test_get_flops_tool():
    cmd = [sys.executable, str(ROOT / 'tools/analysis/get_flops.py'),
           str(ROOT / 'configs/upernet/convnext_t_ade20k.py'), '--shape', '128', '128']
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'Params: 60.24 M' in proc.stdout
    flops_line = next(line for line in proc.stdout.splitlines() if line.startswith('FLOPs:'))
    gflops = float(flops_line.split()[1])
    assert 10 < gflops < 20  # ~939 G at 2048x512 scaled down 64x


def test_docs_table_is_the_metafile():
    """docs/configs.md shows configs/metafile.yml as tools/analysis/paper_table.py renders it."""
    proc = subprocess.run([sys.executable, str(ROOT / 'tools/analysis/paper_table.py')],
                          capture_output=True, text=True, cwd=ROOT, timeout=60, check=True)
    table = proc.stdout.strip()
    assert table.count('\n') == len(METAFILE) + 1  # header, rule, one row per config
    assert table in (ROOT / 'docs/configs.md').read_text()


def test_get_flops_tool_checks_cfg_options():
    cmd = [sys.executable, str(ROOT / 'tools/analysis/get_flops.py'),
           str(ROOT / 'configs/upernet/convnext_t_ade20k.py'), '--shape', '64',
           '--cfg-options', 'model.backbone.drop_path_rat=0.1']
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode != 0
    assert "the config has no 'model.backbone.drop_path_rat'; did you mean " \
        "'drop_path_rate'?" in proc.stderr
