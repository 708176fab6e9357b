"""Checkpoint layouts: detection, conversion, round trips, files of every published layout,
init_cfg loading, the CLI and the errors."""
import subprocess
import sys

import pytest
import torch

from convnext_dense.checkpoint import (
    LAYOUTS,
    convert_checkpoint_file,
    convert_state_dict,
    detect_layout,
    export_state_dict,
    fit_model_state_dict,
    load_pretrained,
)
from convnext_dense.engine import UnsafeCheckpointError, import_mmpretrain
from convnext_dense.models import ConvNeXt
from tests.helpers import ROOT, build_mask_rcnn, perturb_, stage_outputs
from tests.numerics import (
    assert_backbone_outputs_close,
    assert_close_to_reference,
    reduction_depth,
)


def random_state(model):
    generator = torch.Generator().manual_seed(0)
    return {k: torch.randn(v.shape, generator=generator) for k, v in model.state_dict().items()}


def official_release(model):
    """An official ImageNet release: {'model': ...} with the final norm and head, no norm{i}."""
    state = {k: v for k, v in random_state(model).items() if not k.startswith('norm')}
    dim = model.dims[-1]
    state.update({'norm.weight': torch.ones(dim), 'norm.bias': torch.zeros(dim),
                  'head.weight': torch.zeros(1000, dim), 'head.bias': torch.zeros(1000)})
    return {'model': state}


@pytest.mark.parametrize('version', ['v1', 'v2'])
@pytest.mark.parametrize('layout', LAYOUTS)
def test_round_trip_is_exact(layout, version):
    model = ConvNeXt(arch='atto', version=version)
    state = random_state(model)
    exported = export_state_dict(state, layout)
    assert detect_layout(exported) == (layout, '')
    back, report = convert_state_dict(exported)
    assert report.layout == layout and not report.ignored
    assert back.keys() == state.keys()
    for key in state:
        assert torch.equal(back[key], state[key]), key


def test_timm_names():
    exported = export_state_dict(random_state(ConvNeXt(arch='atto', version='v2')), 'timm')
    assert 'stem.0.weight' in exported and 'stages.1.downsample.1.weight' in exported
    assert exported['stages.0.blocks.1.mlp.grn.weight'].shape == (160, )


def test_hf_names():
    exported = export_state_dict(random_state(ConvNeXt(arch='atto', version='v1')), 'hf')
    assert 'embeddings.patch_embeddings.weight' in exported
    assert 'encoder.stages.2.layers.5.layer_scale_parameter' in exported
    assert 'hidden_states_norms.stage4.weight' in exported


@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
def test_loads_official_release_file(tmp_path, suffix):
    model = ConvNeXt(arch='atto')
    release = official_release(model)
    path = tmp_path / f'convnext_atto_1k{suffix}'
    if suffix == '.safetensors':
        from safetensors.torch import save_file
        save_file(release['model'], str(path))
    else:
        torch.save(release, path)
    report = load_pretrained(model, str(path))
    assert report.layout == 'official'
    assert sorted(report.dropped_classifier) == ['head.bias', 'head.weight', 'norm.bias',
                                                 'norm.weight']
    for key, value in model.state_dict().items():
        if not key.startswith('norm'):
            assert torch.equal(value, release['model'][key]), key


def test_loads_finetuned_mmdet2_detector(tmp_path):
    """The paper's fine-tuned COCO models: mmdet 2.x, backbone under 'backbone.'."""
    model = ConvNeXt(arch='atto')
    backbone = random_state(model)
    state = {f'backbone.{k}': v for k, v in backbone.items()}
    state['neck.lateral_convs.0.conv.weight'] = torch.zeros(256, 40, 1, 1)
    torch.save({'meta': {'epoch': 36}, 'state_dict': state}, tmp_path / 'cascade.pth')
    report = load_pretrained(model, str(tmp_path / 'cascade.pth'))
    assert report.prefix == 'backbone.' and report.ignored == ['neck.lateral_convs.0.conv.weight']
    for key, value in model.state_dict().items():
        assert torch.equal(value, backbone[key]), key


def test_init_cfg_pretrained(tmp_path):
    source = ConvNeXt(arch='atto', version='v2')
    state = export_state_dict(random_state(source), 'timm')
    torch.save(state, tmp_path / 'timm.pth')
    model = ConvNeXt(arch='atto', version='v2',
                     init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'timm.pth')))
    model.init_weights()
    assert torch.equal(model.stages[2][3].grn.gamma.flatten(),
                       state['stages.2.blocks.3.mlp.grn.weight'])


def test_another_arch_names_first_mismatch(tmp_path):
    torch.save(official_release(ConvNeXt(arch='femto')), tmp_path / 'femto.pth')
    with pytest.raises(ValueError, match=r"another ConvNeXt arch.*'downsample_layers\.0\.0\."
                       r"weight' has shape \(48, 3, 4, 4\) in the checkpoint but \(40, 3, 4, 4\)"):
        load_pretrained(ConvNeXt(arch='atto'), str(tmp_path / 'femto.pth'))


