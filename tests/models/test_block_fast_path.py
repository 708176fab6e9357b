"""The ConvNeXt block's folded tail (layer scale folded into the second Linear, the residual
added by the matmul, drop path applied per sample inside the residual add) computes the paper's
block: outputs and gradients against timm and against the block written out as the papers do,
in train mode with drop path, channels_last, bf16 autocast and activation checkpointing; under
fp16 autocast the block computes timm's tail (no folding); and the backbone compiles with
``fullgraph=True``."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath

from convnext_dense.checkpoint import export_state_dict
from convnext_dense.models import Block, ConvNeXt
from tests.helpers import perturb_, stage_outputs
from tests.numerics import (
    assert_close_to_reference,
    reduction_depth,
    rounding_depth,
    tolerance,
)

DIM = 16
# A small backbone for the compile tests: every kind of layer of a ConvNeXt, few of them.
SMALL = dict(depths=[1, 1, 1, 1], dims=[8, 16, 24, 32])
VERSIONS = {'v1': dict(layer_scale_init_value=1e-6), 'v2': dict(layer_scale_init_value=0.,
                                                                 use_grn=True)}
FORMATS = {'nchw': torch.contiguous_format, 'channels_last': torch.channels_last}


def _block(version: str, drop_path: float = 0.) -> Block:
    return perturb_(Block(DIM, drop_path=drop_path, **VERSIONS[version]))


def _input(n: int = 2, size: int = 8, memory_format=torch.contiguous_format,
           seed: int = 1) -> torch.Tensor:
    x = torch.randn(n, DIM, size, size, generator=torch.Generator().manual_seed(seed))
    return x.contiguous(memory_format=memory_format).requires_grad_()


def paper_block(block: Block, x: torch.Tensor, drop_path: DropPath | None = None) -> torch.Tensor:
    """The block as the papers write it, from ``block``'s parameters: dwconv -> LN -> Linear ->
    GELU -> [GRN, Woo et al. Eq. 1-3] -> Linear -> gamma -> drop path -> + x."""
    h = F.conv2d(x, block.dwconv.weight, block.dwconv.bias, padding=3, groups=x.shape[1])
    h = h.permute(0, 2, 3, 1)
    h = F.layer_norm(h, block.norm.normalized_shape, block.norm.weight, block.norm.bias,
                     block.norm.eps)
    h = F.gelu(F.linear(h, block.pwconv1.weight, block.pwconv1.bias))
    if block.grn is not None:
        global_feature = torch.norm(h, p=2, dim=(1, 2), keepdim=True)
        normalized = global_feature / (global_feature.mean(dim=-1, keepdim=True) + block.grn.eps)
        h = block.grn.gamma * (h * normalized) + block.grn.beta + h
    h = F.linear(h, block.pwconv2.weight, block.pwconv2.bias)
    if block.gamma is not None:
        h = block.gamma * h
    h = h.permute(0, 3, 1, 2)
    if drop_path is not None:
        h = drop_path(h)
    return x + h


def _grads(module: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    grads = {name: p.grad for name, p in module.named_parameters() if p.grad is not None}
    grads['input'] = x.grad
    return grads


def _forward_backward(forward, module: torch.nn.Module, x: torch.Tensor):
    module.zero_grad()
    x.grad = None
    out = forward(x)
    outs = out if isinstance(out, (tuple, list)) else (out, )
    # weights each output element differently, so that a permuted gradient would show
    sum((o * torch.linspace(-1, 1, o.numel()).view(o.shape)).sum() for o in outs).backward()
    return outs, _grads(module, x)


def _assert_grads_close(actual: dict, expected: dict, depth: int) -> None:
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        assert_close_to_reference(actual[name], value, depth, name=f'grad {name}')


def _grad_depth(module: torch.nn.Module, x: torch.Tensor, positions: int) -> int:
    # The backward pass repeats the forward's reductions (transposed), and a weight's gradient
    # adds a sum over the batch's positions of the map the weight sees.
    return 2 * reduction_depth(module, grn_positions=positions) + x.shape[0] * positions


# -- the block against the papers' block --------------------------------------------------------
@pytest.mark.parametrize('memory_format', FORMATS.values(), ids=FORMATS.keys())
@pytest.mark.parametrize('version', VERSIONS)
@pytest.mark.parametrize('training', [False, True], ids=['eval', 'train'])
def test_block_matches_paper_block(version, memory_format, training):
    block = _block(version).train(training)
    x = _input(memory_format=memory_format)
    outs, grads = _forward_backward(block, block, x)
    expected_outs, expected_grads = _forward_backward(lambda t: paper_block(block, t), block, x)
    positions = x.shape[2] * x.shape[3]
    assert_close_to_reference(outs[0], expected_outs[0],
                              reduction_depth(block, grn_positions=positions), name='output')
    assert set(grads) == {name for name, _ in block.named_parameters()} | {'input'}
    _assert_grads_close(grads, expected_grads, _grad_depth(block, x, positions))


@pytest.mark.parametrize('memory_format', FORMATS.values(), ids=FORMATS.keys())
@pytest.mark.parametrize('version', VERSIONS)
def test_drop_path_same_draw_as_mmcv_drop_path(version, memory_format):
    """Under the same seed the block drops the samples that mmcv's DropPath on the branch drops;
    a dropped sample's output is its input exactly, a kept one adds the branch / keep_prob."""
    drop_prob = 0.5
    block = _block(version, drop_path=drop_prob).train()
    x = _input(n=8, memory_format=memory_format)
    torch.manual_seed(4)
    outs, grads = _forward_backward(block, block, x)
    torch.manual_seed(4)
    reference = DropPath(drop_prob).train()
    expected_outs, expected_grads = _forward_backward(
        lambda t: paper_block(block, t, reference), block, x)
    positions = x.shape[2] * x.shape[3]
    depth = reduction_depth(block, grn_positions=positions)
    assert_close_to_reference(outs[0], expected_outs[0], depth, name='output')
    _assert_grads_close(grads, expected_grads, _grad_depth(block, x, positions))

    with torch.no_grad():
        branch = paper_block(block, x) - x
        dropped = [torch.equal(outs[0][i], x[i]) for i in range(len(x))]
        assert 0 < sum(dropped) < len(x), 'seed 4 must drop some samples and keep others'
        for i, was_dropped in enumerate(dropped):
            if not was_dropped:
                assert_close_to_reference(outs[0][i], x[i] + branch[i] / (1 - drop_prob), depth,
                                          name=f'kept sample {i}')
    # a dropped sample's branch gets no gradient: its input gradient is the output's
    weight = torch.linspace(-1, 1, outs[0].numel()).view(outs[0].shape)
    for i, was_dropped in enumerate(dropped):
        if was_dropped:
            assert torch.equal(grads['input'][i], weight[i])


