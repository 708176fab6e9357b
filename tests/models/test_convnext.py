"""ConvNeXt backbone: parity with timm, mmpretrain and Hugging Face transformers, shapes of every
arch, freezing, activation checkpointing, memory format and argument validation."""
import pytest
import torch

from convnext_dense.arch_settings import ARCH_SETTINGS, V1_ARCHS, V2_ARCHS
from convnext_dense.checkpoint import load_state_dict_into
from convnext_dense.compat import import_mmpretrain
from convnext_dense.models import ConvNeXt
from tests.helpers import META_ARCHS, perturb_, stage_outputs
from tests.numerics import (
    assert_backbone_outputs_close,
    assert_close_to_reference,
    reduction_depth,
    rounding_depth,
)


# -- parity against outside implementations ---------------------------------------------------
# V2 models with Linear MLPs, as the official V2 code builds them (timm's published small V2
# sizes use 1x1 convolutions instead: see the next test).
@pytest.mark.parametrize('timm_name, timm_kwargs, arch', [
    ('convnext_tiny', {}, dict(arch='tiny')),
    ('convnext_atto', {}, dict(arch='atto', version='v1')),  # 1x1-conv MLP layout
    ('convnextv2_atto', dict(conv_mlp=False), dict(arch='atto', version='v2')),
    ('convnextv2_nano', dict(conv_mlp=False), dict(arch='nano', version='v2')),
])
def test_matches_timm(timm_name, timm_kwargs, arch):
    timm = pytest.importorskip('timm')
    reference = perturb_(timm.create_model(timm_name, pretrained=False, **timm_kwargs))
    ours = ConvNeXt(**arch).eval()
    load_state_dict_into(ours, reference.state_dict(), source=timm_name)
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = reference.forward_intermediates(x, intermediates_only=True)
        assert_backbone_outputs_close(stage_outputs(ours, x), theirs, ours, x)


def test_matches_timm_conv_mlp_layout():
    """timm's published convnextv2_atto runs its MLP as 1x1 convolutions: the weights convert
    exactly, and the outputs differ only by the rounding of a conv against a matmul."""
    timm = pytest.importorskip('timm')
    reference = perturb_(timm.create_model('convnextv2_atto', pretrained=False))
    assert reference.stages[0].blocks[0].mlp.fc1.weight.ndim == 4
    ours = ConvNeXt(arch='atto', version='v2').eval()
    load_state_dict_into(ours, reference.state_dict())
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = reference.forward_intermediates(x, intermediates_only=True)
        assert_backbone_outputs_close(stage_outputs(ours, x), theirs, ours, x)


@pytest.mark.parametrize('arch, kwargs', [
    ('tiny', dict()),
    ('atto', dict(use_grn=True, layer_scale_init_value=0.)),
])
def test_matches_mmpretrain(arch, kwargs):
    mmpretrain_models = import_mmpretrain()
    reference = mmpretrain_models.ConvNeXt(arch=arch, out_indices=(0, 1, 2, 3),
                                           gap_before_final_norm=False, **kwargs)
    perturb_(reference)
    ours = ConvNeXt(arch=arch, version='v2' if kwargs else 'v1').eval()
    # mmpretrain's classifier checkpoints carry the 'backbone.' prefix.
    load_state_dict_into(ours, {f'backbone.{k}': v for k, v in reference.state_dict().items()})
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        # both through their per-stage norms
        assert_backbone_outputs_close(ours(x), reference(x), ours, x)


@pytest.mark.parametrize('version', ['v1', 'v2'])
def test_matches_huggingface(version):
    transformers = pytest.importorskip('transformers')
    if version == 'v1':
        config = transformers.ConvNextConfig(depths=[2, 2, 6, 2], hidden_sizes=[40, 80, 160, 320])
        reference = transformers.ConvNextModel(config)
    else:
        config = transformers.ConvNextV2Config(depths=[2, 2, 6, 2],
                                               hidden_sizes=[40, 80, 160, 320])
        reference = transformers.ConvNextV2Model(config)
    perturb_(reference)
    ours = ConvNeXt(arch=dict(depths=[2, 2, 6, 2], dims=[40, 80, 160, 320]), version=version)
    ours.eval()
    prefix = 'convnext.' if version == 'v1' else 'convnextv2.'
    load_state_dict_into(ours, {prefix + k: v for k, v in reference.state_dict().items()})
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        hidden = reference(x, output_hidden_states=True).hidden_states[1:]
        assert_backbone_outputs_close(stage_outputs(ours, x), hidden, ours, x)


# -- arch presets -----------------------------------------------------------------------------
@pytest.mark.parametrize('version, arch', [('v1', a) for a in V1_ARCHS] +
                         [('v2', a) for a in V2_ARCHS])
