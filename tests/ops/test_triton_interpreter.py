"""The Triton kernels of :mod:`convnext_dense.ops`, run by Triton's interpreter on CPU tensors,
against outside references: torch's conv2d/layer_norm and their autograd, and the ConvNeXt V2
GRN formula with torch's autograd, in fp64 (formulas exact to rounding), fp32 and fp16/bf16
storage. Shapes are tiny (the interpreter takes about a millisecond per operation of a program)
and chosen so that tiles end inside rows, channel blocks are padded, several programs add up
partial sums and batches have more than one image. The last tests make the launch functions the
ops' CPU kernels, as they are the CUDA kernels, and call the ops through torch's dispatcher,
which checks what a kernel returns (no output aliasing another), against the fake
implementations' strides and dtypes.

Triton reads ``TRITON_INTERPRET`` when a kernel is defined, i.e. when ``convnext_dense.ops`` is
first imported, which other tests of the same pytest process may already have done: run
normally, this file's only test re-runs the file in a fresh interpreter with the variable set.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.numerics import assert_close_to_reference, tolerance

INTERPRETED = os.environ.get('TRITON_INTERPRET') == '1'
ROOT = Path(__file__).resolve().parents[2]
EPS = 1e-6
LOW_PRECISION = (torch.float16, torch.bfloat16)


if not INTERPRETED:
    def test_kernels_in_triton_interpreter():
        pytest.importorskip('triton')
        env = {**os.environ, 'TRITON_INTERPRET': '1', 'OMP_NUM_THREADS': '1'}
        result = subprocess.run(
            [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-p', 'no:logging',
             str(Path(__file__).relative_to(ROOT))],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ''
        assert result.returncode == 0 and ' passed' in summary and 'skipped' not in summary, \
            result.stdout[-10000:] + result.stderr[-3000:]


if INTERPRETED:
    import triton  # noqa: F401  (a missing Triton fails here instead of skipping)
    from torch._subclasses.fake_tensor import FakeTensorMode

    from convnext_dense.ops import dwconv7x7_layernorm, grn
    from convnext_dense.ops import dwconv_layernorm as dwconv_ops
    from convnext_dense.ops import global_response_norm as grn_ops

    def _random(shape, dtype, seed, scale=1.):
        generator = torch.Generator().manual_seed(seed)
        return (torch.randn(shape, generator=generator, dtype=torch.float64) * scale).to(dtype)

    def _dwconv_inputs(shape, dtype, seed=0, channels_last=True, param_dtype=None):
        N, C, H, W = shape
        x = _random(shape, dtype, seed)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        param_dtype = param_dtype or dtype
        params = (_random((C, 1, 7, 7), param_dtype, seed + 1, 0.2),
                  _random((C,), param_dtype, seed + 2), _random((C,), param_dtype, seed + 3),
                  _random((C,), param_dtype, seed + 4))
        return x, params

    def _torch_dwconv_layernorm(x, weight, bias, ln_weight, ln_bias):
        y = F.conv2d(x, weight, bias, padding=3, groups=x.shape[1]).permute(0, 2, 3, 1)
        return F.layer_norm(y, (x.shape[1],), ln_weight, ln_bias, EPS)

    def _dwconv_depth(x):
        """Reduction depth (tests/numerics.py) of the forward: 49 taps, LayerNorm mean and
        variance over C."""
        return 49 + 2 * x.shape[1]

    def _assert_storage_close(actual, expected, depth, name):
        """``actual`` in fp16/bf16 is the fp32 computation rounded once: within half an ulp of
        the storage format at the scale, plus the fp32 bound (``tolerance`` of each)."""
        limit = tolerance(expected, 1, actual.dtype) + tolerance(expected, depth)
        diff = (actual.double() - expected.double()).abs().max().item()
        assert diff <= limit, f'{name}: max |difference| {diff:.3g} exceeds {limit:.3g}'

    # -- dwconv 7x7 + bias + LayerNorm, forward ---------------------------------------------

    @pytest.mark.parametrize('shape, channels_last, block_w', [
        ((1, 8, 5, 6), True, 4),     # two column tiles, the second partly outside the row
        ((2, 12, 4, 3), False, None),  # NCHW strides, 12 of 16 channel lanes, two images
    ])
    def test_dwconv_layernorm_forward_fp32(shape, channels_last, block_w):
        x, params = _dwconv_inputs(shape, torch.float32, channels_last=channels_last)
        out, mean, rstd = dwconv_ops.triton_forward(x, *params, EPS, block_w=block_w)
        expected = _torch_dwconv_layernorm(x, *params)
        assert out.shape == expected.shape and out.is_contiguous()
        assert_close_to_reference(out, expected, _dwconv_depth(x), name='out')
        _, ref_mean, ref_rstd = dwconv_ops.reference_forward(x, *params, EPS)
        assert_close_to_reference(mean, ref_mean, _dwconv_depth(x), name='mean')
        assert_close_to_reference(rstd, ref_rstd, _dwconv_depth(x), name='rstd')

    # fp16 parameters (a model cast with .half()), or fp32 ones beside bf16 activations (autocast)
    LOW_PRECISION_PARAMS = [(torch.float16, torch.float16), (torch.bfloat16, torch.float32)]

    @pytest.mark.parametrize('dtype, param_dtype', LOW_PRECISION_PARAMS)
    def test_dwconv_layernorm_forward_low_precision(dtype, param_dtype):
        x, params = _dwconv_inputs((1, 8, 5, 6), dtype, param_dtype=param_dtype)
        out, _, _ = dwconv_ops.triton_forward(x, *params, EPS)
        expected = _torch_dwconv_layernorm(x.float(), *[p.float() for p in params])
        assert out.dtype == dtype
        _assert_storage_close(out, expected, _dwconv_depth(x), 'out')

    # -- dwconv 7x7 + bias + LayerNorm, backward --------------------------------------------

    def _dwconv_backward_depths(x):
        """Per gradient: the LayerNorm backward's sums over C, then the transposed conv (input),
        or the sum over every pixel (weights and biases)."""
        N, C, H, W = x.shape
        return (2 * C + 49, N * H * W + 2 * C, N * H * W + 2 * C, N * H * W + 49 + 2 * C,
                N * H * W)

    GRAD_NAMES = ('x', 'dw_weight', 'dw_bias', 'ln_weight', 'ln_bias')

    @pytest.mark.parametrize('dtype, shape, block_w, rows', [
        # 6 of 8 channel lanes, 4 rows in chunks of 3, column tiles of 4 for 5 columns
        (torch.float64, (1, 6, 4, 5), 4, 3),
        # two images, 3 rows in chunks of 2
        (torch.float32, (2, 8, 3, 5), None, 2),
    ])
    def test_dwconv_layernorm_backward_matches_autograd(dtype, shape, block_w, rows):
        N, C, H, W = shape
        x, params = _dwconv_inputs(shape, dtype, seed=10)
        _, mean, rstd = dwconv_ops.triton_forward(x, *params, EPS)
        grad = _random((N, H, W, C), dtype, 20)
        grads = dwconv_ops.triton_backward(grad, x, *params[:3], mean, rstd, block_w=block_w,
                                           rows_per_program=rows)
        inputs = [t.detach().requires_grad_() for t in (x, *params)]
        expected = torch.autograd.grad(_torch_dwconv_layernorm(*inputs), inputs, grad)
        assert grads[0].stride() == x.stride()  # the gradient keeps channels_last
        for name, ours, theirs, depth, source in zip(GRAD_NAMES, grads, expected,
                                                     _dwconv_backward_depths(x), (x, *params)):
            assert ours.dtype == source.dtype
            assert_close_to_reference(ours, theirs, depth, dtype, name=f'grad {name}')

    @pytest.mark.parametrize('dtype, param_dtype', LOW_PRECISION_PARAMS)
    def test_dwconv_layernorm_backward_low_precision(dtype, param_dtype):
        """fp16/bf16 storage: the gradient at the convolution output is stored in the storage
        format, as an unfused backward hands it on, so each gradient is within its depth in
        the storage format's epsilon of torch's fp32 autograd on the stored values."""
        x, params = _dwconv_inputs((1, 8, 4, 6), dtype, seed=30, channels_last=False,
                                   param_dtype=param_dtype)
        _, mean, rstd = dwconv_ops.triton_forward(x, *params, EPS)
        grad = _random((1, 4, 6, 8), dtype, 40)
        grads = dwconv_ops.triton_backward(grad, x, *params[:3], mean, rstd, rows_per_program=3)
        inputs = [t.detach().float().requires_grad_() for t in (x, *params)]
        expected = torch.autograd.grad(_torch_dwconv_layernorm(*inputs), inputs, grad.float())
        for name, ours, theirs, depth, source in zip(GRAD_NAMES, grads, expected,
                                                     _dwconv_backward_depths(x), (x, *params)):
            assert ours.dtype == source.dtype
            assert_close_to_reference(ours, theirs, depth, dtype, name=f'grad {name}')

    # -- GRN ----------------------------------------------------------------------------------

    def _official_grn(x, gamma, beta):
        """ConvNeXt V2's GRN as the official code writes it (channels-last)."""
        norm = torch.norm(x, p=2, dim=(1, 2), keepdim=True)
        return gamma * (x * (norm / (norm.mean(dim=-1, keepdim=True) + EPS))) + beta + x

    def _grn_inputs(shape, dtype, seed=0):
        x = _random(shape, dtype, seed)
        C = shape[-1]
        return x, _random((1, 1, 1, C), dtype, seed + 1), _random((1, 1, 1, C), dtype, seed + 2)

    def _grn_depth(x):
        return x.shape[1] * x.shape[2] + x.shape[3]

    @pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
    def test_grn_forward_and_backward_match_autograd(dtype):
        # 35 pixels in splits of 8 (the last partial), 12 of 16 channel lanes, a zero channel.
        x, gamma, beta = _grn_inputs((2, 5, 7, 12), dtype)
        x[1, :, :, 4] = 0
        out, norm = grn_ops.triton_forward(x, gamma, beta, EPS, pixels_per_split=8)
        inputs = [t.detach().requires_grad_() for t in (x, gamma, beta)]
        expected = _official_grn(*inputs)
        depth = _grn_depth(x)
        assert_close_to_reference(out, expected, depth, dtype, name='out')
        grad = _random(x.shape, dtype, 5)
        grads = grn_ops.triton_backward(grad, x, gamma, norm, EPS, pixels_per_split=8)
        expected_grads = torch.autograd.grad(expected, inputs, grad)
        for name, ours, theirs in zip(('x', 'gamma', 'beta'), grads, expected_grads):
            assert ours.shape == theirs.shape and ours.dtype == dtype
            # gamma and beta sum over the batch as well
            assert_close_to_reference(ours, theirs, depth * x.shape[0], dtype,
                                      name=f'grad {name}')

    @pytest.mark.parametrize('dtype', LOW_PRECISION)
    def test_grn_low_precision(dtype):
        x, gamma, beta = _grn_inputs((1, 6, 5, 40), dtype, seed=3)  # 40 of 64 channel lanes
        out, norm = grn_ops.triton_forward(x, gamma, beta, EPS, pixels_per_split=16)
        inputs = [t.detach().float().requires_grad_() for t in (x, gamma, beta)]
        expected = _official_grn(*inputs)
        assert out.dtype == dtype
        _assert_storage_close(out, expected, _grn_depth(x), 'out')
        grad = _random(x.shape, dtype, 8)
        grads = grn_ops.triton_backward(grad, x, gamma, norm, EPS, pixels_per_split=16)
        expected_grads = torch.autograd.grad(expected, inputs, grad.float())
        for name, ours, theirs in zip(('x', 'gamma', 'beta'), grads, expected_grads):
            assert ours.dtype == dtype
            _assert_storage_close(ours, theirs, _grn_depth(x), f'grad {name}')

    # -- the ops through torch's dispatcher, the launch functions as their kernels ------------

    # (op, its launch function: the CUDA kernel, its default implementation)
    KERNELS = (
        ('convnext_dense::dwconv7x7_layernorm', dwconv_ops.triton_forward,
         dwconv_ops.reference_forward),
        ('convnext_dense::dwconv7x7_layernorm_backward', dwconv_ops.triton_backward,
         dwconv_ops.reference_backward),
        ('convnext_dense::grn', grn_ops.triton_forward, grn_ops.reference_forward),
        ('convnext_dense::grn_backward', grn_ops.triton_backward, grn_ops.reference_backward),
    )

    @pytest.fixture
    def launches_as_cpu_kernels():
        """CPU tensors dispatch to the launch functions, as CUDA tensors do: torch.library then
        checks each call's outputs as it does on a GPU (none may alias an input or another
        output). Afterwards the CPU runs the ops' default implementations again."""
        for name, launch, _ in KERNELS:
            torch.library.register_kernel(name, 'cpu', launch)
        yield
        for name, _, reference in KERNELS:
            torch.library.register_kernel(name, 'cpu', reference)

    def _assert_like_fake(outputs, op, args, name):
        """Each output has the shape, strides and dtype the op's fake implementation gives
        (what torch.compile plans the surrounding graph with)."""
        with FakeTensorMode() as mode:
            fakes = op(*[mode.from_tensor(a) if isinstance(a, torch.Tensor) else a
                         for a in args])
        assert len(outputs) == len(fakes), name
        for i, (out, fake) in enumerate(zip(outputs, fakes)):
            assert (out.shape, out.stride(), out.dtype) == (fake.shape, fake.stride(),
                                                            fake.dtype), f'{name} output {i}'

    @pytest.mark.parametrize('dtype, param_dtype, memory_format', [
        (torch.float32, torch.float32, torch.channels_last),
        # autocast: bf16 activations, fp32 parameters; NCHW
        (torch.bfloat16, torch.float32, torch.contiguous_format),
    ])
    def test_dwconv_layernorm_dispatch(launches_as_cpu_kernels, dtype, param_dtype,
                                       memory_format):
        N, C, H, W = shape = (2, 8, 3, 5)
        x, params = _dwconv_inputs(shape, dtype, seed=50, param_dtype=param_dtype,
                                   channels_last=memory_format == torch.channels_last)
        # a channels-last model holds its depthwise weight in channels-last strides too
        # (Module.to(memory_format=...) restrides (C, 1, 7, 7), .contiguous would not)
        params = (params[0].to(memory_format=memory_format), *params[1:])
        forward = torch.ops.convnext_dense.dwconv7x7_layernorm.default
        backward = torch.ops.convnext_dense.dwconv7x7_layernorm_backward.default
        outputs = forward(x, *params, EPS)
        _assert_like_fake(outputs, forward, (x, *params, EPS), 'forward')
        grad = _random((N, H, W, C), dtype, 51)
        backward_args = (grad, x, *params[:3], outputs[1], outputs[2])
        grads = backward(*backward_args)
        _assert_like_fake(grads, backward, backward_args, 'backward')

        # autograd through the public function reaches the same kernels
        inputs = [t.detach().requires_grad_() for t in (x, *params)]
        out = dwconv7x7_layernorm(*inputs, EPS)
        assert torch.equal(out, outputs[0])
        for name, ours, direct in zip(GRAD_NAMES, torch.autograd.grad(out, inputs, grad), grads):
            assert torch.equal(ours, direct), name
        if dtype == torch.float32:
            leaves = [t.detach().requires_grad_() for t in (x, *params)]
            expected = torch.autograd.grad(_torch_dwconv_layernorm(*leaves), leaves, grad)
            for name, ours, theirs, depth in zip(GRAD_NAMES, grads, expected,
                                                 _dwconv_backward_depths(x)):
                assert_close_to_reference(ours, theirs, depth, dtype, name=f'grad {name}')

    def test_grn_dispatch(launches_as_cpu_kernels):
        # an NHWC view of NCHW memory, and channels-last parameters (a channels-last model's)
        x = _random((2, 12, 5, 7), torch.float32, 60).permute(0, 2, 3, 1)
        gamma, beta = (_random((1, 1, 1, 12), torch.float32, seed).to(
            memory_format=torch.channels_last) for seed in (61, 62))
        forward = torch.ops.convnext_dense.grn.default
        backward = torch.ops.convnext_dense.grn_backward.default
        outputs = forward(x, gamma, beta, EPS)
        _assert_like_fake(outputs, forward, (x, gamma, beta, EPS), 'forward')
        grad = _random(x.shape, torch.float32, 63)
        backward_args = (grad, x, gamma, outputs[1], EPS)
        grads = backward(*backward_args)
        _assert_like_fake(grads, backward, backward_args, 'backward')

        inputs = [t.detach().requires_grad_() for t in (x, gamma, beta)]
        out = grn(*inputs, EPS)
        assert torch.equal(out, outputs[0])
        expected = torch.autograd.grad(_official_grn(*inputs), inputs, grad)
        depth = _grn_depth(x) * x.shape[0]
        for name, ours, direct, theirs in zip(('x', 'gamma', 'beta'),
                                              torch.autograd.grad(out, inputs, grad), grads,
                                              expected):
            assert torch.equal(ours, direct), name
            assert_close_to_reference(ours, theirs, depth, name=f'grad {name}')
