"""The papers' detection and segmentation configs (ConvNeXt V1 and V2), and those with DINOv3 and
CLIP weights: they parse, build (pretrained loading off, SyncBN reverted to BN; the new L/XXL ones
on the meta device), have the paper's parameter counts (or, without published numbers, the
measured ones) and layer-decay settings, wire the backbone's outputs into the neck / decode head,
and (T/S/B) train one step and infer on a tiny input; tools/analysis/get_flops.py runs on one of
them."""
from __future__ import annotations

import copy
import functools
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

from convnext_dense.analysis import (
    build_model_for_analysis,
    default_flops_shape,
    model_complexity,
)
from convnext_dense.analysis.metafile import read_metafile
from convnext_dense.arch_settings import ARCH_SETTINGS
from convnext_dense.benchmarks.speed import set_rcnn_samples
from convnext_dense.testing import det_batch, seg_batch
from tests.helpers import META_ARCHS, ROOT, run_tool_in_process

CONFIG_DIRS = ('configs/mask_rcnn', 'configs/upernet')


METAFILE = read_metafile()
# config: (arch, params of the paper in M, decay_rate, decay_type, num_layers, lr, amp).
PAPER = {
    name: (m['arch'], m['paper']['params_m'], m['recipe']['decay_rate'],
           m['recipe']['decay_type'], m['recipe']['num_layers'], m['recipe']['lr'],
           m['recipe']['amp'])
    for name, m in METAFILE.items()
}
# drop path of the official configs
DROP_PATH = {name: m['recipe']['drop_path_rate'] for name, m in METAFILE.items()}
# 'v1' (Liu et al. 2022) or 'v2' (Woo et al. 2023)
VERSION = {name: m.get('version', 'v1') for name, m in METAFILE.items()}
# the weights' pre-training: 'imagenet' (the papers' configs), 'dinov3' or 'clip'
WEIGHTS = {name: m.get('weights', 'imagenet') for name, m in METAFILE.items()}
# the frozen-backbone configs (frozen_stages=4)
FROZEN = {name for name, m in METAFILE.items() if m.get('frozen')}
# params (M) and GFLOPs of the configs without published numbers, as measured
MEASURED = {name: m['measured'] for name, m in METAFILE.items() if 'measured' in m}
# dinov3/hub/backbones.py: the hash in each official file name
DINOV3_HASHES = {'tiny': '21b726bb', 'small': '296db49d', 'base': '801f2ba9', 'large': '61fa432d'}
IMAGENET_INPUT = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
# open_clip constants.py OPENAI_DATASET_MEAN / _STD on the 0-255 scale
CLIP_INPUT = dict(mean=[255 * v for v in (0.48145466, 0.4578275, 0.40821073)],
                  std=[255 * v for v in (0.26862954, 0.26130258, 0.27577711)])
# The V2 paper's multi-scale test: these ratios of the test scale (crop x 4crop), each flipped.
V2_TTA_RATIOS = (0.75, 0.875, 1.0, 1.125, 1.25)

FORWARD_ARCHS = ('tiny', 'small', 'base')  # L/XL: build only, too slow on a CPU
# Same model and optimizer settings as another config's forward test (alias, 1x schedule,
# 22K weights): run with the slow tests only.
SAME_MODEL_AS = {
    'mask_rcnn/convnext_t_coco_3x.py': 'mask_rcnn/mask_rcnn_convnext_t_coco_3x.py',
    'mask_rcnn/mask_rcnn_convnext_t_coco_1x.py': 'mask_rcnn/mask_rcnn_convnext_t_coco_3x.py',
    'mask_rcnn/cascade_convnext_b_in22k_coco_3x.py': 'mask_rcnn/cascade_convnext_b_coco_3x.py',
    'upernet/convnext_b_in22k_ade20k_640.py': 'upernet/convnext_b_ade20k.py',
    # DINOv3 / CLIP weights: the same network and optimizer as the paper's config
    'mask_rcnn/mask_rcnn_convnext_t_dinov3_coco_3x.py': 'mask_rcnn/mask_rcnn_convnext_t_coco_3x.py',
    'mask_rcnn/cascade_convnext_t_dinov3_coco_3x.py': 'mask_rcnn/cascade_convnext_t_coco_3x.py',
    'mask_rcnn/cascade_convnext_s_dinov3_coco_3x.py': 'mask_rcnn/cascade_convnext_s_coco_3x.py',
    'mask_rcnn/cascade_convnext_b_dinov3_coco_3x.py': 'mask_rcnn/cascade_convnext_b_coco_3x.py',
    'upernet/convnext_t_dinov3_ade20k.py': 'upernet/convnext_t_ade20k.py',
    'upernet/convnext_s_dinov3_ade20k.py': 'upernet/convnext_s_ade20k.py',
    'upernet/convnext_b_dinov3_ade20k.py': 'upernet/convnext_b_ade20k.py',
    # only the input's mean/std differ
    'upernet/convnext_b_clip_ade20k.py': 'upernet/convnext_b_ade20k.py',
    # a size the in-suite twin (S Mask R-CNN; T frozen UperNet) covers with the same code path
    'mask_rcnn/mask_rcnn_convnext_b_dinov3_coco_3x.py':
        'mask_rcnn/mask_rcnn_convnext_s_dinov3_coco_3x.py',
    'upernet/convnext_s_dinov3_frozen_ade20k.py': 'upernet/convnext_t_dinov3_frozen_ade20k.py',
    'upernet/convnext_b_dinov3_frozen_ade20k.py': 'upernet/convnext_t_dinov3_frozen_ade20k.py',
}