@pytest.mark.parametrize('version', VERSIONS)
@pytest.mark.parametrize('training', [False, True], ids=['eval', 'train_drop_path'])
def test_memory_format_kept(version, training):
    """A channels_last input runs the block in NHWC and stays channels_last (the backbone stays
    NHWC from the stem to the last stage); an NCHW input gives an NCHW output."""
    block = _block(version, drop_path=0.5).train(training)
    x = _input()
    x_cl = x.detach().contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.manual_seed(0)
        out = block(x)
        torch.manual_seed(0)
        out_cl = block(x_cl)
    assert out.is_contiguous()
    assert out_cl.is_contiguous(memory_format=torch.channels_last)
    positions = x.shape[2] * x.shape[3]
    assert_close_to_reference(out_cl, out, reduction_depth(block, grn_positions=positions),
                              name='channels_last output')

    model = perturb_(ConvNeXt(arch=SMALL, version=version, drop_path_rate=0.5)).train(training)
    image = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        for i, stage_out in enumerate(stage_outputs(model, image)):
            assert stage_out.is_contiguous(memory_format=torch.channels_last), f'stage {i}'


@pytest.mark.parametrize('memory_format', FORMATS.values(), ids=FORMATS.keys())
@pytest.mark.parametrize('version', VERSIONS)
def test_bf16_autocast_stays_bf16(version, memory_format):
    block = _block(version)
    # bf16 activations, as the blocks get them from the stem under autocast
    x = _input(memory_format=memory_format).detach().bfloat16()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        out = block(x)
    with torch.no_grad():
        expected = paper_block(block, x.float())
    assert out.dtype == torch.bfloat16
    assert out.is_contiguous(memory_format=memory_format)
    # Each convolution and Linear rounds its inputs and weights to bf16 and accumulates in
    # fp32: the roundings set the error.
    assert_close_to_reference(out.float(), expected, rounding_depth(block), dtype=torch.bfloat16,
                              name='bf16 output')


