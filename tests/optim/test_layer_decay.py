"""Layer-wise lr decay: same lr and weight decay per parameter as mmdet's and mmseg's own
constructors, schedulers keep the ratios, mmengine options work on top, clear errors."""
import pytest
import torch
from mmengine.optim import build_optim_wrapper

from convnext_dense.optim import ConvNeXtLayerDecayOptimWrapperConstructor
from tests.helpers import build_mask_rcnn, build_upernet

OPTIMIZER = dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05)


def optim_cfg(**paramwise):
    return dict(type='OptimWrapper', optimizer=dict(OPTIMIZER),
                constructor='ConvNeXtLayerDecayOptimWrapperConstructor',
                paramwise_cfg=paramwise)


def settings_by_param(optimizer):
    """{param id: (lr, weight_decay)} from an optimizer's groups."""
    settings = {}
    for group in optimizer.param_groups:
        for param in group['params']:
            assert id(param) not in settings, 'a parameter is in two groups'
            settings[id(param)] = (group['lr'], group['weight_decay'])
    return settings


def upstream_settings(constructor_cls, model, **paramwise):
    constructor = constructor_cls(dict(type='OptimWrapper', optimizer=dict(OPTIMIZER)),
                                  paramwise_cfg=paramwise)
    return settings_by_param(constructor(model).optimizer)


def assert_same_settings(model, ours, theirs):
    names = {id(p): n for n, p in model.named_parameters()}
    assert set(ours) == set(theirs)
    for key in ours:
        assert ours[key][0] == pytest.approx(theirs[key][0], rel=1e-12), names[key]
        assert ours[key][1] == theirs[key][1], names[key]


@pytest.fixture(scope='module')
def mask_rcnn_t():
    return build_mask_rcnn('tiny')


@pytest.fixture(scope='module')
def mask_rcnn_s():
    return build_mask_rcnn('small')


@pytest.fixture(scope='module')
def upernet_t():
    return build_upernet('tiny')


@pytest.mark.parametrize('decay_type, decay_rate', [('layer_wise', 0.95), ('stage_wise', 0.9)])
@pytest.mark.parametrize('model_name, num_layers', [('mask_rcnn_t', 6), ('mask_rcnn_s', 12)])
def test_same_as_mmdet_constructor(request, model_name, num_layers, decay_type, decay_rate):
    from mmdet.engine.optimizers import LearningRateDecayOptimizerConstructor
    model = request.getfixturevalue(model_name)
    paramwise = dict(decay_rate=decay_rate, decay_type=decay_type, num_layers=num_layers)
    ours = settings_by_param(build_optim_wrapper(model, optim_cfg(**paramwise)).optimizer)
    theirs = upstream_settings(LearningRateDecayOptimizerConstructor, model, **paramwise)
    assert_same_settings(model, ours, theirs)


@pytest.mark.parametrize('decay_type', ['layer_wise', 'stage_wise'])
def test_same_as_mmseg_constructor(upernet_t, decay_type):
    from mmseg.engine.optimizers import LearningRateDecayOptimizerConstructor
    paramwise = dict(decay_rate=0.9, decay_type=decay_type, num_layers=6)
    ours = settings_by_param(build_optim_wrapper(upernet_t, optim_cfg(**paramwise)).optimizer)
    theirs = upstream_settings(LearningRateDecayOptimizerConstructor, upernet_t, **paramwise)
    assert_same_settings(upernet_t, ours, theirs)


def test_official_assignment_spot_checks(mask_rcnn_t):
    optimizer = build_optim_wrapper(
        mask_rcnn_t, optim_cfg(decay_rate=0.5, decay_type='layer_wise', num_layers=6)).optimizer
    lr = {n: g['lr'] for g in optimizer.param_groups for n in g['param_names']}
    wd = {n: g['weight_decay'] for g in optimizer.param_groups for n in g['param_names']}
    base = OPTIMIZER['lr']
    assert lr['backbone.downsample_layers.0.0.weight'] == pytest.approx(base * 0.5**7)
    assert lr['backbone.stages.0.2.pwconv1.weight'] == pytest.approx(base * 0.5**6)
    assert lr['backbone.downsample_layers.1.1.weight'] == pytest.approx(base * 0.5**5)
    assert lr['backbone.stages.2.8.dwconv.weight'] == pytest.approx(base * 0.5**2)  # 3 + 8//3
    assert lr['backbone.stages.3.0.dwconv.weight'] == pytest.approx(base * 0.5)
    assert lr['backbone.norm2.weight'] == pytest.approx(base)
    assert lr['neck.lateral_convs.0.conv.weight'] == pytest.approx(base)
    assert wd['backbone.stages.1.0.gamma'] == 0 and wd['backbone.stages.1.0.pwconv1.bias'] == 0
    assert wd['backbone.stages.1.0.pwconv1.weight'] == 0.05
    # equal settings are merged: a handful of groups, not one per tensor
    assert len(optimizer.param_groups) <= 2 * 8


