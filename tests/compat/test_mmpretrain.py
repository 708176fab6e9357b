"""Drop-in for ``mmpretrain.ConvNeXt``: mmdet's and mmseg's own ConvNeXt configs with only
``type='ConvNeXt'`` (and ``custom_imports``) changed build, load the mmpretrain classifier
checkpoint they name, give mmpretrain's outputs on it, and train with the configs' own
``LearningRateDecayOptimizerConstructor``; mmpretrain's keyword arguments keep their meaning."""
import copy
import warnings

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

from convnext_dense.compat import import_mmpretrain
from convnext_dense.engine.run_config import adapt_to_cpu
from convnext_dense.models import ConvNeXt
from convnext_dense.testing import det_batch, seg_batch
from tests.numerics import assert_close_to_reference, reduction_depth

MMDET_CONFIG = 'mmdet::convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py'
MMSEG_CONFIG = 'mmseg::convnext/convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py'


@pytest.fixture(scope='module')
def mmpretrain_classifier(tmp_path_factory):
    """An mmpretrain ImageClassifier checkpoint of ConvNeXt-T, as the configs' URLs hold:
    ``backbone.*`` (final ``norm3``, pooled) and ``head.fc.*``."""
    mmpretrain_models = import_mmpretrain()
    backbone = mmpretrain_models.ConvNeXt(arch='tiny')
    generator = torch.Generator().manual_seed(0)
    state = {f'backbone.{k}': v + 0.05 * torch.randn(v.shape, generator=generator)
             for k, v in backbone.state_dict().items()}
    state['head.fc.weight'] = torch.randn(1000, 768, generator=generator)
    state['head.fc.bias'] = torch.zeros(1000)
    path = tmp_path_factory.mktemp('mmpretrain') / 'convnext-tiny_in1k.pth'
    torch.save({'meta': {'mmpretrain_version': '1.2.0'}, 'state_dict': state}, path)
    return str(path)


def migrated_config(tmp_path, base: str, checkpoint: str) -> Config:
    """The user's config: the upstream one with the backbone type swapped (the checkpoint is a
    local file here instead of the config's URL)."""
    path = tmp_path / 'migrated.py'
    path.write_text(
        f'_base_ = [{base!r}]\n'
        "custom_imports = dict(imports=['convnext_dense'], allow_failed_imports=False)\n"
        f"model = dict(backbone=dict(type='ConvNeXt', init_cfg=dict(checkpoint={checkpoint!r})))\n")
    cfg = Config.fromfile(str(path))
    adapt_to_cpu(cfg)  # SyncBN and fp16 AMP need CUDA, as tools/train.py does without it
    return cfg


def mmpretrain_reference(backbone_cfg: dict):
    """mmpretrain's own ConvNeXt built from the same config and file."""
    mmpretrain_models = import_mmpretrain()
    kwargs = {k: copy.deepcopy(v) for k, v in backbone_cfg.items() if k != 'type'}
    reference = mmpretrain_models.ConvNeXt(**kwargs)
    reference.init_weights()
    reference.eval()  # mmpretrain's ConvNeXt.train() returns None, so not chained
    return reference


def check_same_backbone(model, cfg) -> None:
    reference = mmpretrain_reference(cfg.model.backbone.to_dict())
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    backbone = model.backbone.eval()
    with torch.no_grad():
        ours, theirs = backbone(x), reference(x)
    assert len(ours) == len(theirs) == 4
    depth = reduction_depth(backbone)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert_close_to_reference(a, b, depth, name=f'stage {i}')


def lr_of(optim_wrapper, model, name: str) -> float:
    param = dict(model.named_parameters())[name]
    return next(g['lr'] for g in optim_wrapper.param_groups
                if any(p is param for p in g['params']))


def train_one_step(model, cfg, data) -> dict:
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    log_vars = model.train_step(data, optim_wrapper)
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in log_vars.values()), log_vars
    moved = [n for n, p in model.named_parameters() if not torch.equal(before[n], p)]
    assert 'backbone.downsample_layers.0.0.weight' in moved
    return optim_wrapper


def test_mmdet_convnext_config_with_type_swapped(tmp_path, mmpretrain_classifier):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    cfg = migrated_config(tmp_path, MMDET_CONFIG, mmpretrain_classifier)
    assert cfg.model.backbone.gap_before_final_norm is False  # mmpretrain's argument, kept
    model = MODELS.build(cfg.model)
    assert type(model.backbone) is ConvNeXt
    model.init_weights()
    check_same_backbone(model, cfg)

    torch.manual_seed(0)
    data = model.data_preprocessor(det_batch(2, 64, 96, instances=3), training=True)
    optim_wrapper = train_one_step(model, cfg, data)
    # mmdet's LearningRateDecayOptimizerConstructor, layer_wise 0.95 over 6 + 2 layers: the stem
    # is layer 0, the neck layer 7.
    base_lr = cfg.optim_wrapper.optimizer.lr
    assert cfg.optim_wrapper.constructor == 'LearningRateDecayOptimizerConstructor'
    assert lr_of(optim_wrapper, model, 'backbone.downsample_layers.0.0.weight') == \
        pytest.approx(base_lr * 0.95**7)
    assert lr_of(optim_wrapper, model, 'neck.fpn_convs.0.conv.weight') == pytest.approx(base_lr)


