"""Checkpoint files as each publisher writes them, built here from random tensors: the V1
official releases, the V2 FCMAE pre-training files in their sparse (MinkowskiEngine) form, the
dense state dict the official V2 fine-tuning code makes of them (``remap_checkpoint_keys`` in
facebookresearch/ConvNeXt-V2 ``utils.py``, re-derived element by element, independently of the
package), the V2 fine-tuned releases, and the check that a backbone holds what was written."""
from __future__ import annotations

import math

import torch

from convnext_dense.models import ConvNeXt

SMALL = dict(depths=[1, 1, 2, 1], dims=[8, 16, 24, 32])
DECODER_DIM = 16  # FCMAE's decoder_embed_dim (512 in the paper), small for speed
STAGE_NORMS = tuple(f'norm{i}.{p}' for i in range(4) for p in ('weight', 'bias'))


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


def _randn(generator: torch.Generator):
    return lambda *shape: torch.randn(*shape, generator=generator)


def small_v2(checkpoint: str | None = None, arch=None) -> ConvNeXt:
    init_cfg = None if checkpoint is None else dict(type='Pretrained', checkpoint=checkpoint)
    model = ConvNeXt(arch=arch or SMALL, version='v2', init_cfg=init_cfg)
    if checkpoint is not None:
        model.init_weights()
    return model


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
