"""checkpoint/layouts.py: layout detection, conversion and export for V1 and V2 (exact round
trips, the names of each layout, the V2 sparse FCMAE kernels against the official conversion and
against a sparse convolution emulated on a dense grid), and exported files loaded by the target
library's own model (timm, transformers, mmpretrain as mmdet's configs load it)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from convnext_dense.checkpoint import (
    LAYOUTS,
    convert_checkpoint_file,
    convert_state_dict,
    detect_layout,
    export_state_dict,
)
from convnext_dense.checkpoint.layouts import (
    conv_weight_to_sparse_kernel,
    sparse_kernel_to_conv_weight,
)
from convnext_dense.compat import import_mmpretrain
from convnext_dense.models import ConvNeXt
from tests.checkpoint.release_files import dense_from_kernel, random_state
from tests.helpers import perturb_, stage_outputs
from tests.numerics import assert_backbone_outputs_close


# -- detection, conversion, round trips ---------------------------------------------------------
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


def test_not_a_convnext_state_dict():
    with pytest.raises(ValueError, match='not a ConvNeXt state dict.*conv1.weight'):
        detect_layout({'conv1.weight': torch.zeros(1)})


# -- the V2 sparse kernels (FCMAE) --------------------------------------------------------------
@pytest.mark.parametrize('shape', [(49, 6), (4, 5, 7), (9, 3, 2)])
def test_sparse_kernel_conversion_is_remap_checkpoint_keys(shape):
    kernel = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    weight = sparse_kernel_to_conv_weight(kernel)
    assert torch.equal(weight, dense_from_kernel(kernel))
    assert torch.equal(conv_weight_to_sparse_kernel(weight, depthwise=len(shape) == 2), kernel)


def test_depthwise_kernel_is_the_sparse_convolution_on_a_dense_grid():
    """With every site active (fine-tuning), MinkowskiDepthwiseConvolution (7x7, odd: offsets
    -3..3) computes ``out[c, y, x] = b[c] + sum_k W[k, c] x[c, y + dy_k, x + dx_k]``, offset ``k``
    at ``(dy, dx) = (k % 7 - 3, k // 7 - 3)``; the converted weight's Conv2d computes it."""
    generator = torch.Generator().manual_seed(1)
    channels, size = 5, 11
    kernel = torch.randn(49, channels, generator=generator)
    bias = torch.randn(1, channels, generator=generator)
    x = torch.randn(channels, size, size, generator=generator)
    padded = F.pad(x, (3, 3, 3, 3))
    expected = bias.reshape(-1, 1, 1).expand(channels, size, size).clone()
    for k in range(49):
        dy, dx = k % 7 - 3, k // 7 - 3
        expected += kernel[k].reshape(-1, 1, 1) * padded[:, 3 + dy:3 + dy + size,
                                                         3 + dx:3 + dx + size]
    dense = F.conv2d(x[None], sparse_kernel_to_conv_weight(kernel), bias.reshape(-1),
                     padding=3, groups=channels)[0]
    torch.testing.assert_close(dense, expected, rtol=1e-5, atol=1e-5)


def test_downsampling_kernel_is_the_strided_sparse_convolution_on_a_dense_grid():
    """MinkowskiConvolution 2x2 stride 2 (even: offsets 0..1) on a full grid:
    ``out[o, y, x] = b[o] + sum_{k, i} W[k, i, o] x[i, 2y + k % 2, 2x + k // 2]``."""
    generator = torch.Generator().manual_seed(2)
    c_in, c_out, size = 3, 4, 8
    kernel = torch.randn(4, c_in, c_out, generator=generator)
    bias = torch.randn(1, c_out, generator=generator)
    x = torch.randn(c_in, size, size, generator=generator)
    expected = bias.reshape(-1, 1, 1).expand(c_out, size // 2, size // 2).clone()
    for k in range(4):
        dy, dx = k % 2, k // 2
        expected += torch.einsum('io,ihw->ohw', kernel[k], x[:, dy::2, dx::2])
    dense = F.conv2d(x[None], sparse_kernel_to_conv_weight(kernel), bias.reshape(-1),
                     stride=2)[0]
    torch.testing.assert_close(dense, expected, rtol=1e-5, atol=1e-5)


def test_a_kernel_that_is_not_square_is_refused():
    with pytest.raises(ValueError, match=r"'stages\.0\.0\.dwconv\.weight' has shape \(48, 8\): "
                       r'48 kernel offsets are not a square'):
        convert_state_dict({'stages.0.0.dwconv.kernel': torch.zeros(48, 8)})


# -- export: the written file loads into the target library's own model -------------------------
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
