"""The model an export starts from: a config's mmdet or mmseg model with a checkpoint's weights,
and the input size a config's test pipeline gives it."""
from __future__ import annotations

from torch import nn

from ...config import load_config
from ...engine import adapt_to_cpu, build_model


def load_model(config: str, checkpoint: str | None = None,
               cfg_options: dict | None = None) -> nn.Module:
    """The mmdet or mmseg model of ``config`` (picked by its ``default_scope``) on the CPU, in
    eval mode, with every tensor of ``checkpoint`` loaded (see
    :func:`convnext_dense.engine.build_model`)."""
    cfg = load_config(config, cfg_options)
    adapt_to_cpu(cfg)
    return build_model(cfg, checkpoint, device='cpu').eval()


def default_shape(cfg) -> tuple[int, int]:
    """(H, W) of the ``Resize`` scale (W, H) of ``cfg``'s test pipeline: the size a model
    of the config is exported at when none is asked for."""
    for transform in cfg.test_dataloader.dataset.get('pipeline', []):
        if str(transform.get('type', '')).endswith('Resize') and transform.get('scale'):
            width, height = transform['scale']
            return int(height), int(width)
    raise ValueError(f'the test pipeline of {cfg.filename!r} has no Resize with a scale; '
                     'give the shape (--shape H W)')