def _timm_block(block: Block) -> tuple[torch.nn.Module, dict[str, str]]:
    """timm's ConvNeXtBlock with ``block``'s weights (V1: layer scale, no GRN), and our
    parameter names -> timm's."""
    from timm.models.convnext import ConvNeXtBlock
    theirs = ConvNeXtBlock(DIM, ls_init_value=1.)
    prefix, timm_prefix = 'stages.0.0.', 'stages.0.blocks.0.'
    state = block.state_dict()
    exported = export_state_dict({prefix + k: v for k, v in state.items()}, 'timm')
    theirs.load_state_dict({k.removeprefix(timm_prefix): v for k, v in exported.items()})
    names = {name: timm_name.removeprefix(timm_prefix)
             for name, timm_name in zip(state, exported)}
    return theirs.train(block.training), names


# fp16 training scales the loss (mmengine's AmpOptimWrapper: torch's GradScaler), which keeps the
# branch's gradient, gamma times the output's, within fp16's range for either gamma below.
FP16_LOSS_SCALE = 2.**10


def _fp16_autocast_run(module: torch.nn.Module, x: torch.Tensor):
    """Output and gradients (unscaled) of ``module`` under fp16 autocast."""
    x = x.detach().requires_grad_()
    module.zero_grad()
    with torch.autocast('cpu', dtype=torch.float16):
        out = module(x)
    weight = torch.linspace(-1, 1, out.numel()).view(out.shape)
    ((out.float() * weight).sum() * FP16_LOSS_SCALE).backward()
    grads = {name: p.grad / FP16_LOSS_SCALE for name, p in module.named_parameters()}
    grads['input'] = x.grad / FP16_LOSS_SCALE
    return out, grads


@pytest.mark.parametrize('memory_format', FORMATS.values(), ids=FORMATS.keys())
@pytest.mark.parametrize('gamma', [1e-6, 1e-3], ids=['init_layer_scale', 'trained_layer_scale'])
def test_fp16_autocast_matches_timm(gamma, memory_format):
    """Under fp16 autocast (the papers' mixed-precision recipe) the block computes as timm's:
    the second Linear in fp16, the layer scale and the residual add in fp32, an fp32 output for
    an fp32 input. Folded, ``gamma * W`` would lie below fp16's normal range (6.1e-5) and keep
    few bits (with gamma = 1e-6 the update came out 24% off), and the residual stream would be
    fp16.

    The update (output - input) of both is within fp16's rounding of each convolution's and
    Linear's inputs and weights (tests/numerics.py's rule) of the float64 block, plus fp32's
    rounding of the residual add at the input's scale; the input is scaled to 1e-3 so that this
    last term stays below the update's own (at 1 the fp32 add would hide an error of a
    1e-6-scaled update). Output and gradients equal timm's within fp32 roundings: the fp16
    ops are the same ops on the same values."""
    block = perturb_(Block(DIM, layer_scale_init_value=gamma)).train()
    with torch.no_grad():  # per-channel layer scales around the value
        block.gamma.copy_(gamma * torch.linspace(0.5, 1.5, DIM))
    theirs, timm_names = _timm_block(block)
    x = (_input(seed=3).detach() * 1e-3).contiguous(memory_format=memory_format)
    reference = copy.deepcopy(block).double()
    with torch.no_grad():
        expected_update = reference(x.double()) - x.double()

    ours, grads = _fp16_autocast_run(block, x)
    timm_out, timm_grads = _fp16_autocast_run(theirs, x)
    assert ours.dtype == timm_out.dtype == torch.float32
    assert ours.is_contiguous(memory_format=memory_format)
    for label, out in (('ours', ours), ('timm', timm_out)):
        limit = (tolerance(expected_update, rounding_depth(block), torch.float16)
                 + tolerance(x, 1))
        difference = (out.double() - x.double() - expected_update).abs().max().item()
        assert difference <= limit, (f'{label}: update off by {difference:.3g} > {limit:.3g} '
                                     f'(scale {expected_update.abs().max().item():.3g})')
    # timm rounds gamma x branch, then the sum; the addcmul at most the same two
    assert_close_to_reference(ours, timm_out, 2, name='output against timm')
    expected_grads = {'input': timm_grads['input'],
                      **{name: timm_grads[timm_names[name]] for name in timm_names}}
    _assert_grads_close(grads, expected_grads,
                        _grad_depth(block, x, x.shape[2] * x.shape[3]))