def _config_names() -> list[str]:
    names = []
    for folder in CONFIG_DIRS:
        for path in sorted((ROOT / folder).glob('*.py')):  # not recursive: skips _base_/
            if 'toy' not in path.name:
                names.append(str(path.relative_to(ROOT / 'configs')))
    return names


CONFIGS = _config_names()


@functools.cache
def _read(name: str) -> Config:
    return Config.fromfile(str(ROOT / 'configs' / name))


def load(name: str) -> Config:
    """The config file, read once per run (most of a second each: mmdet's and mmseg's bases are
    parsed again for every file); each caller gets its own copy to change."""
    return copy.deepcopy(_read(name))


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
    v2 = VERSION[name] == 'v2'
    # V2's Mask R-CNN recipe: 32 images per batch (4 per GPU x 8 GPUs); the others 16 (2 x 8)
    batch_per_gpu = 4 if v2 and is_det(cfg) else 2
    assert cfg.custom_imports == dict(imports=['convnext_dense'], allow_failed_imports=False)
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=8 * batch_per_gpu)
    backbone = cfg.model.backbone
    assert backbone.type == 'ConvNeXt' and backbone.arch == arch
    assert backbone.drop_path_rate == DROP_PATH[name]
    assert tuple(backbone.out_indices) == (0, 1, 2, 3)
    assert backbone.init_cfg.type == 'Pretrained'
    ckpt = backbone.init_cfg.checkpoint
    if WEIGHTS[name] != 'imagenet':
        _check_foundation_weights(name, cfg, arch)
    elif not v2:
        assert backbone.get('version', 'v1') == 'v1'
        assert ckpt.startswith('https://dl.fbaipublicfiles.com/convnext/convnext_')
        assert f'convnext_{arch}_' in ckpt
        assert ('_22k_224.pth' if 'in22k' in name else '_1k_224.pth') in ckpt
    else:
        assert backbone.version == 'v2'
        assert backbone.get('layer_scale_init_value', 0.) == 0.  # GRN, no layer scale
        release = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/'
        if 'fcmae' in name:  # the FCMAE pre-training weights
            assert ckpt == f'{release}pt_only/convnextv2_{arch}_1k_224_fcmae.pt'
        elif 'in22k' in name:  # IN-22K fine-tuned (V2-H: 384 or 512 only)
            assert ckpt.startswith(f'{release}im22k/convnextv2_{arch}_22k_')
            assert ckpt.endswith('_ema.pt')
        else:  # IN-1K fine-tuned
            assert ckpt == f'{release}im1k/convnextv2_{arch}_1k_224_ema.pt'

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
    assert cfg.train_dataloader.batch_size == batch_per_gpu  # x 8 GPUs

    if is_det(cfg):
        assert list(cfg.model.neck.in_channels) == dims
        assert cfg.flops_shape == (800, 1280)
        epochs = 12 if name.endswith('_1x.py') else 36
        assert cfg.train_cfg.max_epochs == epochs
        step = cfg.param_scheduler[1]
        assert step.type == 'MultiStepLR' and step.end == epochs
        assert list(step.milestones) == ([8, 11] if epochs == 12 else [27, 33])
        if v2:
            _check_v2_coco_recipe(cfg)
            return
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
        aug = cfg.tta_pipeline[1]
        if v2:  # the V2 paper's scales, given to every V2 config (used with --tta)
            assert aug.type == 'TestTimeAug'
            assert [tuple(t.scale) for t in aug.transforms[0]] == [
                (int(4 * crop * r), int(crop * r)) for r in V2_TTA_RATIOS]
            assert all(t.keep_ratio for t in aug.transforms[0])
            assert [t.prob for t in aug.transforms[1]] == [0., 1.]  # flip
        if name.endswith('_ms.py'):
            assert cfg.model.test_cfg.mode == 'whole'
            assert cfg.tta_model.type == 'SegTTAModel'
            assert aug.type == 'TestTimeAug'
            if not v2:
                assert [t.scale_factor for t in aug.transforms[0]] == [
                    0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
            assert [t.prob for t in aug.transforms[1]] == [0., 1.]  # flip
        else:
            stride = {512: 341, 640: 426}[crop]
            assert cfg.model.test_cfg == dict(
                mode='slide', crop_size=(crop, crop), stride=(stride, stride))


def _check_foundation_weights(name: str, cfg: Config, arch: str) -> None:
    """The DINOv3 / CLIP configs: the weights' official URL, the input normalisation they were
    trained with (RGB), V1 blocks, and the frozen backbone of the frozen-backbone configs."""
    backbone = cfg.model.backbone
    ckpt = backbone.init_cfg.checkpoint
    preprocessor = cfg.model.data_preprocessor
    assert backbone.get('version', 'v1') == 'v1' and preprocessor.bgr_to_rgb
    if WEIGHTS[name] == 'dinov3':
        assert ckpt == (f'https://dl.fbaipublicfiles.com/dinov3/dinov3_convnext_{arch}/'
                        f'dinov3_convnext_{arch}_pretrain_lvd1689m-{DINOV3_HASHES[arch]}.pth')
        expected = IMAGENET_INPUT  # dinov3/data/transforms.py
    else:
        assert WEIGHTS[name] == 'clip'
        assert re.fullmatch(r'https://huggingface\.co/laion/CLIP-convnext_[\w.-]+/resolve/main/'
                            r'open_clip_pytorch_model\.bin', ckpt), ckpt
        expected = CLIP_INPUT
    assert list(preprocessor.mean) == pytest.approx(expected['mean'])
    assert list(preprocessor.std) == pytest.approx(expected['std'])
    assert backbone.get('frozen_stages', -1) == (4 if name in FROZEN else -1)


def _check_v2_coco_recipe(cfg: Config) -> None:
    """The V2 paper's COCO recipe (Woo et al. 2023, A.3): large-scale jitter 1024x1024 with
    scales 0.1-2.0, soft-NMS in the box head at test time; mmdet port's 1000-iteration warm-up."""
    types = [t.type for t in cfg.train_pipeline]
    assert 'RandomChoice' not in types
    resize = cfg.train_pipeline[types.index('RandomResize')]
    assert tuple(resize.scale) == (1024, 1024) and tuple(resize.ratio_range) == (0.1, 2.0)
    assert resize.keep_ratio
    crop = cfg.train_pipeline[types.index('RandomCrop')]
    assert crop.crop_type == 'absolute_range' and tuple(crop.crop_size) == (1024, 1024)
    assert types.index('RandomResize') < types.index('RandomCrop') < types.index('RandomFlip')
    warmup = cfg.param_scheduler[0]
    assert (warmup.type, warmup.end, warmup.start_factor) == ('LinearLR', 1000, 0.001)
    assert cfg.model.test_cfg.rcnn.nms == dict(type='soft_nms', iou_threshold=0.5)
    assert cfg.model.test_cfg.rpn.nms.type == 'nms'


def _build_marks(name: str) -> list:
    """A DINOv3 / CLIP config of the same network and optimizer as a paper config
    (``same_model_as``, not frozen) builds what that config builds: with the slow tests only."""
    if WEIGHTS[name] != 'imagenet' and METAFILE[name].get('same_model_as') \
            and name not in FROZEN:
        return [pytest.mark.slow]
    return []


@pytest.mark.parametrize('name', [pytest.param(n, marks=_build_marks(n)) for n in CONFIGS])
def test_build_and_param_count(name):
    """Every config builds; its parameters are within 1% of the paper's where the paper gives
    them (UperNet's counts include the auxiliary FCN head, as the paper's do; the V2 paper gives
    none for Mask R-CNN)."""
    cfg = load(name)
    arch, paper_m = PAPER[name][:2]
    # on the meta device where it is big: the structure, parameter counts and decay groups
    # checked here do not depend on the values
    if arch in META_ARCHS:
        with torch.device('meta'):
            model = build_model_for_analysis(cfg)
    else:
        model = build_model_for_analysis(cfg)
    assert not any('SyncBatchNorm' in type(m).__name__ for m in model.modules())
    backbone = model.backbone
    assert list(backbone.out_channels) == ARCH_SETTINGS[arch]['dims']
    if is_det(cfg):
        assert [c.in_channels for c in model.neck.lateral_convs] == list(backbone.out_channels)
    else:
        head = model.decode_head
        assert [c.in_channels for c in head.lateral_convs] == list(backbone.out_channels[:-1])
        assert head.psp_modules[0][1].conv.in_channels == backbone.out_channels[-1]
    v2 = VERSION[name] == 'v2'
    assert backbone.version == VERSION[name] and backbone.use_grn == v2
    assert (backbone.stages[2][0].grn is not None) == v2
    assert (backbone.stages[2][0].gamma is None) == v2
    params = sum(p.numel() for p in model.parameters())
    if paper_m is not None:
        assert params / 1e6 == pytest.approx(paper_m, rel=0.01), params
    if name in MEASURED:
        assert paper_m is None  # the paper's number wins where there is one
        assert params / 1e6 == pytest.approx(MEASURED[name]['params_m'], rel=0.01), params

    # the decay constructor accepts the config's settings for this model
    optim_wrapper = cpu_optim_wrapper(model, cfg)
    lrs = sorted({g['lr'] for g in optim_wrapper.optimizer.param_groups})
    _, _, decay_rate, decay_type, num_layers, lr, _ = PAPER[name]
    assert lrs[-1] == pytest.approx(lr)
    if name in FROZEN:  # the backbone is left out: the heads' lr only
        names = {n for g in optim_wrapper.optimizer.param_groups for n in g['param_names']}
        assert not any(n.startswith('backbone.') for n in names)
        assert not any(p.requires_grad for p in backbone.parameters())
        assert lrs == [pytest.approx(lr)]
        return
    # layer ids 0..num_layers+1 -> num_layers + 2 distinct rates (stage_wise: 0..5)
    expected = (num_layers if decay_type == 'layer_wise' else 4) + 2
    assert len(lrs) == expected
    assert lrs[0] == pytest.approx(lr * decay_rate ** (num_layers + 1))


def _tiny_model_cfg(cfg: Config):
    """The config's model with a few RoIs / a tiny crop so one CPU step takes seconds; the
    architecture is unchanged."""
    model_cfg = copy.deepcopy(cfg.model)
    if is_det(cfg):
        train = model_cfg.train_cfg
        train.rpn_proposal.update(nms_pre=200, max_per_img=64)
        set_rcnn_samples(model_cfg, 32)
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
    data = det_batch(1, 96, 128, instances=3) if is_det(cfg) else seg_batch(2, 64, 64)
    before = model.backbone.downsample_layers[0][0].weight.detach().clone()
    head = model.roi_head.bbox_head if is_det(cfg) else model.decode_head
    head_weight = next(head.parameters())
    head_before = head_weight.detach().clone()
    model.train()
    losses = model.train_step(copy.deepcopy(data), optim_wrapper)
    assert all(torch.isfinite(v).all() for v in losses.values())
    # a frozen backbone stays as loaded; the heads train
    assert torch.equal(before, model.backbone.downsample_layers[0][0].weight) == (name in FROZEN)
    assert not torch.equal(head_before, head_weight)

    model.eval()
    with torch.no_grad():
        results = model.test_step(copy.deepcopy(data))
    assert len(results) == len(data['inputs'])
    if is_det(cfg):
        pred = results[0].pred_instances
        assert pred.bboxes.shape[1] == 4 and len(pred.masks) == len(pred.bboxes)
    else:
        assert results[0].pred_sem_seg.data.shape == (1, 64, 64)


@pytest.mark.parametrize('name', [
    *(n for n in CONFIGS if n.endswith('_ms.py') and PAPER[n][0] == 'tiny'),
    # V2 has no T config; its B runs 10 inputs of up to 640x480 through UperNet-B
    *(pytest.param(n, marks=pytest.mark.slow) for n in CONFIGS
      if n.endswith('_ms.py') and VERSION[n] == 'v2' and PAPER[n][0] == 'base')])
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
    assert len(out['inputs']) == (10 if VERSION[name] == 'v2' else 12)  # scales x 2 flips
    tta = SegTTAModel(module=model).eval()
    batch = {key: [[v] for v in values] for key, values in out.items()}
    with torch.no_grad():
        results = tta.test_step(batch)
    assert results[0].pred_sem_seg.data.shape == (1, 96, 128)


@pytest.mark.parametrize('name', [n for n in CONFIGS if VERSION[n] == 'v2' and 'mask_rcnn' in n])
def test_v2_soft_nms(name):
    """The box head's test-time NMS config runs in mmcv (on the CPU too) as soft-NMS: overlapping
    boxes of a class are kept with decayed scores instead of removed."""
    from mmcv.ops import batched_nms

    nms_cfg = load(name).model.test_cfg.rcnn.nms
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 0., 11., 10.], [50., 50., 60., 60.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    dets, keep = batched_nms(boxes, scores, torch.zeros(3, dtype=torch.long), dict(nms_cfg))
    assert sorted(keep.tolist()) == [0, 1, 2]
    kept_scores = dict(zip(keep.tolist(), dets[:, -1].tolist()))
    assert kept_scores[0] == pytest.approx(0.9) and kept_scores[2] == pytest.approx(0.7)
    assert kept_scores[1] < 0.8 * 0.5  # linear decay by 1 - IoU (IoU 9/11 > 0.5)
    hard = batched_nms(boxes, scores, torch.zeros(3, dtype=torch.long),
                       dict(type='nms', iou_threshold=0.5))[1]
    assert sorted(hard.tolist()) == [0, 2]


@pytest.mark.parametrize('name', [n for n in CONFIGS if VERSION[n] == 'v2'
                                  and n.endswith('_ms.py')])
def test_v2_multi_scale_test_scales(name, tmp_path):
    """The V2 paper's multi-scale test resizes to 0.75-1.25 x the test scale (2048x512 or
    2560x640, keeping the aspect ratio), each with and without a flip."""
    import cv2
    from mmcv.transforms import Compose
    from mmseg.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    cfg = load(name)
    crop = cfg.crop_size[0]
    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / 'img.jpg'), rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))
    cv2.imwrite(str(tmp_path / 'seg.png'), rng.integers(0, 151, (96, 128), dtype=np.uint8))
    out = Compose(cfg.tta_pipeline)(dict(img_path=str(tmp_path / 'img.jpg'),
                                         seg_map_path=str(tmp_path / 'seg.png'),
                                         reduce_zero_label=True, seg_fields=[]))
    shapes = [tuple(x.shape[1:]) for x in out['inputs']]
    # a 96x128 image scaled to fit (4 crop*r) x (crop*r): its short side becomes crop*r
    expected = [(round(crop * r), round(crop * r * 128 / 96)) for r in V2_TTA_RATIOS]
    assert shapes == [s for s in expected for _ in range(2)]
    assert [s.flip for s in out['data_samples']] == [False, True] * len(V2_TTA_RATIOS)