def test_other_version_lacks_weights(tmp_path):
    torch.save(official_release(ConvNeXt(arch='atto', version='v1')), tmp_path / 'v1.pth')
    with pytest.raises(ValueError, match=r'lacks .* weights.*grn'):
        load_pretrained(ConvNeXt(arch='atto', version='v2'), str(tmp_path / 'v1.pth'))


def test_not_a_convnext_state_dict():
    with pytest.raises(ValueError, match='not a ConvNeXt state dict.*conv1.weight'):
        detect_layout({'conv1.weight': torch.zeros(1)})


def test_not_a_checkpoint_file(tmp_path):
    (tmp_path / 'x.pth').write_bytes(b'\x00garbage')
    with pytest.raises(ValueError, match=r"'.*x\.pth' is not a PyTorch checkpoint"):
        load_pretrained(ConvNeXt(arch='atto'), str(tmp_path / 'x.pth'))


class RunsCode:
    def __reduce__(self):
        return (exec, ('import os; os.system("touch pwned")',))


def test_pickle_that_runs_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({'model': RunsCode()}, tmp_path / 'evil.pth')
    with pytest.raises(UnsafeCheckpointError, match='refusing to load'):
        load_pretrained(ConvNeXt(arch='atto'), str(tmp_path / 'evil.pth'))
    assert not (tmp_path / 'pwned').exists()


def test_convert_checkpoint_cli(tmp_path):
    source = ConvNeXt(arch='atto')
    state = random_state(source)
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in
                               export_state_dict(state, 'mmpretrain').items()}},
               tmp_path / 'mmpretrain.pth')
    result = subprocess.run([sys.executable, str(ROOT / 'tools/convert_checkpoint.py'),
                             str(tmp_path / 'mmpretrain.pth'), str(tmp_path / 'out.pth')],
                            capture_output=True, text=True, check=True)
    assert 'mmpretrain' in result.stdout
    converted = torch.load(tmp_path / 'out.pth', weights_only=True)
    assert set(converted['state_dict']) == set(state)
    model = ConvNeXt(arch='atto', init_cfg=dict(type='Pretrained',
                                                checkpoint=str(tmp_path / 'out.pth')))
    model.init_weights()
    assert torch.equal(model.stages[1][0].dwconv.weight, state['stages.1.0.dwconv.weight'])


# -- whole-model checkpoints (tools/test.py) ----------------------------------------------------
def upstream_mask_rcnn():
    """mmdet 3.x's own ConvNeXt route: backbone=dict(type='mmpretrain.ConvNeXt'); the checkpoints
    it writes hold the backbone in mmpretrain names."""
    from convnext_dense.engine import import_mmpretrain
    import_mmpretrain()
    return build_mask_rcnn('atto', backbone_type='mmpretrain.ConvNeXt', out_indices=[0, 1, 2, 3],
                           gap_before_final_norm=False, use_grn=True, layer_scale_init_value=0.)