@pytest.mark.parametrize('memory_format', FORMATS.values(), ids=FORMATS.keys())
@pytest.mark.parametrize('version', VERSIONS)
def test_fp16_autocast_drop_path_as_paper_block(version, memory_format):
    """fp16 autocast in train mode with drop path, V1 and V2: the fp32 residual stream and the
    papers' block's update under the same autocast and seed (the same samples dropped: the
    draw is in the scaled branch's dtype, as mmcv's DropPath on it draws); a dropped sample's
    output is its input exactly."""
    block = _block(version, drop_path=0.5).train()
    x = (_input(n=8, seed=3).detach() * 1e-3).contiguous(memory_format=memory_format)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.float16):
        torch.manual_seed(4)
        out = block(x)
        torch.manual_seed(4)
        expected = paper_block(block, x, DropPath(0.5).train())
    assert out.dtype == expected.dtype == torch.float32
    assert out.is_contiguous(memory_format=memory_format)
    expected_update = expected.double() - x.double()
    limit = tolerance(expected_update, rounding_depth(block), torch.float16) + tolerance(x, 1)
    difference = (out.double() - x.double() - expected_update).abs().max().item()
    assert difference <= limit, f'update off by {difference:.3g} > {limit:.3g}'
    dropped = [torch.equal(out[i], x[i]) for i in range(len(x))]
    assert 0 < sum(dropped) < len(x), 'seed 4 must drop some samples and keep others'
    assert dropped == [torch.equal(expected[i], x[i]) for i in range(len(x))]


class _PaperBlock(torch.nn.Module):
    def __init__(self, block: Block) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return paper_block(self.block, x)


@pytest.mark.parametrize('memory_format', FORMATS.values(), ids=FORMATS.keys())
@pytest.mark.parametrize('version', VERSIONS)
def test_flop_counter_sees_both_matmuls(version, memory_format):
    """tools/analysis/get_flops.py counts with mmengine's FlopAnalyzer, which knows linear and
    addmm but skips other matmul forms (addmm_, baddbmm): the folded tail counts as the
    papers' block does."""
    from mmengine.analysis import FlopAnalyzer
    block = _block(version)
    x = _input(memory_format=memory_format).detach()
    counts = []
    for module in (block, _PaperBlock(block)):
        analyzer = FlopAnalyzer(module, (x, ))
        analyzer.unsupported_ops_warnings(False)
        with torch.no_grad():
            counts.append(analyzer.total())
    assert counts[0] == counts[1]


# -- the backbone against timm ------------------------------------------------------------------
@pytest.mark.parametrize('timm_name, version', [('convnext_atto', 'v1'),
                                                ('convnextv2_atto', 'v2')])
