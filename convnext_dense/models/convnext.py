"""ConvNeXt backbone for dense prediction.

"A ConvNet for the 2020s" (Liu et al., CVPR 2022) and "ConvNeXt V2: Co-designing and Scaling
ConvNets with Masked Autoencoders" (Woo et al., CVPR 2023), built the way the paper's detection
and segmentation code builds it: four stages at strides 4/8/16/32, each output through its own
LayerNorm ``norm{i}``.

This file owns the model: ``Block`` -> ``Stage`` -> ``ConvNeXt`` (the sizes it builds are the
data of :mod:`convnext_dense.arch_settings`), and the mapping from a parameter name to its layer
id for layer-wise learning-rate decay (``ConvNeXt.get_layer_id``). Module and parameter names
are those of the official release (``downsample_layers.*``,
``stages.{i}.{j}.dwconv|norm|pwconv1|pwconv2|gamma|grn``, ``norm{i}``), so the paper's
checkpoints, the fine-tuned COCO/ADE20K ones included, load without conversion; other layouts go
through :mod:`convnext_dense.checkpoint`.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from mmengine.registry import MODELS
from torch import nn

from ..arch_settings import ARCH_SETTINGS, DECAY_TYPES, NUM_STAGES, V1_ARCHS, VERSIONS
from ..ops import dwconv7x7_layernorm, grn
from .layers import GRN, LayerNorm2d


class Block(nn.Module):
    """ConvNeXt block: 7x7 depthwise conv -> LayerNorm -> Linear 4x -> GELU [-> GRN] -> Linear
    -> layer scale ``gamma`` -> drop path -> + input.

    In fp32 and bf16 the tail is computed as one matmul: the layer scale is folded into the
    second Linear's weight and bias, and the residual is added by the matmul when the input's
    memory lets it (see :meth:`forward`). In fp16 (autocast or a half model) it is computed as
    the papers' code computes it (:meth:`fp16_tail`). The parameters are the official ones
    (``pwconv2.weight``, ``pwconv2.bias``, ``gamma``); the folded weights are recomputed from
    them at every call, so each gets its own gradient and checkpoints load unchanged.

    Args:
        dim: Number of input and output channels.
        drop_path: Stochastic-depth rate of this block.
        layer_scale_init_value: Initial value of the per-channel scale ``gamma`` (V1);
            0 disables it (V2).
        use_grn: Insert Global Response Normalization after the GELU (V2).
        mlp_ratio: Hidden width of the MLP as a multiple of ``dim``.
        norm_eps: Epsilon of the LayerNorm.
        fused_kernels: Run the depthwise conv + LayerNorm, and GRN, as the fused custom ops of
            :mod:`convnext_dense.ops` (Triton kernels on CUDA, their PyTorch reference
            elsewhere); same parameters, same function.
    """

    def __init__(self,
                 dim: int,
                 drop_path: float = 0.,
                 layer_scale_init_value: float = 1e-6,
                 use_grn: bool = False,
                 mlp_ratio: int = 4,
                 norm_eps: float = 1e-6,
                 fused_kernels: bool = False) -> None:
        super().__init__()
        self.fused_kernels = fused_kernels
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.pwconv1 = nn.Linear(dim, mlp_ratio * dim)
        self.act = nn.GELU()
        self.grn = GRN(mlp_ratio * dim) if use_grn else None
        self.pwconv2 = nn.Linear(mlp_ratio * dim, dim)
        if layer_scale_init_value > 0:
            self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale_init_value)))
        else:
            self.gamma = None
        # mmcv's DropPath draws the per-sample keep mask; forward applies it to the branch
        # inside the residual add.
        self.drop_path = DropPath(drop_path)

    def scaled_pwconv2(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(gamma[:, None] * pwconv2.weight, gamma * pwconv2.bias)``: the layer scale folded
        into the second Linear, ``gamma * (W h + b) = (gamma W) h + gamma b``, which saves a
        pass over the block's output. Without layer scale, the Linear's own parameters."""
        weight, bias = self.pwconv2.weight, self.pwconv2.bias
        if self.gamma is None:
            return weight, bias
        return self.gamma[:, None] * weight, self.gamma * bias

    def fp16_tail(self, x: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """``x + drop_path(gamma * pwconv2(hidden))`` with the second Linear in fp16, the layer
        scale and the residual add in the type promotion of ``x`` and ``gamma`` (fp32 under
        autocast), as in the papers' code.

        Folding does not suit fp16: ``gamma * W`` falls below fp16's normal range (6.1e-5) for
        a layer scale of 1e-6 (its init) to 1e-3 (trained), where fp16 keeps few or no bits of
        it, and the residual stream, rounded to fp16 in every block, would lose the branch's
        small updates (fp32 keeps them). bf16 has fp32's exponent range and folds."""
        branch = self.pwconv2(hidden).permute(0, 3, 1, 2)
        scale = None if self.gamma is None else self.gamma[:, None, None]
        if self.training and self.drop_path.drop_prob > 0.:
            # mmcv's DropPath on the scaled branch draws in the branch's dtype
            dtype = branch.dtype if scale is None else torch.promote_types(branch.dtype,
                                                                           scale.dtype)
            keep = self.drop_path(branch.new_ones((branch.shape[0], 1, 1, 1), dtype=dtype))
            scale = keep if scale is None else keep * scale
        if scale is None:
            return x + branch
        return torch.addcmul(x, branch, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused_kernels:
            # One pass: the conv's output goes to the LayerNorm in registers, written once, NHWC.
            hidden = dwconv7x7_layernorm(x, self.dwconv.weight, self.dwconv.bias,
                                         self.norm.weight, self.norm.bias, self.norm.eps)
        else:
            # NCHW -> NHWC: the LayerNorm and the MLP run on the last dim
            hidden = self.norm(self.dwconv(x).permute(0, 2, 3, 1))
        hidden = self.act(self.pwconv1(hidden))
        if self.grn is not None:
            hidden = grn(hidden, self.grn.gamma, self.grn.beta, self.grn.eps) \
                if self.fused_kernels else self.grn(hidden)
        if hidden.dtype == torch.float16:
            return self.fp16_tail(x, hidden)
        # Under bf16 autocast the fp32 parameters (and an fp32 input) would otherwise promote
        # the tail to fp32; the block computes in the type promotion of its input and hidden
        # activations, the autocast dtype inside the backbone.
        dtype = torch.promote_types(x.dtype, hidden.dtype)
        weight, bias = (p.to(dtype) for p in self.scaled_pwconv2())
        hidden = hidden.to(dtype)

        if self.training and self.drop_path.drop_prob > 0.:
            # The branch is scaled per sample (0 or 1/keep_prob, mmcv's DropPath applied to
            # ones: the same random draw as DropPath on the branch) within the residual add, so
            # a dropped sample's output is its input exactly.
            branch = F.linear(hidden, weight, bias).permute(0, 3, 1, 2)
            scale = self.drop_path(branch.new_ones((branch.shape[0], 1, 1, 1)))
            return torch.addcmul(x.to(dtype), branch, scale)

        shortcut = x.to(dtype).permute(0, 2, 3, 1)
        if shortcut.is_contiguous():
            # channels_last input (inside the backbone always: LayerNorm2d returns channels_last
            # memory): its NHWC view is free, so the residual, with the bias, is the matmul's
            # input, added to the product before its one rounding, and the block stays NHWC.
            # Out of place: FLOP counters (mmengine's FlopAnalyzer) count addmm, not addmm_.
            channels = shortcut.shape[-1]
            out = torch.addmm((shortcut + bias).reshape(-1, channels),
                              hidden.reshape(-1, hidden.shape[-1]), weight.t())
            return out.view(shortcut.shape).permute(0, 3, 1, 2)
        # NCHW input: the NHWC shortcut would be a transposing copy and the result a second one
        # back to NCHW; the residual add instead does the transposition, in one pass.
        return x.to(dtype) + F.linear(hidden, weight, bias).permute(0, 3, 1, 2)


class Stage(nn.Sequential):
    """The blocks of one stage, indexed ``0..depth-1`` as in the official state dict.

    Args:
        blocks: The stage's blocks.
        with_cp: Recompute each block's activations in the backward pass instead of storing
            them (activation checkpointing), trading time for memory.
    """

    def __init__(self, blocks: Sequence[Block], with_cp: bool = False) -> None:
        super().__init__(*blocks)
        self.with_cp = with_cp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self:
            if self.with_cp and x.requires_grad:
                x = cp.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x


def _resolve_arch(arch: str | dict, version: str | None) -> tuple[str, list[int], list[int]]:
    """Return ``(version, depths, dims)`` for an arch name or a ``dict(depths=, dims=)``."""
    if version is not None and version not in VERSIONS:
        raise ValueError(f"version={version!r} is not supported; use 'v1' or 'v2'")
    if isinstance(arch, dict):
        if set(arch) not in ({'depths', 'dims'}, {'depths', 'channels'}):
            raise ValueError(f'a custom arch must be dict(depths=[...], dims=[...]) with '
                             f'{NUM_STAGES} entries each (mmpretrain\'s name channels= for dims '
                             f'is accepted), got keys {sorted(arch)}')
        depths = list(arch['depths'])
        dims = list(arch['dims'] if 'dims' in arch else arch['channels'])
        if len(depths) != NUM_STAGES or len(dims) != NUM_STAGES:
            raise ValueError(f'a custom arch needs {NUM_STAGES} depths and {NUM_STAGES} dims, '
                             f'got depths={depths} and dims={dims}')
        if not all(isinstance(v, int) and v > 0 for v in depths + dims):
            raise ValueError(f'arch depths and dims must be positive integers, '
                             f'got depths={depths} and dims={dims}')
        return version or 'v1', depths, dims
    if not isinstance(arch, str):
        raise TypeError(f'arch must be a str or a dict(depths=, dims=), got {type(arch).__name__}')
    if arch not in ARCH_SETTINGS:
        raise ValueError(f'arch={arch!r} is not a ConvNeXt arch; valid arch names are '
                         f'{list(ARCH_SETTINGS)}, or dict(depths=[...], dims=[...])')
    if version is None:
        version = 'v1' if arch in V1_ARCHS else 'v2'
    return version, list(ARCH_SETTINGS[arch]['depths']), list(ARCH_SETTINGS[arch]['dims'])


def _norm_eps(norm_cfg: dict | None, default: float = 1e-6) -> float:
    """The LayerNorm epsilon of an mmpretrain ``norm_cfg`` (only its ``LN2d`` is supported), or
    ``default`` (the arch's) without one."""
    if norm_cfg is None:
        return default
    if not isinstance(norm_cfg, dict) or norm_cfg.get('type') != 'LN2d' \
            or set(norm_cfg) - {'type', 'eps'}:
        raise ValueError(f"norm_cfg={norm_cfg!r} is not supported; ConvNeXt uses "
                         f"dict(type='LN2d', eps=...) (channel LayerNorm, as the paper)")
    return float(norm_cfg.get('eps', default))


def _check_act_cfg(act_cfg: dict | None) -> None:
    if act_cfg is None:
        return
    if not isinstance(act_cfg, dict) or act_cfg.get('type') != 'GELU' \
            or act_cfg.get('approximate', 'none') != 'none' or set(act_cfg) - {'type',
                                                                            'approximate'}:
        raise ValueError(f"act_cfg={act_cfg!r} is not supported; ConvNeXt uses "
                         f"dict(type='GELU') (exact GELU, as the paper)")


def _check_decay_type(decay_type: str) -> None:
    if decay_type not in DECAY_TYPES:
        raise ValueError(f'decay_type={decay_type!r} is not supported; use one of '
                         f'{DECAY_TYPES}')


def _normalize_out_indices(out_indices: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(out_indices, int):
        out_indices = (out_indices, )
    if not isinstance(out_indices, Sequence) or not out_indices:
        raise TypeError(f'out_indices must be an int or a non-empty sequence of ints, '
                        f'got {out_indices!r}')
    normalized = []
    for index in out_indices:
        if not isinstance(index, int) or not -NUM_STAGES <= index < NUM_STAGES:
            raise ValueError(f'out_indices={tuple(out_indices)} has {index!r}, out of range for '
                             f'{NUM_STAGES} stages; use 0..{NUM_STAGES - 1} or '
                             f'-{NUM_STAGES}..-1')
        normalized.append(index % NUM_STAGES)
    if len(set(normalized)) != len(normalized):
        raise ValueError(f'out_indices={tuple(out_indices)} names a stage twice')
    return tuple(sorted(normalized))


@MODELS.register_module()
class ConvNeXt(BaseModule):
    """ConvNeXt V1/V2 backbone with multi-scale outputs for detection and segmentation.

    Args:
        arch: A size name (atto, femto, pico, nano, tiny, small, base, large, xlarge, xxlarge,
            huge) or ``dict(depths=[...], dims=[...])``.
        version: ``'v1'`` (layer scale) or ``'v2'`` (GRN). Default: ``'v1'`` for the sizes of
            the V1 paper (tiny..xxlarge), ``'v2'`` for the V2-only ones (atto..nano, huge).
            It sets the defaults of ``layer_scale_init_value`` and ``use_grn``.
        in_channels: Channels of the input image.
        out_indices: Stages whose outputs are returned (negative indices count from the end).
        frozen_stages: mmdet's convention: -1 freezes nothing, 0 the stem, ``k >= 1`` the stem
            and stages ``0..k-1`` with their downsampling layers and output norms. Frozen
            modules have ``requires_grad=False`` and stay in eval mode across ``train()``.
        drop_path_rate: Stochastic-depth rate of the last block, rising linearly from 0.
        layer_scale_init_value: Initial layer-scale value; 0 disables it. Default: 1e-6 for V1,
            0 for V2.
        use_grn: Global Response Normalization in each block. Default: False for V1, True
            for V2.
        with_cp: Activation checkpointing per block: saves memory for L/XL at 1333x800.
        fused_kernels: Each block's depthwise conv + LayerNorm, and GRN, as one fused op each
            (:mod:`convnext_dense.ops`: Triton kernels on CUDA with Triton, the PyTorch
            reference elsewhere). Off by default: not yet measured faster than cuDNN +
            ``torch.compile`` on a GPU (docs/performance.md).
        pretrained: Deprecated alias of ``init_cfg=dict(type='Pretrained', checkpoint=...)``,
            which mmseg's ``EncoderDecoder(pretrained=...)`` passes on.
        init_cfg: mmengine init config; ``dict(type='Pretrained', checkpoint=PATH_OR_URL,
            prefix=None)`` loads a checkpoint of any published layout (see
            :mod:`convnext_dense.checkpoint`); ``prefix='backbone.'`` picks the backbone out of a
            classifier or detector file, as mmengine's ``PretrainedInit`` does.

    ``mmpretrain.ConvNeXt``'s own keyword arguments are accepted with its meaning, so that
    mmdet's and mmseg's ConvNeXt configs run with only ``type='ConvNeXt'`` changed:

    - ``gap_before_final_norm``: must be False, the dense-prediction setting (True pools each
      output to a vector for classification).
    - ``stem_patch_size`` (default 4): kernel and stride of the stem convolution; the output
      strides are ``stem_patch_size * 2**i``.
    - ``norm_cfg`` (default ``dict(type='LN2d', eps=1e-6)``): only ``LN2d`` is supported; its
      ``eps`` is used by every LayerNorm.
    - ``act_cfg`` (default ``dict(type='GELU')``): only GELU is supported.
    - ``linear_pw_conv`` (default True): the MLP always runs as Linear layers, the same
      function as 1x1 convolutions; 1x1-conv checkpoints are reshaped on loading.
    - ``use_grn`` and ``layer_scale_init_value`` keep mmpretrain's defaults (False, 1e-6) in such
      a call, so ``arch='atto'`` builds what mmpretrain builds (a V1-style block) unless
      ``use_grn=True`` is given.
    - ``frozen_stages`` keeps this class's (mmdet's) convention. mmpretrain reads 0 as "nothing
      frozen" and leaves the output norms trainable; a value that mmpretrain would read
      differently is warned about.
    """

    def __init__(self,
                 arch: str | dict = 'tiny',
                 version: str | None = None,
                 in_channels: int = 3,
                 out_indices: int | Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: float | None = None,
                 use_grn: bool | None = None,
                 with_cp: bool = False,
                 fused_kernels: bool = False,
                 pretrained: str | None = None,
                 init_cfg: dict | list | None = None,
                 stem_patch_size: int | None = None,
                 norm_cfg: dict | None = None,
                 act_cfg: dict | None = None,
                 linear_pw_conv: bool | None = None,
                 gap_before_final_norm: bool | None = None) -> None:
        if pretrained is not None:
            # mmseg's EncoderDecoder passes its model-level `pretrained` to the backbone.
            if init_cfg is not None:
                raise ValueError('give either pretrained or init_cfg, not both')
            warnings.warn('ConvNeXt(pretrained=...) is deprecated; use '
                          "init_cfg=dict(type='Pretrained', checkpoint=...)", stacklevel=2)
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        super().__init__(init_cfg=init_cfg)
        # Arguments only mmpretrain.ConvNeXt takes: the call comes from a config written for
        # it (mmdet's and mmseg's own ConvNeXt configs).
        mmpretrain_style = any(value is not None for value in (
            stem_patch_size, norm_cfg, act_cfg, linear_pw_conv, gap_before_final_norm))
        if mmpretrain_style and version is None:
            # mmpretrain.ConvNeXt builds every size with layer scale and without GRN unless
            # told otherwise.
            version = 'v2' if use_grn else 'v1'
        self.version, self.depths, self.dims = _resolve_arch(arch, version)
        if gap_before_final_norm:
            raise ValueError('gap_before_final_norm=True pools each output to a vector '
                             "(mmpretrain's classification setting); this backbone returns "
                             'feature maps for detection and segmentation: use '
                             'gap_before_final_norm=False or leave it out')
        self.stem_patch_size = 4 if stem_patch_size is None else stem_patch_size
        if not isinstance(self.stem_patch_size, int) or self.stem_patch_size <= 0:
            raise ValueError(f'stem_patch_size must be a positive int, got {stem_patch_size!r}')
        arch_eps = ARCH_SETTINGS[arch].get('norm_eps', 1e-6) if isinstance(arch, str) else 1e-6
        self.norm_eps = _norm_eps(norm_cfg, default=arch_eps)
        _check_act_cfg(act_cfg)
        if linear_pw_conv is not None and not isinstance(linear_pw_conv, bool):
            raise TypeError(f'linear_pw_conv must be a bool, got {linear_pw_conv!r}')
        if not isinstance(in_channels, int) or in_channels <= 0:
            raise ValueError(f'in_channels must be a positive int, got {in_channels!r}')
        self.out_indices = _normalize_out_indices(out_indices)
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= NUM_STAGES:
            raise ValueError(f'frozen_stages={frozen_stages!r} is out of range; use -1 (none), '
                             f'0 (stem) or 1..{NUM_STAGES}')
        if not 0. <= drop_path_rate < 1.:
            raise ValueError(f'drop_path_rate must be in [0, 1), got {drop_path_rate!r}')
        if layer_scale_init_value is None:
            layer_scale_init_value = 1e-6 if self.version == 'v1' else 0.
        if use_grn is None:
            use_grn = self.version == 'v2'
        if mmpretrain_style:
            self._warn_frozen_stages_convention(frozen_stages)
        self.in_channels = in_channels
        self.frozen_stages = frozen_stages
        self.drop_path_rate = drop_path_rate
        self.layer_scale_init_value = layer_scale_init_value
        self.use_grn = use_grn
        self.with_cp = with_cp
        if not isinstance(fused_kernels, bool):
            raise TypeError(f'fused_kernels must be True or False, got {fused_kernels!r}')
        self.fused_kernels = fused_kernels

        dims = self.dims
        patch = self.stem_patch_size
        stem = nn.Sequential(
            nn.Conv2d(in_channels, dims[0], kernel_size=patch, stride=patch),
            LayerNorm2d(dims[0], eps=self.norm_eps))
        self.downsample_layers = nn.ModuleList([stem])
        for i in range(1, NUM_STAGES):
            self.downsample_layers.append(
                nn.Sequential(
                    LayerNorm2d(dims[i - 1], eps=self.norm_eps),
                    nn.Conv2d(dims[i - 1], dims[i], kernel_size=2, stride=2)))

        # on the CPU whatever the default device: the model also builds on 'meta' (sizes
        # and parameter counts of the largest models without their memory)
        block_rates = torch.linspace(0, drop_path_rate, sum(self.depths),
                                     device='cpu').tolist()
        self.stages = nn.ModuleList()
        first = 0
        for depth, dim in zip(self.depths, dims):
            self.stages.append(
                Stage([
                    Block(dim, drop_path=block_rates[first + j],
                          layer_scale_init_value=layer_scale_init_value, use_grn=use_grn,
                          norm_eps=self.norm_eps, fused_kernels=fused_kernels)
                    for j in range(depth)
                ], with_cp=with_cp))
            first += depth

        # One norm per returned stage only: a norm whose output is never used would hold
        # parameters without gradients, which DDP rejects.
        for i in self.out_indices:
            self.add_module(f'norm{i}', LayerNorm2d(dims[i], eps=self.norm_eps))

        # What the necks need to know, as data (as timm's feature_info); out_channels and
        # strides are read from it.
        self.feature_info = [
            dict(num_chs=dims[i], reduction=patch * 2**i, module=f'norm{i}')
            for i in self.out_indices
        ]
        self._freeze_stages()

    def _warn_frozen_stages_convention(self, frozen_stages: int) -> None:
        if frozen_stages == 0:
            warnings.warn('ConvNeXt(frozen_stages=0) freezes the stem (mmdet\'s convention, as '
                          'its ResNet and Swin); mmpretrain.ConvNeXt reads 0 as nothing frozen. '
                          'Use frozen_stages=-1 to freeze nothing.', stacklevel=3)
        elif frozen_stages > 0 and any(i < frozen_stages for i in self.out_indices):
            norms = [f'norm{i}' for i in self.out_indices if i < frozen_stages]
            warnings.warn(f'ConvNeXt(frozen_stages={frozen_stages}) also freezes the output '
                          f'norms {norms} of the frozen stages (mmdet\'s convention, as its '
                          'Swin); mmpretrain.ConvNeXt leaves them trainable.', stacklevel=3)

    @property
    def out_channels(self) -> list[int]:
        """Channels of each output, for the neck's ``in_channels``."""
        return [info['num_chs'] for info in self.feature_info]

    @property
    def strides(self) -> list[int]:
        """Stride of each output with respect to the input image."""
        return [info['reduction'] for info in self.feature_info]

    # -- initialisation ---------------------------------------------------------------------
    def init_weights(self) -> None:
        """Truncated-normal init (std 0.02) as the official code, then ``init_cfg``.

        ``init_cfg=dict(type='Pretrained', checkpoint=...)`` is handled here rather than by
        mmengine's ``PretrainedInit`` so that every published layout is detected and converted.
        """
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                trunc_normal_(module.weight, std=.02)
                nn.init.zeros_(module.bias)
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            from ..checkpoint import load_pretrained
            checkpoint = cfg.get('checkpoint')
            if not checkpoint:
                raise ValueError("init_cfg=dict(type='Pretrained') needs a 'checkpoint' path "
                                 'or URL')
            # final_norm: 'auto' (default), 'stage4' or 'drop', see checkpoint.convert_state_dict
            load_pretrained(self, checkpoint, prefix=cfg.get('prefix'),
                            final_norm=cfg.get('final_norm', 'auto'))
            self.is_init = True  # as BaseModule.init_weights marks it after its init_cfg
            return
        super().init_weights()

    # -- freezing ---------------------------------------------------------------------------
    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        modules: list[nn.Module] = [self.downsample_layers[0]]
        for i in range(self.frozen_stages):
            if i > 0:
                modules.append(self.downsample_layers[i])
            modules.append(self.stages[i])
            if i in self.out_indices:
                modules.append(getattr(self, f'norm{i}'))
        return modules

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> ConvNeXt:
        super().train(mode)
        self._freeze_stages()
        return self

    # -- forward ----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'ConvNeXt expects an NCHW input with in_channels='
                             f'{self.in_channels} channels, got shape {tuple(x.shape)}')
        outs = []
        for i in range(NUM_STAGES):
            x = self.stages[i](self.downsample_layers[i](x))
            if i in self.out_indices:
                # LayerNorm2d returns a channels-last strided view. Downstream ops that read NCHW
                # memory directly break on it: mmcv 2.1.0's RoIAlign returns wrong features for
                # a channels-last input (no error), and Mask R-CNN does not learn.
                outs.append(getattr(self, f'norm{i}')(x).contiguous())
            if i == self.out_indices[-1]:
                break  # later stages would feed no output
        return tuple(outs)

    # -- layer-wise learning-rate decay -----------------------------------------------------
    def default_num_layers(self) -> int:
        """``num_layers`` of the official recipe: stage 2 split into groups of 3 blocks."""
        return 3 + (self.depths[2] + 2) // 3

    def no_weight_decay(self, param_name: str) -> bool:
        """Whether a backbone parameter is exempt from weight decay, as in the official
        fine-tuning code: norms, biases and layer scale (1-D) and GRN's ``gamma``/``beta``
        (``name.endswith('.gamma'/'.beta')`` there; stored (1, 1, 1, C) here, so not 1-D)."""
        param = self.get_parameter(param_name)
        return param.ndim == 1 or param_name.endswith(('.bias', '.gamma', '.beta'))

    def max_layer_id(self, decay_type: str) -> int:
        """The largest layer id :meth:`get_layer_id` gives a block or downsampling layer (stage 2's
        last group of 3 blocks, or the last stage); it must not exceed ``num_layers + 1``."""
        _check_decay_type(decay_type)
        if decay_type == 'stage_wise':
            return NUM_STAGES
        return 3 + (self.depths[2] - 1) // 3

    def get_layer_id(self, param_name: str, decay_type: str, num_layers: int) -> int:
        """Layer id of a backbone parameter for learning-rate decay.

        Reproduces the official assignment of the paper's detection/segmentation code
        (``get_num_layer_layer_wise`` / ``get_num_layer_stage_wise``), which the published
        hyperparameters were tuned with. The learning-rate scale is then
        ``decay_rate ** (num_layers + 1 - layer_id)``.

        Args:
            param_name: Name relative to this backbone, e.g. ``'stages.2.4.dwconv.weight'``.
            decay_type: ``'layer_wise'`` (stem 0, stage 0 -> 1, stage 1 -> 2, stage 2 block b
                -> 3 + b // 3, stage 3 -> ``num_layers``) or ``'stage_wise'`` (downsampling
                layers 0, stage i -> i + 1).
            num_layers: The recipe's ``num_layers``; the per-stage norms and everything outside
                the backbone get ``num_layers + 1``.
        """
        _check_decay_type(decay_type)
        parts = param_name.split('.')
        if parts[0] == 'downsample_layers':
            if decay_type == 'stage_wise':
                return 0
            return {0: 0, 1: 2, 2: 3}.get(int(parts[1]), num_layers)
        if parts[0] == 'stages':
            stage_id = int(parts[1])
            if decay_type == 'stage_wise':
                return stage_id + 1
            if stage_id == 2:
                return 3 + int(parts[2]) // 3
            return {0: 1, 1: 2}.get(stage_id, num_layers)
        return num_layers + 1