@pytest.mark.slow
@pytest.mark.parametrize('name', [n for n, m in MEASURED.items() if m.get('flops_g') is not None])
def test_measured_params_and_flops(name):
    """The measured numbers of the configs without published ones are what
    tools/analysis/get_flops.py counts at the config's flops_shape (the papers' input sizes)."""
    result = model_complexity(load(name))
    assert result['params'] / 1e6 == pytest.approx(MEASURED[name]['params_m'], rel=0.005)
    assert result['flops'] / 1e9 == pytest.approx(MEASURED[name]['flops_g'], rel=0.005)


def test_get_flops_tool():
    cmd = [sys.executable, str(ROOT / 'tools/analysis/get_flops.py'),
           str(ROOT / 'configs/upernet/convnext_t_ade20k.py'), '--shape', '128', '128']
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'Params: 60.24 M' in proc.stdout
    flops_line = next(line for line in proc.stdout.splitlines() if line.startswith('FLOPs:'))
    gflops = float(flops_line.split()[1])
    assert 10 < gflops < 20  # ~939 G at 2048x512 scaled down 64x


def test_docs_table_is_the_metafile(monkeypatch, capsys):
    """docs/configs.md shows configs/metafile.yml as tools/analysis/paper_table.py (run in this
    process) renders it."""
    run_tool_in_process('tools/analysis/paper_table.py', monkeypatch=monkeypatch)
    table = capsys.readouterr().out.strip()
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