def test_mmseg_convnext_config_with_type_swapped(tmp_path, mmpretrain_classifier):
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules()
    cfg = migrated_config(tmp_path, MMSEG_CONFIG, mmpretrain_classifier)
    cfg.model.data_preprocessor.size = (64, 64)
    model = MODELS.build(cfg.model)
    assert type(model.backbone) is ConvNeXt
    model.init_weights()
    check_same_backbone(model, cfg)

    torch.manual_seed(0)
    data = model.data_preprocessor(seg_batch(2, 64, 64), training=True)
    optim_wrapper = train_one_step(model, cfg, data)
    # mmseg's LearningRateDecayOptimizerConstructor, stage_wise 0.9 over 6 + 2 layers: the
    # downsampling layers are id 0, the decode head id 7.
    base_lr = cfg.optim_wrapper.optimizer.lr
    assert lr_of(optim_wrapper, model, 'backbone.downsample_layers.1.1.weight') == \
        pytest.approx(base_lr * 0.9**7)
    assert lr_of(optim_wrapper, model, 'backbone.stages.1.0.pwconv1.weight') == \
        pytest.approx(base_lr * 0.9**5)
    assert lr_of(optim_wrapper, model, 'decode_head.conv_seg.weight') == pytest.approx(base_lr)


# -- mmpretrain's keyword arguments ---------------------------------------------------------
def test_mmpretrain_defaults_in_an_mmpretrain_style_call():
    # mmpretrain builds atto with layer scale and without GRN unless use_grn=True is given
    v1_style = ConvNeXt(arch='atto', gap_before_final_norm=False)
    assert v1_style.stages[0][0].grn is None and v1_style.stages[0][0].gamma is not None
    v2 = ConvNeXt(arch='atto', gap_before_final_norm=False, use_grn=True,
                  layer_scale_init_value=0.)
    assert v2.stages[0][0].grn is not None and v2.stages[0][0].gamma is None
    assert ConvNeXt(arch='atto').stages[0][0].grn is not None  # this class's own default: V2
    custom = ConvNeXt(arch=dict(depths=[1, 1, 1, 1], channels=[8, 16, 32, 64]),
                      linear_pw_conv=False)
    assert custom.dims == [8, 16, 32, 64]


def test_stem_patch_size_and_norm_eps():
    model = ConvNeXt(arch='atto', stem_patch_size=2, norm_cfg=dict(type='LN2d', eps=1e-5))
    assert model.downsample_layers[0][0].kernel_size == (2, 2)
    assert model.strides == [2, 4, 8, 16]
    assert model.stages[1][0].norm.eps == 1e-5 and model.norm3.eps == 1e-5
    outs = model(torch.randn(1, 3, 32, 32))
    assert [o.shape[-1] for o in outs] == [16, 8, 4, 2]


def test_matches_mmpretrain_with_its_arguments():
    mmpretrain_models = import_mmpretrain()
    kwargs = dict(arch='atto', stem_patch_size=2, norm_cfg=dict(type='LN2d', eps=1e-5),
                  out_indices=[0, 1, 2, 3], gap_before_final_norm=False,
                  layer_scale_init_value=1.0)
    reference = mmpretrain_models.ConvNeXt(**kwargs)
    reference.eval()
    ours = ConvNeXt(**kwargs).eval()
    generator = torch.Generator().manual_seed(3)
    state = {f'backbone.{k}': v + 0.05 * torch.randn(v.shape, generator=generator)
             for k, v in reference.state_dict().items()}
    reference.load_state_dict({k[len('backbone.'):]: v for k, v in state.items()})
    from convnext_dense.checkpoint import load_state_dict_into
    load_state_dict_into(ours, state)
    x = torch.randn(1, 3, 32, 48, generator=generator)
    with torch.no_grad():
        for i, (a, b) in enumerate(zip(ours(x), reference(x))):
            assert_close_to_reference(a, b, reduction_depth(ours), name=f'stage {i}')


@pytest.mark.parametrize('kwargs, message', [
    (dict(gap_before_final_norm=True), r'gap_before_final_norm=True pools each output'),
    (dict(norm_cfg=dict(type='BN')), r"norm_cfg=\{'type': 'BN'\} is not supported"),
    (dict(act_cfg=dict(type='ReLU')), r"act_cfg=\{'type': 'ReLU'\} is not supported"),
    (dict(stem_patch_size=0), r'stem_patch_size must be a positive int, got 0'),
    (dict(linear_pw_conv='yes'), r"linear_pw_conv must be a bool, got 'yes'"),
])
def test_unsupported_mmpretrain_arguments(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        ConvNeXt(arch='atto', **kwargs)


def test_frozen_stages_read_differently_is_warned():
    with pytest.warns(UserWarning, match=r'frozen_stages=0\) freezes the stem.*mmpretrain'):
        model = ConvNeXt(arch='atto', frozen_stages=0, gap_before_final_norm=False)
    assert not model.downsample_layers[0][0].weight.requires_grad
    with pytest.warns(UserWarning, match=r"also freezes the output norms \['norm0', 'norm1'\]"):
        ConvNeXt(arch='atto', frozen_stages=2, gap_before_final_norm=False)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        ConvNeXt(arch='atto', frozen_stages=-1, gap_before_final_norm=False)
        ConvNeXt(arch='atto', frozen_stages=0)  # this class's own convention: nothing to warn