def test_every_arch_shapes_and_strides(version, arch):
    device = 'meta' if arch in META_ARCHS else 'cpu'  # shapes and strides only
    with torch.device(device):
        model = ConvNeXt(arch=arch, version=version).eval()
    dims = ARCH_SETTINGS[arch]['dims']
    assert model.out_channels == dims
    assert model.strides == [4, 8, 16, 32]
    assert [f['num_chs'] for f in model.feature_info] == dims
    assert (model.stages[0][0].grn is not None) == (version == 'v2')
    assert (model.stages[0][0].gamma is not None) == (version == 'v1')
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64, device=device))
    assert [tuple(o.shape) for o in outs] == [(1, c, 64 // s, 64 // s)
                                              for c, s in zip(dims, [4, 8, 16, 32])]
    # NCHW memory, as mmdet/mmseg necks and mmcv ops expect (mmcv's RoIAlign misreads others)
    assert all(o.is_contiguous() for o in outs)


def test_out_indices_negative_and_subset():
    model = ConvNeXt(arch='atto', out_indices=(-1, 1)).eval()
    assert model.out_indices == (1, 3)
    assert model.out_channels == [80, 320] and model.strides == [8, 32]
    assert not hasattr(model, 'norm0') and hasattr(model, 'norm3')
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [80, 320]


def test_drop_path_rate_linear_over_blocks():
    model = ConvNeXt(arch='atto', drop_path_rate=0.3)
    rates = [getattr(block.drop_path, 'drop_prob', 0.) for stage in model.stages
             for block in stage]
    expected = torch.linspace(0, 0.3, 12).tolist()
    assert rates == pytest.approx(expected)


# -- freezing ---------------------------------------------------------------------------------
@pytest.mark.parametrize('frozen_stages', [-1, 0, 1, 2, 4])
def test_frozen_stages(frozen_stages):
    model = ConvNeXt(arch='atto', frozen_stages=frozen_stages)
    model.train()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    expected = set()
    if frozen_stages >= 0:
        expected |= {n for n, _ in model.named_parameters()
                     if n.startswith('downsample_layers.0.')}
    for i in range(max(frozen_stages, 0)):
        expected |= {n for n, _ in model.named_parameters()
                     if n.startswith((f'downsample_layers.{i}.', f'stages.{i}.', f'norm{i}.'))}
    assert frozen == expected
    for name, module in model.named_modules():
        if any(p in frozen for p in (f'{name}.{n}' for n, _ in
                                     module.named_parameters(recurse=False))):
            assert not module.training, name
    if frozen_stages < 4:
        assert model.stages[3].training


# -- activation checkpointing and memory format -----------------------------------------------
def test_with_cp_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain = perturb_(ConvNeXt(arch='atto', version='v2')).train()
    checkpointed = ConvNeXt(arch='atto', version='v2', with_cp=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    outs = [model(x.clone().requires_grad_()) for model in (plain, checkpointed)]
    for out in outs:
        sum(o.square().mean() for o in out).backward()
    assert_backbone_outputs_close(outs[1], outs[0], plain, x)
    # A weight's gradient adds the backward pass's reductions (as deep as the forward's) to a
    # sum over the batch's positions of the largest map.
    depth = 2 * reduction_depth(plain, grn_positions=64 * 64 // 16) + 2 * 64 * 64 // 16
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        assert_close_to_reference(b.grad, a.grad, depth, name=name)


def test_channels_last_same_output():
    model = perturb_(ConvNeXt(arch='atto'))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = model(x)
        fast = model.to(memory_format=torch.channels_last)(
            x.to(memory_format=torch.channels_last))
    assert_backbone_outputs_close(fast, reference, model, x)
    for b in fast:
        assert b.is_contiguous()  # outputs are NCHW whatever the model's memory format


def test_bf16_autocast_runs_in_bf16():
    model = perturb_(ConvNeXt(arch='atto', version='v2'))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(x)
    with torch.no_grad():
        reference = model(x)
    # Each convolution and Linear rounds its inputs and weights to bf16 (eps 2**-7) and
    # accumulates in fp32, so the roundings, not the sums, set the error.
    depth = rounding_depth(model)
    for i, (out, ref) in enumerate(zip(outs, reference)):
        assert out.dtype == torch.bfloat16
        assert torch.isfinite(out).all()
        assert_close_to_reference(out.float(), ref, depth, dtype=torch.bfloat16,
                                  name=f'output {i}')


# -- bad input --------------------------------------------------------------------------------
def test_unknown_arch_lists_valid_ones():
    with pytest.raises(ValueError, match=r"arch='gigantic'.*atto.*tiny.*huge"):
        ConvNeXt(arch='gigantic')


def test_unknown_version():
    with pytest.raises(ValueError, match=r"version='v3'"):
        ConvNeXt(arch='tiny', version='v3')


def test_version_defaults_follow_the_papers():
    assert ConvNeXt(arch='tiny').version == 'v1' and ConvNeXt(arch='atto').version == 'v2'
    v1_atto = ConvNeXt(arch='atto', version='v1')
    assert v1_atto.stages[0][0].gamma is not None and v1_atto.stages[0][0].grn is None


def test_bad_custom_arch():
    with pytest.raises(ValueError, match='4 depths and 4 dims'):
        ConvNeXt(arch=dict(depths=[1, 1, 1], dims=[8, 16, 32]))


@pytest.mark.parametrize('out_indices', [(4, ), (0, -5), (1, 1)])
def test_out_indices_out_of_range(out_indices):
    with pytest.raises(ValueError, match='out_indices'):
        ConvNeXt(arch='atto', out_indices=out_indices)


@pytest.mark.parametrize('frozen_stages', [-2, 5])
def test_frozen_stages_out_of_range(frozen_stages):
    with pytest.raises(ValueError, match=f'frozen_stages={frozen_stages}'):
        ConvNeXt(arch='atto', frozen_stages=frozen_stages)


def test_wrong_in_channels_at_forward():
    model = ConvNeXt(arch='atto', in_channels=3)
    with pytest.raises(ValueError, match=r'in_channels=3.*\(1, 4, 32, 32\)'):
        model(torch.randn(1, 4, 32, 32))
