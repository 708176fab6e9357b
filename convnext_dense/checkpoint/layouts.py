"""Key layouts of published ConvNeXt checkpoints, one :class:`Layout` record each, and the pure
``state_dict -> state_dict`` conversions between them and this project's (the official) names.

* ``official``: facebookresearch ConvNeXt / ConvNeXt-V2 releases (``{'model': ...}``,
  ``downsample_layers.*``, ``stages.{i}.{j}.dwconv``, final ``norm`` and ``head``), and the
  paper's fine-tuned mmdet 2.x / mmseg 0.x models (the same names under ``backbone.``). This
  is the project's own layout. DINOv3's and EUPE's ConvNeXt files (facebookresearch/dinov3 and
  facebookresearch/EUPE ``models/convnext.py``) use the same names without ``head``, and save
  their final ``norm`` a second time as ``norms.3`` (``norms`` is their list of per-stage
  output norms, Identity for stages 0-2); EUPE's may carry distillation ``projectors.*``.
* ``open_clip``: an open_clip CLIP model with a timm ConvNeXt image tower (``convnext_base``,
  ``convnext_large_d``, ``convnext_xxlarge``, ...): timm's names under ``visual.trunk.``, beside
  the image projection ``visual.head.*``, the text tower and ``logit_scale``.
* ``timm``: ``stem.*``, ``stages.{i}.downsample.*``, ``stages.{i}.blocks.{j}.conv_dw``,
  ``mlp.fc1``, ``mlp.grn.weight``, final ``head.norm``; the atto/femto/pico/nano models run
  their MLP as 1x1 convolutions (``conv_mlp=True``), so those weights are 4-D.
* ``mmpretrain``: ``backbone.`` prefix, ``depthwise_conv``, ``pointwise_conv1``, ``grn.gamma``
  of shape (C,).
* ``hf``: Hugging Face transformers ``ConvNextBackbone`` / ``ConvNextV2Backbone``
  (``embeddings.*``, ``encoder.stages.{i}.layers.{j}.dwconv``, ``layer_scale_parameter``,
  ``hidden_states_norms.stage{k}``), under ``convnext.``/``convnextv2.`` in the classifiers.
* ``hf_dinov3``: Hugging Face transformers ``DINOv3ConvNextModel``
  (``stages.{i}.downsample_layers``, ``stages.{i}.layers.{j}.depthwise_conv``,
  ``pointwise_conv1``, final ``layer_norm``), as its ``save_pretrained`` folders and state dicts
  hold it.
* ``fcmae``: the sparse encoder of ConvNeXt V2's FCMAE pre-training model (Woo et al. 2023,
  Sec. 3; facebookresearch/ConvNeXt-V2 ``models/fcmae.py``): ``encoder.`` prefix, MinkowskiEngine
  kernels ``dwconv.kernel`` (K*K, C) and ``downsample_layers.{i}.1.kernel`` (K*K, C_in, C_out),
  (1, C) biases of those and (1, C) GRN parameters, ``.ln``/``.linear`` wrapper levels; the
  decoder (``decoder.*``, ``mask_token``, ``proj``, ``pred``) lies outside the prefix and is left
  out. The released ``pt_only/*_fcmae.pt`` files are already dense, in official names (no
  prefix, no decoder): they load as ``official``, as does a dense FCMAE model's state dict
  (``encoder.`` prefix detected, decoder left out).

**The final norm.** A file's norm after the last stage is either a classifier's, applied to the
pooled vector (ConvNeXt's ImageNet classifiers, CLIP's image towers), or one applied to every
patch token of the last stage: DINOv3 (and EUPE, the same model code) normalise the
concatenation of the pooled token and the patch tokens with it, and their dense losses and
linear probes read the normalised patch tokens. A LayerNorm over the channels of each patch
token is exactly a per-pixel LayerNorm of the stage-4 map, so that norm is the stage-4 output
norm ``norm3`` of this backbone, trained for it; a classifier's was trained on pooled vectors,
whose statistics differ, and the paper's code leaves it out. Each layout says which it holds
(:attr:`Layout.final_norm_role`): always one or the other, or ``'auto'``, decided by the file:
a final norm without a classifier head is a patch-token norm (DINOv3 and EUPE publish no
classifier), one beside a head is the classifier's.

Adding a layout is adding one record to :data:`LAYOUT_RECORDS`. :func:`convert_state_dict`
reads any layout (timm's ``checkpoint_filter_fn`` habit); :func:`export_state_dict` writes one,
with the tensor shapes the target library's model of that size has. A layout whose tensors are
not plain reshapes of ours (FCMAE's sparse-convolution kernels) brings its own
``import_reshape``/``export_reshape``.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from ..arch_settings import ARCH_SETTINGS, NUM_STAGES

_PLACEHOLDERS = {'i': r'(?P<i>\d+)', 'j': r'(?P<j>\d+)', 'k': r'(?P<k>\d+)',
                 'p': r'(?P<p>weight|bias)'}
_WRAPPER_KEYS = ('state_dict', 'model', 'module', 'model_state', 'net')
_MLP_WEIGHT = re.compile(r'stages\.\d+\.\d+\.pwconv[12]\.weight$')
_GRN_PARAM = re.compile(r'stages\.\d+\.\d+\.grn\.(gamma|beta)$')
# The sizes timm builds with conv_mlp=True (1x1-conv MLP): its atto..nano, V1 and V2 alike.
TIMM_CONV_MLP_ARCHS = ('atto', 'femto', 'pico', 'nano')
# What a layout's final norm (after the last stage) normalises; see the module docstring.
FINAL_NORM_ROLES = ('pooled', 'patch_tokens', 'auto')
# What to do with a file's final norm: the layout's role ('auto'), or the caller's choice.
FINAL_NORM_CHOICES = ('auto', 'stage4', 'drop')
_LAST_NORM = f'norm{NUM_STAGES - 1}'


def _template_regex(template: str) -> re.Pattern:
    pattern = re.escape(template)
    for name, group in _PLACEHOLDERS.items():
        pattern = pattern.replace(re.escape('{' + name + '}'), group)
    return re.compile(pattern + '$')


@dataclass(frozen=True)
class Rule:
    """One renaming: a template of ours and the layout's, with ``{i}``, ``{j}``, ``{k}`` (indices)
    and ``{p}`` (weight/bias) placeholders."""
    ours: str
    theirs: str

    def __post_init__(self) -> None:
        object.__setattr__(self, 'ours_regex', _template_regex(self.ours))
        object.__setattr__(self, 'theirs_regex', _template_regex(self.theirs))


@dataclass(frozen=True)
class Layout:
    """Everything about one checkpoint layout.

    Args:
        name: The layout's name (``--to`` of ``tools/convert_checkpoint.py``).
        rules: Renamings from this project's keys to the layout's, first match wins.
        anchor: Regex of a key that only this layout has, matched at the end of a key (after
            any prefix such as ``backbone.``); it identifies the layout.
        classifier_keys: Regex of a classifier head's keys, dropped on import.
        final_norm: Template (``{p}``: weight/bias) of the layout's norm after the last stage,
            or None when the layout has none apart from its per-stage norms.
        final_norm_role: What that norm normalises (:data:`FINAL_NORM_ROLES`): ``'pooled'``
            (a classifier's, dropped with the head), ``'patch_tokens'`` (loaded as the stage-4
            output norm ``norm3``, and written from it on export) or ``'auto'`` (patch tokens
            when the file has no classifier key, else pooled).
        dropped_keys: ``(regex, what they are)`` of keys that are not backbone weights and are
            dropped by name (distillation projectors, a CLIP model's text tower), so that the
            load report names them.
        flat_grn: GRN parameters stored as (C,) instead of (1, 1, 1, C).
        conv_mlp_archs: Sizes whose model in that library stores the MLP as 1x1 convolutions,
            (C_out, C_in, 1, 1) weights instead of Linear (C_out, C_in) ones.
        file_prefix: Prefix of the backbone's keys in a file written in this layout, as the
            library's own files have it (mmpretrain classifiers: ``backbone.``, which the
            ``init_cfg=dict(prefix='backbone.')`` of mmdet's and mmseg's configs expects).
        import_reshape: ``(our name, tensor as stored) -> tensor`` for what is more than a
            reshape of ours (FCMAE's sparse kernels); run before the shape handling every
            layout shares (GRN, 1x1-conv MLP). It decides from the tensor's shape, so a tensor
            already in our shape passes unchanged.
        export_reshape: The inverse, ``(our name, tensor in our shape) -> tensor as stored``;
            it replaces the shared shape handling on export.
    """
    name: str
    rules: tuple[Rule, ...]
    anchor: str
    classifier_keys: str
    final_norm: str | None = None
    final_norm_role: str = 'pooled'
    dropped_keys: tuple[tuple[str, str], ...] = ()
    flat_grn: bool = False
    conv_mlp_archs: tuple[str, ...] = field(default=())
    file_prefix: str = ''
    import_reshape: Callable[[str, torch.Tensor], torch.Tensor] | None = None
    export_reshape: Callable[[str, torch.Tensor], torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if self.final_norm_role not in FINAL_NORM_ROLES:
            raise ValueError(f'final_norm_role={self.final_norm_role!r} of layout {self.name!r} '
                             f'is not one of {FINAL_NORM_ROLES}')
        final = Rule(f'{_LAST_NORM}.{{p}}', self.final_norm) if self.final_norm else None
        object.__setattr__(self, 'final_norm_rule', final)

    def rename_from(self, name: str) -> str | None:
        """This project's name of the layout's key ``name`` (without prefix), or None."""
        return self._rename(name, 'theirs_regex', 'ours')

    def rename_to(self, name: str) -> str | None:
        """The layout's name of this project's key ``name``, or None. The stage-4 output norm
        is written as the final norm where the layout's final norm is a patch-token norm."""
        if self.final_norm_rule is not None and self.final_norm_role == 'patch_tokens':
            match = self.final_norm_rule.ours_regex.match(name)
            if match:
                return self.final_norm_rule.theirs.format(**match.groupdict())
        return self._rename(name, 'ours_regex', 'theirs')

    def final_norm_param(self, name: str) -> str | None:
        """``'weight'``/``'bias'`` if the layout's key ``name`` is its final norm, else None."""
        if self.final_norm_rule is None:
            return None
        match = self.final_norm_rule.theirs_regex.match(name)
        return match.group('p') if match else None

    def drop_reason(self, name: str) -> str | None:
        """What the layout's key ``name`` is, if it is dropped by name (not a backbone weight)."""
        for pattern, reason in self.dropped_keys:
            if re.fullmatch(pattern, name):
                return reason
        return None

    def _rename(self, name: str, pattern: str, template: str) -> str | None:
        """The first rule whose ``pattern`` matches ``name``, filled into its ``template``."""
        for rule in self.rules:
            match = getattr(rule, pattern).match(name)
            if match:
                return getattr(rule, template).format(**match.groupdict())
        return None

    def is_classifier_key(self, name: str) -> bool:
        return re.fullmatch(self.classifier_keys, name) is not None

    def import_tensor(self, ours: str, value: torch.Tensor) -> torch.Tensor:
        """A tensor stored in this layout under the name ``ours`` in this project's shape."""
        if self.import_reshape is not None:
            value = self.import_reshape(ours, value)
        return import_tensor(ours, value)

    def export_tensor(self, ours: str, value: torch.Tensor, arch: str | None) -> torch.Tensor:
        """``value`` (this project's shape) in the shape this layout stores for ``arch``."""
        if self.export_reshape is not None:
            return self.export_reshape(ours, value)
        if _GRN_PARAM.search(ours):
            return value.reshape(-1) if self.flat_grn else value.reshape(1, 1, 1, -1)
        if _MLP_WEIGHT.search(ours) and arch in self.conv_mlp_archs:
            return value.reshape(*value.shape, 1, 1)
        return value


def import_tensor(ours: str, value: torch.Tensor) -> torch.Tensor:
    """A tensor of any layout in this project's shape (the same for every layout)."""
    if _GRN_PARAM.search(ours):
        return value.reshape(1, 1, 1, -1)
    if _MLP_WEIGHT.search(ours) and value.ndim == 4:
        return value.flatten(1)  # a 1x1-conv MLP weight (timm conv_mlp, mmpretrain 1x1 conv)
    return value


def _block_rules(dwconv: str, norm: str, pwconv1: str, pwconv2: str, gamma: str, grn_gamma: str,
                 grn_beta: str, block: str) -> tuple[Rule, ...]:
    names = dict(dwconv=dwconv, norm=norm, pwconv1=pwconv1, pwconv2=pwconv2)
    rules = [Rule(f'stages.{{i}}.{{j}}.{ours}.{{p}}', f'{block}.{theirs}.{{p}}')
             for ours, theirs in names.items()]
    rules += [Rule('stages.{i}.{j}.gamma', f'{block}.{gamma}'),
              Rule('stages.{i}.{j}.grn.gamma', f'{block}.{grn_gamma}'),
              Rule('stages.{i}.{j}.grn.beta', f'{block}.{grn_beta}')]
    return tuple(rules)


# EUPE's distillation heads (facebookresearch/EUPE; timm's checkpoint_filter_fn drops them too).
_EUPE_PROJECTORS = (r'projectors\..*', 'EUPE distillation projector')
# DINOv3's `norms` list (models/convnext.py): the norm its get_intermediate_layers(norm=True)
# applies to each stage's patch tokens, i.e. that stage's output norm. Only norms.3 holds
# weights in DINOv3's files (the final norm again); 0-2 are Identity there.
_DINOV3_STAGE_NORMS = Rule('norm{i}.{p}', 'norms.{i}.{p}')

OFFICIAL = Layout(
    name='official',
    rules=(Rule('downsample_layers.{i}.{k}.{p}', 'downsample_layers.{i}.{k}.{p}'),
           *_block_rules('dwconv', 'norm', 'pwconv1', 'pwconv2', 'gamma', 'grn.gamma',
                         'grn.beta', block='stages.{i}.{j}'),
           Rule('norm{i}.{p}', 'norm{i}.{p}'),
           _DINOV3_STAGE_NORMS),
    anchor=r'stages\.0\.0\.dwconv\.weight',
    classifier_keys=r'head\..*',
    # ImageNet classifiers: after pooling; DINOv3 / EUPE (no head): on the patch tokens
    final_norm='norm.{p}',
    final_norm_role='auto',
    dropped_keys=(_EUPE_PROJECTORS, ),
)


def _timm_rules(prefix: str = '') -> tuple[Rule, ...]:
    return (Rule('downsample_layers.0.{k}.{p}', f'{prefix}stem.{{k}}.{{p}}'),
            Rule('downsample_layers.{i}.{k}.{p}', f'{prefix}stages.{{i}}.downsample.{{k}}.{{p}}'),
            *_block_rules('conv_dw', 'norm', 'mlp.fc1', 'mlp.fc2', 'gamma', 'mlp.grn.weight',
                          'mlp.grn.bias', block=f'{prefix}stages.{{i}}.blocks.{{j}}'),
            # timm has no per-stage norms; ours are kept under their own names.
            Rule('norm{i}.{p}', f'{prefix}norm{{i}}.{{p}}'))


OPEN_CLIP = Layout(
    name='open_clip',
    rules=_timm_rules('visual.trunk.'),
    anchor=r'visual\.trunk\.stem\.0\.weight',
    classifier_keys=r'visual\.trunk\.head\.(fc|pre_logits)\..*',
    # open_clip keeps the timm trunk's pooling (TimmModel.reset_classifier(0) with timm_pool=''):
    # its head.norm normalises the pooled vector before the projection.
    final_norm='visual.trunk.head.norm.{p}',
    final_norm_role='pooled',
    dropped_keys=((r'visual\.head\..*', 'CLIP image projection'),
                  (r'(?!visual\.).*', 'CLIP text tower / logit scale')),
    flat_grn=True,
    conv_mlp_archs=TIMM_CONV_MLP_ARCHS,
)
TIMM = Layout(
    name='timm',
    # DINOv3's/EUPE's norms.{i}, where a converted file kept them
    rules=(*_timm_rules(), _DINOV3_STAGE_NORMS),
    anchor=r'stem\.0\.weight',
    classifier_keys=r'head\.(?!norm\.).*|norm_pre\..*',
    # timm's head.norm follows the pooling in its classifiers; the DINOv3 / EUPE models
    # (num_classes=0, no head.fc) keep their patch-token norm there.
    final_norm='head.norm.{p}',
    final_norm_role='auto',
    dropped_keys=(_EUPE_PROJECTORS, ),
    flat_grn=True,
    conv_mlp_archs=TIMM_CONV_MLP_ARCHS,
)
MMPRETRAIN = Layout(
    name='mmpretrain',
    rules=(Rule('downsample_layers.{i}.{k}.{p}', 'downsample_layers.{i}.{k}.{p}'),
           *_block_rules('depthwise_conv', 'norm', 'pointwise_conv1', 'pointwise_conv2', 'gamma',
                         'grn.gamma', 'grn.beta', block='stages.{i}.{j}'),
           Rule('norm{i}.{p}', 'norm{i}.{p}')),
    anchor=r'stages\.0\.0\.depthwise_conv\.weight',
    classifier_keys=r'head\..*',
    flat_grn=True,
    file_prefix='backbone.',
)
HF = Layout(
    name='hf',
    rules=(Rule('downsample_layers.0.0.{p}', 'embeddings.patch_embeddings.{p}'),
           Rule('downsample_layers.0.1.{p}', 'embeddings.layernorm.{p}'),
           Rule('downsample_layers.{i}.{k}.{p}', 'encoder.stages.{i}.downsampling_layer.{k}.{p}'),
           *_block_rules('dwconv', 'layernorm', 'pwconv1', 'pwconv2', 'layer_scale_parameter',
                         'grn.weight', 'grn.bias', block='encoder.stages.{i}.layers.{j}'),
           *(Rule(f'norm{k}.{{p}}', f'hidden_states_norms.stage{k + 1}.{{p}}')
             for k in range(4))),
    anchor=r'embeddings\.patch_embeddings\.weight',
    classifier_keys=r'classifier\..*',
    # ConvNextModel applies it to the pooled output
    final_norm='layernorm.{p}',
    final_norm_role='pooled',
)
HF_DINOV3 = Layout(
    name='hf_dinov3',
    rules=(Rule('downsample_layers.{i}.{k}.{p}', 'stages.{i}.downsample_layers.{k}.{p}'),
           # DINOv3ConvNextLayer has no GRN: a V2 model's keeps this project's leaf names.
           *_block_rules('depthwise_conv', 'layer_norm', 'pointwise_conv1', 'pointwise_conv2',
                         'gamma', 'grn.gamma', 'grn.beta', block='stages.{i}.layers.{j}'),
           # no per-stage norms before the last stage; ours are kept under their own names
           Rule('norm{i}.{p}', 'norm{i}.{p}')),
    anchor=r'stages\.0\.layers\.0\.depthwise_conv\.weight',
    classifier_keys=r'classifier\..*',
    # DINOv3ConvNextModel.forward normalises [pooled token; patch tokens] with it
    final_norm='layer_norm.{p}',
    final_norm_role='patch_tokens',
)

# -- FCMAE: MinkowskiEngine sparse convolutions ------------------------------------------------
_SPARSE_DWCONV = re.compile(r'stages\.\d+\.\d+\.dwconv\.weight$')
_SPARSE_DOWNSAMPLE = re.compile(r'downsample_layers\.[1-9]\d*\.1\.weight$')
_SPARSE_BIAS = re.compile(r'(stages\.\d+\.\d+\.dwconv|downsample_layers\.[1-9]\d*\.1)\.bias$')


def sparse_kernel_to_conv_weight(kernel: torch.Tensor, name: str = 'kernel') -> torch.Tensor:
    """A MinkowskiEngine 2-D convolution kernel as the ``nn.Conv2d`` weight computing the same
    convolution on a dense grid.

    ``MinkowskiConvolution`` stores (K*K, C_in, C_out), ``MinkowskiDepthwiseConvolution``
    (K*K, C); the Conv2d weights are (C_out, C_in, K, K) and (C, 1, K, K). Kernel offset ``k``
    is the position ``(h, w) = (k % K, k // K)``: the official fine-tuning code
    (``remap_checkpoint_keys`` in facebookresearch/ConvNeXt-V2 ``utils.py``) reads the offsets
    column by column, and the paper's fine-tuned results were obtained with that reading.
    """
    if kernel.ndim not in (2, 3):
        raise ValueError(f'{name!r} has shape {tuple(kernel.shape)}; a sparse kernel is '
                         f'(K*K, C) (depthwise) or (K*K, C_in, C_out)')
    volume = kernel.shape[0]
    size = math.isqrt(volume)
    if size * size != volume:
        raise ValueError(f'{name!r} has shape {tuple(kernel.shape)}: {volume} kernel offsets '
                         f'are not a square K x K kernel')
    if kernel.ndim == 2:
        kernel = kernel.unsqueeze(1)  # depthwise: one input channel per group
    _, in_channels, out_channels = kernel.shape
    # (K*K, ...) -> (w, h, C_in, C_out) -> (C_out, C_in, h, w)
    return kernel.reshape(size, size, in_channels, out_channels).permute(3, 2, 1, 0).contiguous()


def conv_weight_to_sparse_kernel(weight: torch.Tensor, depthwise: bool) -> torch.Tensor:
    """The inverse of :func:`sparse_kernel_to_conv_weight`."""
    out_channels, in_channels, height, width = weight.shape
    kernel = weight.permute(3, 2, 1, 0).reshape(width * height, in_channels, out_channels)
    return (kernel.squeeze(1) if depthwise else kernel).contiguous()


def _fcmae_import(ours: str, value: torch.Tensor) -> torch.Tensor:
    """FCMAE tensors in our shapes; decided by shape, so a dense tensor passes unchanged."""
    if (_SPARSE_DWCONV.search(ours) and value.ndim == 2) or \
            (_SPARSE_DOWNSAMPLE.search(ours) and value.ndim == 3):
        return sparse_kernel_to_conv_weight(value, name=ours)
    if ours.endswith('.bias') and value.ndim == 2 and value.shape[0] == 1:
        return value.reshape(-1)  # MinkowskiEngine biases are (1, C)
    return value  # GRN's (1, C): the shared handling makes it (1, 1, 1, C)


def _fcmae_export(ours: str, value: torch.Tensor) -> torch.Tensor:
    if _SPARSE_DWCONV.search(ours):
        return conv_weight_to_sparse_kernel(value, depthwise=True)
    if _SPARSE_DOWNSAMPLE.search(ours):
        return conv_weight_to_sparse_kernel(value, depthwise=False)
    if _SPARSE_BIAS.search(ours) or _GRN_PARAM.search(ours):
        return value.reshape(1, -1)
    return value


FCMAE = Layout(
    name='fcmae',
    # The stem is a dense Conv2d + channels-first LayerNorm in FCMAE too; the LayerNorms of
    # the sparse part sit under `.ln`, the MLP's Linear layers under `.linear`.
    rules=(Rule('downsample_layers.0.{k}.{p}', 'downsample_layers.0.{k}.{p}'),
           Rule('downsample_layers.{i}.0.{p}', 'downsample_layers.{i}.0.ln.{p}'),
           Rule('downsample_layers.{i}.1.weight', 'downsample_layers.{i}.1.kernel'),
           Rule('downsample_layers.{i}.1.bias', 'downsample_layers.{i}.1.bias'),
           Rule('stages.{i}.{j}.dwconv.weight', 'stages.{i}.{j}.dwconv.kernel'),
           *_block_rules('dwconv', 'norm.ln', 'pwconv1.linear', 'pwconv2.linear', 'gamma',
                         'grn.gamma', 'grn.beta', block='stages.{i}.{j}'),
           # FCMAE has no per-stage norms; ours are kept under their own names.
           Rule('norm{i}.{p}', 'norm{i}.{p}')),
    anchor=r'stages\.0\.0\.dwconv\.kernel',
    classifier_keys=r'head\..*',
    final_norm='norm.{p}',
    final_norm_role='pooled',
    file_prefix='encoder.',
    import_reshape=_fcmae_import,
    export_reshape=_fcmae_export,
)

# Detection tries them in this order: open_clip's keys end with timm's, so it comes first.
LAYOUT_RECORDS = {layout.name: layout
                  for layout in (OFFICIAL, OPEN_CLIP, TIMM, MMPRETRAIN, HF, HF_DINOV3, FCMAE)}
LAYOUTS = tuple(LAYOUT_RECORDS)


def get_layout(name: str) -> Layout:
    if name not in LAYOUT_RECORDS:
        raise ValueError(f'layout={name!r} is not supported; use one of {LAYOUTS}')
    return LAYOUT_RECORDS[name]


@dataclass
class ConversionReport:
    """What :func:`convert_state_dict` did with every key of the file, for one readable log
    message: each key is converted, or in exactly one of the lists below."""
    layout: str
    prefix: str
    # a classifier head's keys, and the final norm where it is a classifier's (after pooling)
    dropped_classifier: list[str] = field(default_factory=list)
    # other keys dropped by name, by what they are (layout's dropped_keys, duplicates)
    dropped: dict[str, list[str]] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)  # not backbone keys (neck, heads, ...)
    # the file's final norm: its keys and where they went ('stage4': loaded as norm3;
    # 'classifier': dropped with the head); None when the file has none
    final_norm_keys: list[str] = field(default_factory=list)
    final_norm: str | None = None

    def drop(self, reason: str, key: str) -> None:
        self.dropped.setdefault(reason, []).append(key)


