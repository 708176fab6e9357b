"""The fused-block custom ops on their PyTorch path (CPU): equal to the unfused torch ops and to
the model's GRN, gradients checked numerically (fp64), torch.library's opcheck, compilation with
``fullgraph=True``, argument errors. The Triton kernels themselves are checked in
``test_triton_interpreter.py``."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convnext_dense.models import GRN
from convnext_dense.ops import dwconv7x7_layernorm, fused_kernels_available, grn
from convnext_dense.ops import dwconv_layernorm as dwconv_ops
from convnext_dense.ops import global_response_norm as grn_ops
from convnext_dense.ops._triton_utils import HAS_TRITON
from tests.numerics import assert_close_to_reference, reduction_depth

EPS = 1e-6


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _first_half(channels: int, dtype=torch.float32, seed: int = 0):
    """The block's dwconv and LayerNorm with every parameter moved off its init."""
    generator = _generator(seed)
    conv = nn.Conv2d(channels, channels, 7, padding=3, groups=channels)
    norm = nn.LayerNorm(channels, eps=EPS)
    with torch.no_grad():
        for param in (*conv.parameters(), *norm.parameters()):
            param.add_(torch.randn(param.shape, generator=generator) * 0.5)
    return conv.to(dtype), norm.to(dtype)


def _params(conv, norm):
    return conv.weight, conv.bias, norm.weight, norm.bias


def _unfused(x, conv, norm):
    return F.layer_norm(conv(x).permute(0, 2, 3, 1), norm.normalized_shape, norm.weight,
                        norm.bias, norm.eps)


def _grn_module(channels: int, dtype=torch.float32, seed: int = 0) -> GRN:
    module = GRN(channels, eps=EPS)
    generator = _generator(seed)
    with torch.no_grad():
        module.gamma.copy_(torch.randn(module.gamma.shape, generator=generator))
        module.beta.copy_(torch.randn(module.beta.shape, generator=generator))
    return module.to(dtype)


@pytest.mark.parametrize('memory_format', [torch.contiguous_format, torch.channels_last])
def test_dwconv_layernorm_matches_torch_ops(memory_format):
    conv, norm = _first_half(12)
    x = torch.randn(2, 12, 9, 7, generator=_generator(1)).contiguous(memory_format=memory_format)
    with torch.no_grad():
        out = dwconv7x7_layernorm(x, *_params(conv, norm), EPS)
        expected = _unfused(x, conv, norm)
    assert out.shape == (2, 9, 7, 12) and out.is_contiguous()
    assert_close_to_reference(out, expected, reduction_depth(conv, norm), name='dwconv+LN')


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_dwconv_layernorm_low_precision_is_fp32_rounded(dtype):
    """fp16/bf16 storage, fp32 arithmetic: the result is the fp32 computation on the stored
    values, rounded once."""
    conv, norm = _first_half(8, dtype)
    x = torch.randn(1, 8, 6, 5, generator=_generator(2)).to(dtype)
    with torch.no_grad():
        out = dwconv7x7_layernorm(x, *_params(conv, norm), EPS)
        expected = _unfused(x.float(), conv.float(), norm.float()).to(dtype)
    assert out.dtype == dtype
    assert torch.equal(out, expected)


def test_grn_matches_model_grn():
    module = _grn_module(16)
    x = torch.randn(2, 5, 6, 16, generator=_generator(3))
    with torch.no_grad():
        out = grn(x, module.gamma, module.beta, module.eps)
        expected = module(x)
    assert out.is_contiguous()
    assert_close_to_reference(out, expected, reduction_depth(module, grn_positions=30), name='grn')


def test_dwconv_layernorm_gradcheck():
    conv, norm = _first_half(4, torch.float64)
    x = torch.randn(1, 4, 5, 4, dtype=torch.float64, generator=_generator(4))
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    params = [p.detach().requires_grad_() for p in _params(conv, norm)]
    assert torch.autograd.gradcheck(lambda *args: dwconv7x7_layernorm(*args, EPS), (x, *params))


def test_grn_gradcheck():
    module = _grn_module(6, torch.float64)
    x = torch.randn(2, 3, 4, 6, dtype=torch.float64, generator=_generator(5))
    x[1, :, :, 2] = 0  # a channel whose norm is 0: the norm's gradient is taken as 0 there
    inputs = (x.requires_grad_(), module.gamma.detach().requires_grad_(),
              module.beta.detach().requires_grad_())
    assert torch.autograd.gradcheck(lambda *args: grn(*args, EPS), inputs)