def test_num_layers_derived_from_backbone(mask_rcnn_s):
    optimizer = build_optim_wrapper(
        mask_rcnn_s, optim_cfg(decay_rate=0.8, decay_type='layer_wise')).optimizer
    lr = {n: g['lr'] for g in optimizer.param_groups for n in g['param_names']}
    assert lr['backbone.stages.3.0.dwconv.weight'] == pytest.approx(2e-4 * 0.8)
    assert lr['backbone.stages.2.26.dwconv.weight'] == pytest.approx(2e-4 * 0.8**2)  # id 11


def test_frozen_parameters_left_out():
    model = build_mask_rcnn('atto', frozen_stages=1)
    optimizer = build_optim_wrapper(model, optim_cfg(decay_rate=0.9)).optimizer
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g['params']}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert in_optimizer == trainable
    assert len(trainable) < len(list(model.parameters()))


def test_mmengine_options_on_top(mask_rcnn_t):
    optimizer = build_optim_wrapper(mask_rcnn_t, optim_cfg(
        decay_rate=0.5, decay_type='layer_wise', num_layers=6,
        custom_keys={'neck': dict(lr_mult=0.1, decay_mult=0.)},
        norm_decay_mult=1.0)).optimizer
    settings = {n: (g['lr'], g['weight_decay']) for g in optimizer.param_groups
                for n in g['param_names']}
    assert settings['neck.fpn_convs.0.conv.weight'] == (pytest.approx(2e-5), 0.)
    # norm_decay_mult set explicitly: norms decay even though they are 1-D
    assert settings['backbone.stages.0.0.norm.weight'] == (pytest.approx(2e-4 * 0.5**6), 0.05)
    assert settings['backbone.stages.0.0.pwconv1.bias'][1] == 0.


@pytest.mark.parametrize('scheduler', [
    dict(type='MultiStepLR', milestones=[4, 7], gamma=0.1, by_epoch=False, begin=3, end=10),
    dict(type='PolyLR', eta_min=0., power=1.0, by_epoch=False, begin=3, end=10),
])
def test_scheduler_keeps_decay_ratios(scheduler):
    from mmengine.registry import PARAM_SCHEDULERS
    model = build_mask_rcnn('atto')
    wrapper = build_optim_wrapper(model, optim_cfg(decay_rate=0.7, num_layers=5))
    schedulers = [
        PARAM_SCHEDULERS.build(dict(type='LinearLR', start_factor=0.1, by_epoch=False,
                                    begin=0, end=3), default_args=dict(optimizer=wrapper)),
        PARAM_SCHEDULERS.build(scheduler, default_args=dict(optimizer=wrapper)),
    ]
    groups = wrapper.optimizer.param_groups
    scales = [g['lr_scale'] for g in groups]
    top = scales.index(1.0)
    for _ in range(10):
        wrapper.optimizer.zero_grad()
        wrapper.optimizer.step()
        for s in schedulers:
            s.step()
        for group, scale in zip(groups, scales):
            if groups[top]['lr'] > 0:
                assert group['lr'] / groups[top]['lr'] == pytest.approx(scale, rel=1e-9)
    assert groups[top]['lr'] < OPTIMIZER['lr']


def test_optimizer_without_weight_decay():
    model = build_mask_rcnn('atto')
    cfg = optim_cfg(decay_rate=0.9)
    cfg['optimizer'] = dict(type='SGD', lr=0.1, momentum=0.9)
    optimizer = build_optim_wrapper(model, cfg).optimizer
    assert {g['weight_decay'] for g in optimizer.param_groups} == {0.}
    assert max(g['lr'] for g in optimizer.param_groups) == pytest.approx(0.1)


# -- bad configs ------------------------------------------------------------------------------
def test_unknown_decay_type():
    with pytest.raises(ValueError, match="decay_type='block_wise'"):
        ConvNeXtLayerDecayOptimWrapperConstructor(
            dict(optimizer=dict(OPTIMIZER)), dict(decay_rate=0.9, decay_type='block_wise'))


def test_missing_decay_rate():
    with pytest.raises(ValueError, match='decay_rate is required'):
        ConvNeXtLayerDecayOptimWrapperConstructor(dict(optimizer=dict(OPTIMIZER)), dict())


def test_num_layers_too_small_for_backbone(mask_rcnn_s):
    with pytest.raises(ValueError, match=r'num_layers=6 does not fit.*official recipe uses 12'):
        build_optim_wrapper(mask_rcnn_s, optim_cfg(decay_rate=0.8, num_layers=6))


