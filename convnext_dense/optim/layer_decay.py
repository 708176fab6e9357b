"""Layer-wise learning-rate decay of the ConvNeXt paper's detection and segmentation recipes.

Liu et al. (2022), Appendix A.3: Mask R-CNN / Cascade Mask R-CNN use ``layer_wise`` decay
(e.g. 0.7 over 6 layers for Cascade ConvNeXt-T), UperNet uses ``stage_wise`` decay 0.9. The
constructor reproduces the official assignment exactly (the published hyperparameters were
tuned with it) and asks the backbone for each parameter's layer id (``get_layer_id``) instead
of checking class names, as mmdet's and mmseg's ``LearningRateDecayOptimizerConstructor`` do.

Unlike those, it keeps mmengine's ``paramwise_cfg`` options (``custom_keys``, ``*_decay_mult``,
``bias_lr_mult``, ``bypass_duplicate``) working on top of the decay (mmseg issue #1623), and
merges parameters with equal settings into one optimizer group, so a foreach/fused optimizer
step launches a few kernels instead of one per tensor.
"""
from __future__ import annotations

from mmengine.dist import is_main_process
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn

from ..arch_settings import DECAY_TYPES

DECAY_OPTIONS = ('decay_rate', 'decay_type', 'num_layers')
# Keys that DefaultOptimWrapperConstructor adds to a parameter group besides 'params'.
_INTERNAL_KEYS = ('params', 'param_names')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class ConvNeXtLayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Optimizer-wrapper constructor with ConvNeXt layer-wise learning-rate decay.

    ``paramwise_cfg`` takes, besides mmengine's options:

    * ``decay_rate`` (float in (0, 1]): learning-rate scale per layer.
    * ``decay_type``: ``'layer_wise'`` or ``'stage_wise'`` (see ``ConvNeXt.get_layer_id``).
    * ``num_layers`` (int): layers of the recipe; derived from the backbone when omitted (6
      for a stage-2 depth of 9, 12 for 27). A parameter with layer id ``l`` gets
      ``lr * decay_rate ** (num_layers + 1 - l)``.

    Weight decay is 0 for what the backbone exempts (``ConvNeXt.no_weight_decay``: norms, biases,
    layer scale ``gamma``, GRN ``gamma``/``beta``, as the official code) and for 1-D parameters
    and biases elsewhere, unless a ``paramwise_cfg`` option sets that parameter's decay
    explicitly. Frozen parameters (``requires_grad=False``) are left out of the optimizer.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None) -> None:
        paramwise_cfg = dict(paramwise_cfg or {})
        self.decay_rate = paramwise_cfg.pop('decay_rate', None)
        self.decay_type = paramwise_cfg.pop('decay_type', 'layer_wise')
        self.num_layers = paramwise_cfg.pop('num_layers', None)
        if self.decay_rate is None:
            raise ValueError('paramwise_cfg.decay_rate is required by '
                             f'{type(self).__name__} (e.g. 0.7 for Cascade ConvNeXt-T)')
        if isinstance(self.decay_rate, bool) or not isinstance(self.decay_rate, (int, float)) \
                or not 0 < self.decay_rate <= 1:
            raise ValueError(f'paramwise_cfg.decay_rate must be in (0, 1], got '
                             f'{self.decay_rate!r}')
        if self.decay_type not in DECAY_TYPES:
            raise ValueError(f'paramwise_cfg.decay_type={self.decay_type!r} is not supported; '
                             f'use one of {DECAY_TYPES}')
        if self.num_layers is not None and (isinstance(self.num_layers, bool)
                                            or not isinstance(self.num_layers, int)
                                            or self.num_layers < 1):
            raise ValueError(f'paramwise_cfg.num_layers must be a positive int, got '
                             f'{self.num_layers!r}')
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        # The base class takes the per-parameter path only for a non-empty paramwise_cfg.
        self.paramwise_cfg.setdefault('bypass_duplicate', False)

    # -- the backbone's part ----------------------------------------------------------------
    def _backbone(self, model: nn.Module) -> nn.Module:
        backbone = getattr(model, 'backbone', None)
        if backbone is None or not callable(getattr(backbone, 'get_layer_id', None)):
            found = type(backbone).__name__ if backbone is not None else 'no model.backbone'
            raise TypeError(f'{type(self).__name__} needs a model whose backbone is '
                            f"convnext_dense's ConvNeXt (it provides get_layer_id), got "
                            f'{found} in {type(model).__name__}')
        return backbone

    def _resolve_num_layers(self, backbone: nn.Module) -> int:
        default = backbone.default_num_layers()
        if self.num_layers is None:
            print_log(f'paramwise_cfg.num_layers not set: using {default}, the official value '
                      f'for a stage-2 depth of {backbone.depths[2]}', logger='current')
            return default
        # A layer id above num_layers + 1 would get a scale decay_rate ** (num_layers + 1 - id)
        # above 1.
        max_id = backbone.max_layer_id(self.decay_type)
        if max_id > self.num_layers + 1:
            raise ValueError(
                f'paramwise_cfg.num_layers={self.num_layers} does not fit this backbone: its '
                f'layer ids reach {max_id} (stage-2 depth {backbone.depths[2]}), which would '
                f'give a learning-rate scale above 1; use num_layers >= {max_id - 1} '
                f'(the official recipe uses {default})')
        return self.num_layers

    # -- building the groups ----------------------------------------------------------------
    def add_params(self, params: list[dict], module: nn.Module, prefix: str = '',
                   is_dcn_module: int | float | None = None) -> None:
        if prefix:  # the base class recursing into submodules
            return super().add_params(params, module, prefix, is_dcn_module)
        backbone = self._backbone(module)
        num_layers = self._resolve_num_layers(backbone)
        per_param: list[dict] = []
        super().add_params(per_param, module, prefix, is_dcn_module)
        names = {id(p): n for n, p in module.named_parameters(remove_duplicate=False)}

        merged: dict[tuple, dict] = {}
        for group in per_param:
            (param, ) = group['params']
            if not param.requires_grad:
                continue
            name = names[id(param)]
            if name.startswith('backbone.'):
                backbone_name = name[len('backbone.'):]
                layer_id = backbone.get_layer_id(backbone_name, self.decay_type, num_layers)
                no_decay = backbone.no_weight_decay(backbone_name)
            else:
                layer_id = num_layers + 1
                no_decay = param.ndim == 1 or name.endswith('.bias')
            scale = self.decay_rate**(num_layers + 1 - layer_id)
            settings = {k: v for k, v in group.items() if k not in _INTERNAL_KEYS}
            settings['lr'] = settings.get('lr', self.base_lr) * scale
            if 'weight_decay' not in settings:
                settings['weight_decay'] = 0. if no_decay else (self.base_wd or 0.)
            settings['lr_scale'] = scale
            settings['layer_id'] = layer_id
            key = tuple(sorted(settings.items()))
            if key not in merged:
                merged[key] = dict(settings, params=[], param_names=[])
            merged[key]['params'].append(param)
            merged[key]['param_names'].append(name)
        params.extend(sorted(merged.values(),
                             key=lambda g: (g['layer_id'], g['weight_decay'] == 0, g['lr'])))
        if is_main_process():
            print_log(self._table(params, num_layers), logger='current')

    def _table(self, groups: list[dict], num_layers: int) -> str:
        header = ('group', 'layer id', 'lr scale', 'weight decay', 'tensors', 'parameters')
        rows = [header]
        for index, group in enumerate(groups):
            rows.append((str(index), str(group['layer_id']), f'{group["lr_scale"]:.4g}',
                         f'{group["weight_decay"]:.4g}', str(len(group['params'])),
                         f'{sum(p.numel() for p in group["params"]):,}'))
        widths = [max(len(row[c]) for row in rows) for c in range(len(header))]
        lines = ['  '.join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows]
        title = (f'layer-wise lr decay: {self.decay_type}, decay_rate={self.decay_rate}, '
                 f'num_layers={num_layers}, base lr={self.base_lr}, base wd={self.base_wd}')
        return '\n'.join([title] + lines)
