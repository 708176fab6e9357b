"""ConvNeXt V2 checkpoints (Woo et al., CVPR 2023) through ``init_cfg``: the FCMAE pre-training
files in their sparse (MinkowskiEngine) and dense forms, the official IN-1K / IN-22K fine-tuned
classifiers and mmpretrain's converted copies, each written here in its own form and loaded
into a small V2 backbone, then compared tensor by tensor with what was written.

The sparse kernels' orientation is checked against the conversion of the official fine-tuning
code (``remap_checkpoint_keys`` in facebookresearch/ConvNeXt-V2 ``utils.py``), re-derived here
element by element, and against a sparse convolution emulated on a dense grid.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from convnext_dense.checkpoint import (
    convert_checkpoint_file,
    convert_state_dict,
    detect_layout,
    export_state_dict,
    load_pretrained,
)
from convnext_dense.checkpoint.layouts import (
    conv_weight_to_sparse_kernel,
    sparse_kernel_to_conv_weight,
)
from convnext_dense.models import ConvNeXt

SMALL = dict(depths=[1, 1, 2, 1], dims=[8, 16, 24, 32])
DECODER_DIM = 16  # FCMAE's decoder_embed_dim (512 in the paper), small for speed
STAGE_NORMS = tuple(f'norm{i}.{p}' for i in range(4) for p in ('weight', 'bias'))


def _randn(generator: torch.Generator):
    return lambda *shape: torch.randn(*shape, generator=generator)


def small_v2(checkpoint: str | None = None, arch=None) -> ConvNeXt:
    init_cfg = None if checkpoint is None else dict(type='Pretrained', checkpoint=checkpoint)
    model = ConvNeXt(arch=arch or SMALL, version='v2', init_cfg=init_cfg)
    if checkpoint is not None:
        model.init_weights()
    return model


# -- the files, each written in its own form ---------------------------------------------------
def sparse_fcmae_checkpoint(depths, dims, seed: int = 0) -> dict:
    """An FCMAE pre-training checkpoint as ``models/fcmae.py`` (``D=2``) saves it: the sparse
    encoder under ``encoder.`` with MinkowskiEngine shapes, and the decoder."""
    t = _randn(torch.Generator().manual_seed(seed))
    enc = {'downsample_layers.0.0.weight': t(dims[0], 3, 4, 4),
           'downsample_layers.0.0.bias': t(dims[0]),
           'downsample_layers.0.1.weight': t(dims[0]),  # channels-first LayerNorm (dense)
           'downsample_layers.0.1.bias': t(dims[0])}
    for i in range(1, 4):
        enc[f'downsample_layers.{i}.0.ln.weight'] = t(dims[i - 1])  # MinkowskiLayerNorm
        enc[f'downsample_layers.{i}.0.ln.bias'] = t(dims[i - 1])
        enc[f'downsample_layers.{i}.1.kernel'] = t(4, dims[i - 1], dims[i])  # 2x2, stride 2
        enc[f'downsample_layers.{i}.1.bias'] = t(1, dims[i])
    for i, (depth, dim) in enumerate(zip(depths, dims)):
        for j in range(depth):
            block = f'stages.{i}.{j}'
            enc.update({
                f'{block}.dwconv.kernel': t(49, dim),  # MinkowskiDepthwiseConvolution 7x7
                f'{block}.dwconv.bias': t(1, dim),
                f'{block}.norm.ln.weight': t(dim),
                f'{block}.norm.ln.bias': t(dim),
                f'{block}.pwconv1.linear.weight': t(4 * dim, dim),  # MinkowskiLinear
                f'{block}.pwconv1.linear.bias': t(4 * dim),
                f'{block}.grn.gamma': t(1, 4 * dim),  # MinkowskiGRN
                f'{block}.grn.beta': t(1, 4 * dim),
                f'{block}.pwconv2.linear.weight': t(dim, 4 * dim),
                f'{block}.pwconv2.linear.bias': t(dim),
            })
    d = DECODER_DIM
    decoder = {'proj.weight': t(d, dims[-1], 1, 1), 'proj.bias': t(d),
               'mask_token': t(1, d, 1, 1),
               'decoder.0.dwconv.weight': t(d, 1, 7, 7), 'decoder.0.dwconv.bias': t(d),
               'decoder.0.norm.weight': t(d), 'decoder.0.norm.bias': t(d),
               'decoder.0.pwconv1.weight': t(4 * d, d), 'decoder.0.pwconv1.bias': t(4 * d),
               'decoder.0.grn.gamma': t(1, 1, 1, 4 * d), 'decoder.0.grn.beta': t(1, 1, 1, 4 * d),
               'decoder.0.pwconv2.weight': t(d, 4 * d), 'decoder.0.pwconv2.bias': t(d),
               'pred.weight': t(32 * 32 * 3, d, 1, 1), 'pred.bias': t(32 * 32 * 3)}
    return {'model': {**{f'encoder.{k}': v for k, v in enc.items()}, **decoder}, 'epoch': 799}


def dense_from_kernel(kernel: torch.Tensor) -> torch.Tensor:
    """The dense Conv2d weight of a sparse kernel as ``remap_checkpoint_keys`` builds it
    (``permute``, ``reshape`` to (K, K), ``transpose(3, 2)``): offset ``k`` lands at
    ``(h, w) = (k % K, k // K)``. Written element by element, independently of the package."""
    size = math.isqrt(kernel.shape[0])
    if kernel.ndim == 2:  # depthwise (K*K, C) -> (C, 1, K, K)
        weight = torch.empty(kernel.shape[1], 1, size, size)
        for k in range(size * size):
            weight[:, 0, k % size, k // size] = kernel[k]
    else:  # (K*K, C_in, C_out) -> (C_out, C_in, K, K)
        weight = torch.empty(kernel.shape[2], kernel.shape[1], size, size)
        for k in range(size * size):
            weight[:, :, k % size, k // size] = kernel[k].T
    return weight


def remapped_fcmae(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The dense backbone state dict the official fine-tuning code makes of an FCMAE file: the
    decoder dropped, ``encoder.``, ``.ln`` and ``.linear`` removed, kernels densified, (1, C)
    biases flattened, GRN parameters (1, 1, 1, C)."""
    dense = {}
    for key, value in checkpoint['model'].items():
        if not key.startswith('encoder.'):
            continue  # decoder, mask_token, proj, pred
        parts = key.split('.')[1:]
        if parts[-1] == 'kernel':
            parts[-1] = 'weight'
            value = dense_from_kernel(value)
        elif parts[-2] in ('ln', 'linear'):
            del parts[-2]
        name = '.'.join(parts)
        if '.grn.' in name:
            value = value.reshape(1, 1, 1, -1)
        elif name.endswith('.bias'):
            value = value.reshape(-1)
        dense[name] = value
    return dense


def official_v2_release(model: ConvNeXt, num_classes: int = 1000, seed: int = 1) -> dict:
    """An official V2 release: ``{'model': ...}`` in the model's own names and shapes (GRN
    (1, 1, 1, C)), no per-stage norms; the fine-tuned ones add the final norm and the head."""
    t = _randn(torch.Generator().manual_seed(seed))
    state = {k: t(*v.shape) for k, v in model.state_dict().items() if not k.startswith('norm')}
    if num_classes:
        dim = model.dims[-1]
        state.update({'norm.weight': t(dim), 'norm.bias': t(dim),
                      'head.weight': t(num_classes, dim), 'head.bias': t(num_classes)})
    return {'model': state}


def assert_loaded(model: ConvNeXt, expected: dict[str, torch.Tensor]) -> None:
    """Every backbone tensor but the per-stage norms (absent from these files) is the one
    written; nothing of the backbone is left out."""
    state = model.state_dict()
    assert set(state) - set(STAGE_NORMS) == set(expected)
    for key, value in expected.items():
        assert state[key].shape == value.shape, key
        assert torch.equal(state[key], value), key


# -- the sparse kernels ------------------------------------------------------------------------
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


# -- each form, loaded through init_cfg ---------------------------------------------------------
def test_loads_sparse_fcmae_pretraining_file(tmp_path):
    checkpoint = sparse_fcmae_checkpoint(SMALL['depths'], SMALL['dims'])
    path = tmp_path / 'convnextv2_small_1k_224_fcmae.pt'
    torch.save(checkpoint, path)
    assert detect_layout(checkpoint['model']) == ('fcmae', 'encoder.')
    model = small_v2(str(path))
    assert_loaded(model, remapped_fcmae(checkpoint))
    report = load_pretrained(small_v2(), str(path))
    assert report.layout == 'fcmae' and report.prefix == 'encoder.'
    assert sorted(report.ignored) == sorted(k for k in checkpoint['model']
                                            if not k.startswith('encoder.'))


def test_loads_sparse_fcmae_of_a_published_size(tmp_path):
    """atto, the smallest published size (stage depths 2/2/6/2)."""
    checkpoint = sparse_fcmae_checkpoint([2, 2, 6, 2], [40, 80, 160, 320], seed=3)
    torch.save(checkpoint, tmp_path / 'convnextv2_atto_1k_224_fcmae.pt')
    model = small_v2(str(tmp_path / 'convnextv2_atto_1k_224_fcmae.pt'), arch='atto')
    assert_loaded(model, remapped_fcmae(checkpoint))


@pytest.mark.parametrize('form', ['released', 'encoder_with_decoder'])
def test_loads_dense_fcmae_file(tmp_path, form):
    """The released ``pt_only/*_fcmae.pt`` files are dense in official names (no prefix, no
    decoder, facebookresearch/ConvNeXt-V2 issue #47); a dense FCMAE model's own state dict has
    the ``encoder.`` prefix and the decoder beside it."""
    expected = remapped_fcmae(sparse_fcmae_checkpoint(SMALL['depths'], SMALL['dims'], seed=4))
    if form == 'released':
        state = dict(expected)
    else:
        decoder = {k: v for k, v in sparse_fcmae_checkpoint(
            SMALL['depths'], SMALL['dims'], seed=5)['model'].items()
            if not k.startswith('encoder.')}
        state = {**{f'encoder.{k}': v for k, v in expected.items()}, **decoder}
    torch.save({'model': state}, tmp_path / 'fcmae.pt')
    model = small_v2(str(tmp_path / 'fcmae.pt'))
    assert_loaded(model, expected)
    report = load_pretrained(small_v2(), str(tmp_path / 'fcmae.pt'))
    assert report.layout == 'official'
    assert report.prefix == ('' if form == 'released' else 'encoder.')


def test_sparse_and_dense_fcmae_give_the_same_model(tmp_path):
    checkpoint = sparse_fcmae_checkpoint(SMALL['depths'], SMALL['dims'], seed=6)
    torch.save(checkpoint, tmp_path / 'sparse.pt')
    torch.save({'model': remapped_fcmae(checkpoint)}, tmp_path / 'dense.pt')
    # the per-stage norms, absent from both, start at LayerNorm's (deterministic) init
    sparse, dense = small_v2(str(tmp_path / 'sparse.pt')), small_v2(str(tmp_path / 'dense.pt'))
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        for a, b in zip(sparse.eval()(x), dense.eval()(x)):
            assert torch.equal(a, b)


@pytest.mark.parametrize('release', ['im1k', 'im22k'])
def test_loads_official_finetuned_release(tmp_path, release):
    """``im1k/convnextv2_*_1k_224_ema.pt`` and ``im22k/convnextv2_*_22k_*_ema.pt``: the
    classifier (final norm and head) is dropped."""
    num_classes = 1000 if release == 'im1k' else 21841
    checkpoint = official_v2_release(small_v2(), num_classes=num_classes)
    torch.save(checkpoint, tmp_path / f'{release}.pt')
    model = small_v2(str(tmp_path / f'{release}.pt'))
    expected = {k: v for k, v in checkpoint['model'].items()
                if not k.startswith(('head.', 'norm.'))}
    assert expected['stages.0.0.grn.gamma'].shape == (1, 1, 1, 4 * SMALL['dims'][0])
    assert_loaded(model, expected)
    report = load_pretrained(small_v2(), str(tmp_path / f'{release}.pt'))
    assert report.layout == 'official'
    assert sorted(report.dropped_classifier) == ['head.bias', 'head.weight', 'norm.bias',
                                                 'norm.weight']


def test_loads_mmpretrain_v2_copy(tmp_path):
    """mmpretrain's converted V2 classifiers (``convnext-v2-*_3rdparty-fcmae_in1k``, ...):
    ``backbone.`` names of its ConvNeXt with ``use_grn=True``, GRN ``gamma``/``beta`` of shape
    (C,), its final ``norm3`` and ``head.fc``. Written from mmpretrain's own model."""
    from convnext_dense.engine import import_mmpretrain
    mmpretrain_models = import_mmpretrain()
    reference = mmpretrain_models.ConvNeXt(arch='atto', use_grn=True, layer_scale_init_value=0.,
                                           gap_before_final_norm=False)
    generator = torch.Generator().manual_seed(8)
    with torch.no_grad():
        for param in reference.parameters():
            param.copy_(torch.randn(param.shape, generator=generator))
    backbone = reference.state_dict()
    assert backbone['stages.0.0.grn.gamma'].shape == (160, )
    state = {f'backbone.{k}': v for k, v in backbone.items()}
    state.update({'head.fc.weight': torch.zeros(1000, 320), 'head.fc.bias': torch.zeros(1000)})
    torch.save({'state_dict': state, 'meta': {'mmpretrain_version': '1.2.0'}},
               tmp_path / 'convnext-v2-atto_3rdparty-fcmae_in1k.pth')
    model = small_v2(str(tmp_path / 'convnext-v2-atto_3rdparty-fcmae_in1k.pth'), arch='atto')

    renames = {'depthwise_conv': 'dwconv', 'pointwise_conv1': 'pwconv1',
               'pointwise_conv2': 'pwconv2'}
    expected = {}
    for key, value in backbone.items():
        for theirs, ours in renames.items():
            key = key.replace(f'.{theirs}.', f'.{ours}.')
        expected[key] = value.reshape(1, 1, 1, -1) if '.grn.' in key else value
    ours = model.state_dict()
    assert set(ours) - set(STAGE_NORMS[:6]) == set(expected)  # norm0..2: not in a classifier
    for key, value in expected.items():
        assert torch.equal(ours[key], value), key
    reference.eval()  # mmpretrain's train() returns None
    x = torch.randn(1, 3, 64, 64, generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x)[3], reference(x)[0], rtol=1e-4, atol=1e-4)


# -- conversion tool ----------------------------------------------------------------------------
def test_converts_sparse_fcmae_file_to_official_and_back(tmp_path):
    checkpoint = sparse_fcmae_checkpoint(SMALL['depths'], SMALL['dims'], seed=9)
    torch.save(checkpoint, tmp_path / 'sparse.pt')
    report = convert_checkpoint_file(str(tmp_path / 'sparse.pt'), str(tmp_path / 'dense.pth'))
    assert report.layout == 'fcmae'
    dense = torch.load(tmp_path / 'dense.pth', weights_only=True)['state_dict']
    expected = remapped_fcmae(checkpoint)
    assert dense.keys() == expected.keys()
    assert all(torch.equal(dense[k], expected[k]) for k in expected)
    # written back in the sparse layout: the encoder as FCMAE stores it
    sparse = {f'encoder.{k}': v for k, v in export_state_dict(dense, 'fcmae').items()}
    encoder = {k: v for k, v in checkpoint['model'].items() if k.startswith('encoder.')}
    assert sparse.keys() == encoder.keys()
    assert all(torch.equal(sparse[k], encoder[k]) for k in encoder)