def test_backbone_outputs_and_gradients_match_timm(timm_name, version):
    """Our weights exported to timm's layout (its published atto runs the MLP as 1x1 convs):
    stage outputs, and the gradients of the input and of every parameter, in train mode."""
    timm = pytest.importorskip('timm')
    ours = perturb_(ConvNeXt(arch='atto', version=version)).train()
    theirs = timm.create_model(timm_name, pretrained=False).train()
    exported = export_state_dict(ours.state_dict(), 'timm')
    exported = {k: v for k, v in exported.items() if not k.startswith('norm')}  # our out norms
    missing, unexpected = theirs.load_state_dict(exported, strict=False)
    assert not unexpected and all(k.startswith(('head.', 'norm_pre.')) for k in missing)

    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)).requires_grad_()
    outs, grads = _forward_backward(lambda t: stage_outputs(ours, t), ours, x)
    expected_outs, timm_grads = _forward_backward(
        lambda t: theirs.forward_intermediates(t, intermediates_only=True), theirs, x)
    positions = 64 * 64 // 16  # the largest map, at stride 4
    for i, (a, b) in enumerate(zip(outs, expected_outs)):
        assert_close_to_reference(a, b, reduction_depth(ours, grn_positions=positions),
                                  name=f'stage {i}')
    expected_grads = {'input': timm_grads.pop('input')}
    ours_names = [name for name in grads if name != 'input']
    assert len(ours_names) == len(timm_grads)  # every parameter of a stage has a gradient
    # timm's gradients in our names and shapes: the export maps a tensor of each parameter's
    # shape, so it maps the gradients as it maps the weights.
    ours_shapes = {name: grads[name] for name in ours_names}
    timm_names = export_state_dict(ours_shapes, 'timm')
    for name, timm_name_ in zip(ours_names, timm_names):
        expected_grads[name] = timm_grads[timm_name_].reshape(grads[name].shape)
    _assert_grads_close(grads, expected_grads, _grad_depth(ours, x, positions))


# -- activation checkpointing -------------------------------------------------------------------
@pytest.mark.parametrize('version', VERSIONS)
def test_with_cp_recomputes_the_same_drop_path(version):
    """Activation checkpointing recomputes each block in the backward pass with the random
    state of its forward: outputs and gradients are those of the plain run, bit for bit."""
    model = perturb_(ConvNeXt(arch=SMALL, version=version, drop_path_rate=0.5)).train()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)).requires_grad_()
    runs = []
    for with_cp in (False, True):
        for stage in model.stages:
            stage.with_cp = with_cp
        torch.manual_seed(7)
        runs.append(_forward_backward(model, model, x))
    (outs, grads), (cp_outs, cp_grads) = runs
    assert all(torch.equal(a, b) for a, b in zip(cp_outs, outs))
    assert cp_grads.keys() == grads.keys()
    for name in grads:
        assert torch.equal(cp_grads[name], grads[name]), name


# -- torch.compile ------------------------------------------------------------------------------
@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize('version, memory_format, with_cp', [
    ('v1', torch.channels_last, False),
    ('v2', torch.contiguous_format, True),
])
def test_compiles_without_graph_breaks(fresh_dynamo, version, memory_format, with_cp):
    """``fullgraph=True`` fails on any graph break: in train mode with drop path, forward and
    backward, then in eval. aot_eager runs eager kernels, so under the same seed the compiled
    model draws the same drop-path masks and gives the eager outputs and gradients."""
    model = perturb_(ConvNeXt(arch=SMALL, version=version, drop_path_rate=0.5, with_cp=with_cp))
    compiled = torch.compile(model, fullgraph=True, backend='aot_eager', dynamic=False)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    x = x.contiguous(memory_format=memory_format).requires_grad_()
    positions = 32 * 32 // 16
    depth = reduction_depth(model, grn_positions=positions)

    model.train()
    torch.manual_seed(3)
    outs, grads = _forward_backward(compiled, model, x)
    torch.manual_seed(3)
    expected_outs, expected_grads = _forward_backward(model, model, x)
    for i, (a, b) in enumerate(zip(outs, expected_outs)):
        assert_close_to_reference(a, b, depth, name=f'train output {i}')
    _assert_grads_close(grads, expected_grads, _grad_depth(model, x, positions))

    model.eval()
    with torch.no_grad():
        for i, (a, b) in enumerate(zip(compiled(x), model(x))):
            assert_close_to_reference(a, b, depth, name=f'eval output {i}')