def test_grn_backward_matches_autograd_of_the_model():
    module = _grn_module(8)
    x = torch.randn(2, 4, 5, 8, generator=_generator(6), requires_grad=True)
    grad = torch.randn(2, 4, 5, 8, generator=_generator(7))
    expected = torch.autograd.grad(module(x), (x, module.gamma, module.beta), grad)
    ours = torch.autograd.grad(grn(x, module.gamma, module.beta, EPS),
                               (x, module.gamma, module.beta), grad)
    depth = reduction_depth(module, grn_positions=2 * 4 * 5)
    for name, a, b in zip(('x', 'gamma', 'beta'), ours, expected):
        assert_close_to_reference(a, b, depth, name=f'grad {name}')


def test_opcheck():
    conv, norm = _first_half(5)
    x = torch.randn(2, 5, 6, 4, generator=_generator(8)).contiguous(
        memory_format=torch.channels_last)
    params = [p.detach().requires_grad_() for p in _params(conv, norm)]
    x.requires_grad_()
    torch.library.opcheck(torch.ops.convnext_dense.dwconv7x7_layernorm.default,
                          (x, *params, EPS))
    with torch.no_grad():
        _, mean, rstd = dwconv_ops.reference_forward(x, *params, EPS)
    grad = torch.randn(2, 6, 4, 5, generator=_generator(9))
    torch.library.opcheck(torch.ops.convnext_dense.dwconv7x7_layernorm_backward.default,
                          (grad, x.detach(), *[p.detach() for p in params[:3]], mean, rstd))
    module = _grn_module(5)
    y = torch.randn(2, 3, 4, 5, generator=_generator(10), requires_grad=True)
    torch.library.opcheck(torch.ops.convnext_dense.grn.default,
                          (y, module.gamma, module.beta, EPS))
    _, norm_y = grn_ops.reference_forward(y.detach(), module.gamma.detach(),
                                          module.beta.detach(), EPS)
    torch.library.opcheck(torch.ops.convnext_dense.grn_backward.default,
                          (torch.randn(2, 3, 4, 5, generator=_generator(11)), y.detach(),
                           module.gamma.detach(), norm_y, EPS))


class _FusedBlockHalf(nn.Module):
    """dwconv + LayerNorm + Linear + GRN, the V2 block's first half, through the custom ops."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.dwconv, self.norm = _first_half(channels)
        self.pwconv1 = nn.Linear(channels, 2 * channels)
        self.grn = _grn_module(2 * channels)

    def forward(self, x):
        x = dwconv7x7_layernorm(x, self.dwconv.weight, self.dwconv.bias, self.norm.weight,
                                self.norm.bias, self.norm.eps)
        return grn(self.pwconv1(x), self.grn.gamma, self.grn.beta, self.grn.eps)


def test_compiles_with_fullgraph():
    torch._dynamo.reset()
    model = _FusedBlockHalf(6)
    x = torch.randn(2, 6, 5, 7, generator=_generator(12))
    compiled = torch.compile(model, backend='aot_eager', fullgraph=True)
    out = compiled(x)
    out.square().sum().backward()
    compiled_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    expected = model(x)
    expected.square().sum().backward()
    # aot_eager runs the same kernels on the same data: bitwise equal.
    assert torch.equal(out, expected)
    for (name, param), grad in zip(model.named_parameters(), compiled_grads):
        assert torch.equal(grad, param.grad), name


def test_cuda_implementation_is_registered():
    """CUDA tensors dispatch to the Triton launch functions (tested in the interpreter)."""
    for op in ('dwconv7x7_layernorm', 'dwconv7x7_layernorm_backward', 'grn', 'grn_backward'):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(
            f'convnext_dense::{op}', 'CUDA') is HAS_TRITON, op


def test_fused_kernels_available():
    assert fused_kernels_available('cpu') is False
    assert fused_kernels_available(torch.device('cuda', 0)) is (
        HAS_TRITON and torch.cuda.is_available())


def test_argument_errors():
    conv, norm = _first_half(4)
    x = torch.randn(1, 4, 5, 5)
    weight, bias, ln_weight, ln_bias = _params(conv, norm)
    with pytest.raises(ValueError, match='x must be'):
        dwconv7x7_layernorm(x[0], weight, bias, ln_weight, ln_bias)
    with pytest.raises(ValueError, match='dw_weight'):
        dwconv7x7_layernorm(x, weight[:, :, :5, :5], bias, ln_weight, ln_bias)
    with pytest.raises(ValueError, match='ln_bias'):
        dwconv7x7_layernorm(x, weight, bias, ln_weight, ln_bias[:3])
    with pytest.raises(TypeError, match='x must be float16'):
        dwconv7x7_layernorm(x.long(), weight, bias, ln_weight, ln_bias)
    module = _grn_module(4)
    with pytest.raises(ValueError, match='gamma'):
        grn(x.permute(0, 2, 3, 1), module.gamma[..., :3], module.beta)
    with pytest.raises(ValueError, match='x must be'):
        grn(x[0], module.gamma, module.beta)