def test_model_without_convnext_backbone():
    from mmdet.models.backbones import ResNet

    class Detector(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = ResNet(depth=18)

    with pytest.raises(TypeError, match='ConvNeXt.*got ResNet'):
        build_optim_wrapper(Detector(), optim_cfg(decay_rate=0.9))


def test_v2_same_as_mmdet_constructor_on_its_v2_config():
    """mmdet's ConvNeXt-V2 route (mmpretrain.ConvNeXt with use_grn, GRN stored as (C,)) through
    mmdet's constructor, and the same V2-B Mask R-CNN with this backbone (GRN stored as
    (1, 1, 1, C)) through ours, with mmdet's V2-B project settings: every parameter gets the same
    lr and weight decay, and GRN's gamma/beta get none, as in the official V2 fine-tuning."""
    from mmdet.engine.optimizers import LearningRateDecayOptimizerConstructor

    from convnext_dense.checkpoint import get_layout
    from convnext_dense.compat import import_mmpretrain
    import_mmpretrain()
    upstream = build_mask_rcnn('base', backbone_type='mmpretrain.ConvNeXt',
                               out_indices=[0, 1, 2, 3], gap_before_final_norm=False,
                               use_grn=True, layer_scale_init_value=0.)
    ours = build_mask_rcnn('base', version='v2')
    paramwise = dict(decay_rate=0.95, decay_type='layer_wise', num_layers=12)
    theirs_by_id = upstream_settings(LearningRateDecayOptimizerConstructor, upstream, **paramwise)
    ours_by_id = settings_by_param(build_optim_wrapper(ours, optim_cfg(**paramwise)).optimizer)

    mmpretrain = get_layout('mmpretrain')

    def our_name(name: str) -> str:
        if not name.startswith('backbone.'):
            return name
        return 'backbone.' + mmpretrain.rename_from(name[len('backbone.'):])

    theirs = {our_name(n): theirs_by_id[id(p)] for n, p in upstream.named_parameters()}
    mine = {n: ours_by_id[id(p)] for n, p in ours.named_parameters()}
    assert set(theirs) == set(mine)
    for name, (lr, weight_decay) in mine.items():
        assert lr == pytest.approx(theirs[name][0], rel=1e-12), name
        assert weight_decay == theirs[name][1], name
    assert mine['backbone.stages.2.5.grn.gamma'][1] == 0.
    assert mine['backbone.stages.2.5.pwconv1.weight'][1] == 0.05


# -- the DINOv3 / CLIP configs' backbones -------------------------------------------------------
@pytest.mark.parametrize('decay_type', ['layer_wise', 'stage_wise'])
def test_xxlarge_groups_follow_its_depths(decay_type):
    """CLIP's ConvNeXt-XXLarge has depths 3/4/30/3, unlike every paper size: the layer ids its
    depths imply (stage 1's fourth block, stage 2's 30 blocks in groups of 3), as mmseg's
    constructor assigns them. Built on the meta device (895M parameters)."""
    from mmseg.engine.optimizers import LearningRateDecayOptimizerConstructor
    with torch.device('meta'):
        model = build_upernet('xxlarge')
    num_layers = model.backbone.default_num_layers()
    assert num_layers == 3 + (30 + 2) // 3 == 13
    paramwise = dict(decay_rate=0.9, decay_type=decay_type, num_layers=num_layers)
    optimizer = build_optim_wrapper(model, optim_cfg(**paramwise)).optimizer
    theirs = upstream_settings(LearningRateDecayOptimizerConstructor, model, **paramwise)
    assert_same_settings(model, settings_by_param(optimizer), theirs)
    layer_id = {n: g['layer_id'] for g in optimizer.param_groups for n in g['param_names']}
    expected = {'backbone.stages.1.3.dwconv.weight': 2,
                'backbone.stages.2.29.dwconv.weight': 3 + 29 // 3,
                'backbone.stages.3.2.dwconv.weight': num_layers,
                'backbone.norm3.weight': num_layers + 1}
    if decay_type == 'stage_wise':
        expected.update({'backbone.stages.1.3.dwconv.weight': 2,
                         'backbone.stages.2.29.dwconv.weight': 3,
                         'backbone.stages.3.2.dwconv.weight': 4})
    assert {n: layer_id[n] for n in expected} == expected
    assert max(layer_id.values()) == num_layers + 1


def test_frozen_backbone_leaves_only_the_heads():
    """The frozen-backbone UperNet configs (frozen_stages=4): no backbone parameter in the
    optimizer, the heads at the base lr."""
    model = build_upernet('atto', frozen_stages=4)
    optimizer = build_optim_wrapper(model, optim_cfg(decay_rate=0.9, decay_type='stage_wise',
                                                     num_layers=6)).optimizer
    names = [n for g in optimizer.param_groups for n in g['param_names']]
    assert names and not any(n.startswith('backbone.') for n in names)
    assert {g['lr'] for g in optimizer.param_groups} == {OPTIMIZER['lr']}