def unwrap_checkpoint(checkpoint: Mapping) -> dict[str, torch.Tensor]:
    """Return the state dict inside a checkpoint (``{'model': ...}``, ``{'state_dict': ...}``)."""
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f'a checkpoint must be a dict, got {type(checkpoint).__name__}')
    for key in _WRAPPER_KEYS:
        inner = checkpoint.get(key)
        if isinstance(inner, Mapping) and any(torch.is_tensor(v) for v in inner.values()):
            return dict(inner)
    return {k: v for k, v in checkpoint.items() if torch.is_tensor(v)}


def detect_layout(state_dict: Mapping[str, torch.Tensor]) -> tuple[str, str]:
    """Return ``(layout, prefix)`` of a ConvNeXt state dict, e.g. ``('timm', '')`` or
    ``('official', 'backbone.')`` for a fine-tuned mmdet 2.x detector."""
    for layout in LAYOUT_RECORDS.values():
        regex = re.compile(r'(?P<prefix>.*?)' + layout.anchor + '$')
        for key in state_dict:
            match = regex.match(key)
            if match:
                return layout.name, match.group('prefix')
    sample = ', '.join(list(state_dict)[:5]) or '(empty)'
    raise ValueError(f'not a ConvNeXt state dict: no key of a known layout {LAYOUTS} was '
                     f'found (first keys: {sample})')