def test_fit_whole_detector_converts_an_mmpretrain_backbone():
    upstream = upstream_mask_rcnn().eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in upstream.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.02)
    ours = build_mask_rcnn('atto').eval()  # V2 atto, as mmpretrain's with use_grn
    state, notes = fit_model_state_dict(ours.state_dict(), upstream.state_dict())
    backbone_tensors = sum(k.startswith('backbone.') for k in ours.state_dict())
    assert notes == [f'backbone converted from the mmpretrain layout ({backbone_tensors} '
                     'tensors)']
    ours.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 64, 64, generator=generator)
    depth = reduction_depth(ours.backbone, ours.neck, grn_positions=64 * 64 // 16)
    with torch.no_grad():
        for i, (a, b) in enumerate(zip(ours.neck(ours.backbone(x)),
                                       upstream.neck(upstream.backbone(x)))):
            assert_close_to_reference(a, b, depth, name=f'FPN level {i}')


def test_fit_whole_detector_in_project_layout_as_is():
    model = build_mask_rcnn('atto')
    source = model.state_dict()
    state, notes = fit_model_state_dict(source, {**source, 'extra.weight': torch.zeros(1)})
    assert notes == ["1 tensors not in the model, not loaded: ['extra.weight']"]
    assert all(state[k] is v for k, v in source.items())


def test_fit_whole_model_errors_name_the_checkpoint_and_keys():
    model_state = build_mask_rcnn('atto').state_dict()
    backbone_only = official_release(ConvNeXt(arch='atto'))['model']
    with pytest.raises(ValueError, match=r"^ckpt holds only a ConvNeXt backbone \(official "
                       r"layout\), not a whole model; .*model\.backbone\.init_cfg\.checkpoint"):
        fit_model_state_dict(model_state, backbone_only, source='ckpt')
    other_classes = dict(model_state)
    other_classes['roi_head.bbox_head.fc_cls.weight'] = torch.zeros(11, 1024)
    with pytest.raises(ValueError, match=r"ckpt does not fit this model: 'roi_head\.bbox_head\."
                       r"fc_cls\.weight' has shape \(11, 1024\) in the checkpoint but \(81, "
                       r"1024\) in the model"):
        fit_model_state_dict(model_state, other_classes, source='ckpt')
    segmentor = {k: v for k, v in model_state.items() if k.startswith('backbone.')}
    segmentor['decode_head.conv_seg.weight'] = torch.zeros(150, 512, 1, 1)
    with pytest.raises(ValueError, match=r"ckpt lacks \d+ of the model's \d+ tensors, e\.g\. "
                       r"\['neck\.lateral_convs\.0\.conv\.weight'"):
        fit_model_state_dict(model_state, segmentor, source='ckpt')


# -- export: the written file loads into the target library's own model ------------------------
def exported_file(tmp_path, model: ConvNeXt, layout: str) -> dict:
    """The model's perturbed weights, loaded into it and written by the converter in
    ``layout``; returns the written state dict."""
    perturb_(model)
    torch.save({'state_dict': model.state_dict()}, tmp_path / 'ours.pth')
    convert_checkpoint_file(str(tmp_path / 'ours.pth'), str(tmp_path / f'{layout}.pth'),
                            layout=layout)
    return torch.load(tmp_path / f'{layout}.pth', weights_only=True)['state_dict']


@pytest.mark.parametrize('timm_name, arch, version', [
    ('convnextv2_atto', 'atto', 'v2'),   # 1x1-conv MLP (conv_mlp=True)
    ('convnextv2_nano', 'nano', 'v2'),
    ('convnext_femto', 'femto', 'v1'),
    ('convnextv2_tiny', 'tiny', 'v2'),   # Linear MLP
    ('convnext_tiny', 'tiny', 'v1'),
])
def test_export_to_timm_loads_into_timm(tmp_path, timm_name, arch, version):
    timm = pytest.importorskip('timm')
    ours = ConvNeXt(arch=arch, version=version).eval()
    state = exported_file(tmp_path, ours, 'timm')
    reference = timm.create_model(timm_name, pretrained=False).eval()
    missing, unexpected = reference.load_state_dict(state, strict=False)
    # timm's classifier head is not in a backbone file; our per-stage norms have no timm module
    assert all(k.startswith('head.') for k in missing), missing
    assert sorted(unexpected) == sorted(f'norm{i}.{p}' for i in range(4)
                                        for p in ('weight', 'bias'))
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        features = reference.forward_intermediates(x, intermediates_only=True)
        assert_backbone_outputs_close(stage_outputs(ours, x), features, ours, x)


@pytest.mark.parametrize('version', ['v1', 'v2'])
def test_export_to_hf_loads_into_transformers_backbone(tmp_path, version):
    transformers = pytest.importorskip('transformers')
    ours = ConvNeXt(arch='atto', version=version).eval()
    state = exported_file(tmp_path, ours, 'hf')
    config_cls, backbone_cls = ((transformers.ConvNextConfig, transformers.ConvNextBackbone)
                                if version == 'v1' else
                                (transformers.ConvNextV2Config, transformers.ConvNextV2Backbone))
    config = config_cls(depths=ours.depths, hidden_sizes=ours.dims,
                        out_features=['stage1', 'stage2', 'stage3', 'stage4'])
    reference = backbone_cls(config).eval()
    reference.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert_backbone_outputs_close(ours(x), reference(x).feature_maps, ours, x)


@pytest.mark.parametrize('version', ['v1', 'v2'])
def test_export_to_mmpretrain_loads_as_mmdet_configs_load_it(tmp_path, version):
    from mmengine.runner.checkpoint import _load_checkpoint_with_prefix
    mmpretrain_models = import_mmpretrain()
    ours = ConvNeXt(arch='atto', version=version).eval()
    exported_file(tmp_path, ours, 'mmpretrain')
    reference = mmpretrain_models.ConvNeXt(
        arch='atto', out_indices=[0, 1, 2, 3], gap_before_final_norm=False,
        use_grn=version == 'v2', layer_scale_init_value=1e-6 if version == 'v1' else 0.)
    reference.eval()  # mmpretrain's ConvNeXt.train() returns None, so not chained
    # what init_cfg=dict(type='Pretrained', prefix='backbone.') of mmdet's/mmseg's configs runs
    # (mmengine's PretrainedInit), here with every key required
    state = _load_checkpoint_with_prefix('backbone.', str(tmp_path / 'mmpretrain.pth'),
                                         map_location='cpu')
    reference.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert_backbone_outputs_close(ours(x), reference(x), ours, x)