# inductor generates and builds C++ kernels for the forward and backward graphs: 2.5 to 10 min
# of a shared 2-core CPU with an empty inductor cache
@pytest.mark.slow
def test_inductor_matches_eager(fresh_dynamo):
    """One inductor compile, of an atto with both layer scale and GRN in its blocks, forward and
    backward against eager."""
    model = perturb_(ConvNeXt(arch='atto', version='v2', layer_scale_init_value=1e-6)).train()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)).requires_grad_()
    compiled = torch.compile(model, fullgraph=True, backend='inductor', dynamic=False)
    outs, grads = _forward_backward(compiled, model, x)
    expected_outs, expected_grads = _forward_backward(model, model, x)
    positions = 64 * 64 // 16
    depth = reduction_depth(model, grn_positions=positions)
    for i, (a, b) in enumerate(zip(outs, expected_outs)):
        assert_close_to_reference(a, b, depth, name=f'output {i}')
    _assert_grads_close(grads, expected_grads, _grad_depth(model, x, positions))


# -- fused_kernels ------------------------------------------------------------------------------
@pytest.mark.parametrize('version', VERSIONS)
def test_fused_kernels_compute_the_same_backbone(version):
    """``fused_kernels=True`` routes each block's dwconv + LayerNorm (and GRN) through the custom
    ops of convnext_dense.ops (their PyTorch reference on a CPU; the Triton kernels are checked
    against it in tests/ops): same parameters, same outputs and gradients as the unfused
    backbone, in train mode with drop path under the same seed."""
    model = perturb_(ConvNeXt(arch=SMALL, version=version, drop_path_rate=0.3)).train()
    fused = ConvNeXt(arch=SMALL, version=version, drop_path_rate=0.3, fused_kernels=True)
    fused.load_state_dict(model.state_dict(), strict=True)
    fused.train()
    assert all(block.fused_kernels for stage in fused.stages for block in stage)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)).requires_grad_()
    positions = 32 * 32 // 16
    torch.manual_seed(5)
    outs, grads = _forward_backward(fused, fused, x)
    torch.manual_seed(5)
    expected_outs, expected_grads = _forward_backward(model, model, x)
    depth = reduction_depth(model, grn_positions=positions)
    for i, (a, b) in enumerate(zip(outs, expected_outs)):
        assert_close_to_reference(a, b, depth, name=f'output {i}')
    _assert_grads_close(grads, expected_grads, _grad_depth(model, x, positions))


def test_fused_kernels_compile_without_graph_breaks(fresh_dynamo):
    model = perturb_(ConvNeXt(arch=SMALL, version='v2', fused_kernels=True))
    compiled = torch.compile(model, fullgraph=True, backend='aot_eager', dynamic=False)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    outs, grads = _forward_backward(compiled, model, x)
    expected_outs, expected_grads = _forward_backward(model, model, x)
    depth = reduction_depth(model, grn_positions=32 * 32 // 16)
    for i, (a, b) in enumerate(zip(outs, expected_outs)):
        assert_close_to_reference(a, b, depth, name=f'output {i}')
    _assert_grads_close(grads, expected_grads, _grad_depth(model, x, 32 * 32 // 16))


def test_fused_kernels_must_be_a_bool():
    with pytest.raises(TypeError, match="fused_kernels must be True or False, got 'yes'"):
        ConvNeXt(arch='atto', fused_kernels='yes')