def convert_state_dict(state_dict: Mapping[str, torch.Tensor],
                       layout: str | None = None,
                       prefix: str | None = None,
                       final_norm: str = 'auto') -> tuple[dict[str, torch.Tensor],
                                                          ConversionReport]:
    """Convert a ConvNeXt state dict of any published layout to this project's names and shapes.

    Args:
        state_dict: Tensors by name, already unwrapped (see :func:`unwrap_checkpoint`).
        layout: One of :data:`LAYOUTS`; detected when None.
        prefix: Prefix of the backbone's keys (``'backbone.'``, ``'convnext.'``); detected
            when None. Keys outside it (a detector's neck and heads) are ignored.
        final_norm: The file's norm after the last stage: ``'auto'`` as the layout says
            (a patch-token norm becomes the stage-4 output norm ``norm3``, a classifier's is
            dropped; see the module docstring), ``'stage4'`` to load it as ``norm3`` anyway,
            ``'drop'`` to drop it anyway. A stage-4 norm the file names as such (DINOv3's
            ``norms.3``, a ``norm3``) loads either way.

    Returns:
        The converted state dict and a :class:`ConversionReport`.
    """
    if final_norm not in FINAL_NORM_CHOICES:
        raise ValueError(f'final_norm={final_norm!r} is not supported; use one of '
                         f'{FINAL_NORM_CHOICES}')
    detected_layout, detected_prefix = detect_layout(state_dict)
    record = get_layout(layout or detected_layout)
    prefix = detected_prefix if prefix is None else prefix
    report = ConversionReport(layout=record.name, prefix=prefix)
    converted: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}  # our name -> the file's key it came from
    final: dict[str, tuple[str, torch.Tensor]] = {}  # weight/bias -> (key, tensor)
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            report.ignored.append(key)
            continue
        name = key[len(prefix):]
        param = record.final_norm_param(name)
        if param is not None:
            final[param] = (key, value)
            continue
        if record.is_classifier_key(name):
            report.dropped_classifier.append(key)
            continue
        reason = record.drop_reason(name)
        if reason is not None:
            report.drop(reason, key)
            continue
        ours = record.rename_from(name)
        if ours is None:
            report.ignored.append(key)
        else:
            converted[ours] = record.import_tensor(ours, value)
            origin[ours] = key
    if final:
        _place_final_norm(record, final, final_norm, converted, origin, report)
    return converted, report


def _place_final_norm(record: Layout, final: Mapping[str, tuple[str, torch.Tensor]],
                      choice: str, converted: dict[str, torch.Tensor], origin: dict[str, str],
                      report: ConversionReport) -> None:
    """Load the file's final norm as the stage-4 output norm or drop it with the classifier,
    as ``choice`` (:data:`FINAL_NORM_CHOICES`) and the layout's role decide."""
    report.final_norm_keys = [key for key, _ in final.values()]
    if choice == 'auto':
        role = record.final_norm_role
        if role == 'auto':
            role = 'pooled' if report.dropped_classifier else 'patch_tokens'
        to_stage4 = role == 'patch_tokens'
    else:
        to_stage4 = choice == 'stage4'
    if not to_stage4:
        report.dropped_classifier.extend(report.final_norm_keys)
        report.final_norm = 'classifier'
        return
    report.final_norm = 'stage4'
    for param, (key, value) in final.items():
        ours = f'{_LAST_NORM}.{param}'
        if ours not in converted:
            converted[ours] = value
            origin[ours] = key
        elif torch.equal(converted[ours], value):
            # DINOv3's norms.3 is the final norm's module saved a second time
            report.drop(f'duplicate of the final norm ({key})', origin[ours])
            origin[ours] = key
        elif choice == 'stage4':
            report.drop(f'stage-4 norm replaced by the final norm ({key})', origin[ours])
            converted[ours] = value
            origin[ours] = key
        else:
            raise ValueError(
                f'the final norm {key!r} and the stage-4 output norm {origin[ours]!r} of this '
                f'{record.name} checkpoint differ; say which to load as {ours}: '
                f"final_norm='stage4' (the final norm) or final_norm='drop' "
                f'({origin[ours]!r})')


def arch_of(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the published size of a state dict in this project's layout, or None for a
    custom one (identified by its depths and dims)."""
    dims, depths = [], []
    for stage in range(4):
        blocks = {int(m.group(1)) for k in state_dict
                  if (m := re.match(rf'stages\.{stage}\.(\d+)\.dwconv\.weight$', k))}
        depths.append(len(blocks))
        weight = state_dict.get(f'stages.{stage}.0.dwconv.weight')
        dims.append(None if weight is None else weight.shape[0])
    for name, setting in ARCH_SETTINGS.items():
        if setting['depths'] == depths and setting['dims'] == dims:
            return name
    return None


def export_state_dict(state_dict: Mapping[str, torch.Tensor],
                      layout: str) -> dict[str, torch.Tensor]:
    """Write this project's state dict in another layout's names, with the shapes that the target
    library's model of the same size has (the inverse of :func:`convert_state_dict`)."""
    record = get_layout(layout)
    arch = arch_of(state_dict)
    exported = {}
    for name, value in state_dict.items():
        theirs = record.rename_to(name)
        if theirs is None:
            raise KeyError(f'{name!r} has no counterpart in the {layout} layout')
        exported[theirs] = record.export_tensor(name, value, arch)
    return exported
