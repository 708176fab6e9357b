"""Building the model of a config outside a Runner, the one way every tool does it, and reaching
the model inside its wrappers.

:func:`build_model` is what the demo (:mod:`convnext_dense.apis`), the exports
(:mod:`convnext_dense.deployment`), the benchmarks, the installation check and the analysis
(parameters and FLOPs) build: ``cfg.model`` in the config's task (``default_scope``), without
the download of pretrained weights (``init_cfg`` and ``pretrained`` are left out: every weight
comes from ``checkpoint``, or the layers' construction when there is none), SyncBN as BN
where there is no CUDA, and a checkpoint loaded with every tensor accounted for
(:func:`convnext_dense.checkpoint.load_model_checkpoint`; mmdet's ``init_detector`` and
mmseg's ``init_model`` load with ``strict=False`` and only warn).
"""
from __future__ import annotations

import copy
import importlib
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.model import BaseTTAModel, is_model_wrapper, revert_sync_batchnorm
from torch import nn

from ..checkpoint import load_model_checkpoint
from ..config import SCOPES

__all__ = ['build_model', 'dataset_meta', 'unwrap_model']


def _without_pretrained(model_cfg):
    model_cfg = copy.deepcopy(model_cfg)
    model_cfg.pop('pretrained', None)  # mmseg's deprecated way to a backbone checkpoint
    backbone = model_cfg.get('backbone')
    if backbone is not None:
        backbone.init_cfg = None
        backbone.pop('pretrained', None)
    return model_cfg


def dataset_meta(checkpoint_meta: dict, cfg: Config) -> dict:
    """Class names and palette of a model: its checkpoint's (mmengine's ``dataset_meta``, or
    mmcv 1.x's ``CLASSES``/``PALETTE``), else the test dataset's of the config (its
    ``metainfo``, else its class's ``METAINFO``)."""
    if checkpoint_meta.get('dataset_meta'):
        return dict(checkpoint_meta['dataset_meta'])
    if checkpoint_meta.get('CLASSES'):
        return dict(classes=tuple(checkpoint_meta['CLASSES']),
                    palette=checkpoint_meta.get('PALETTE'))
    dataset = cfg.test_dataloader.dataset
    if dataset.get('metainfo'):
        return dict(dataset.metainfo)
    datasets = importlib.import_module(f'{cfg.default_scope}.registry').DATASETS
    return dict(datasets.get(dataset.type).METAINFO)


def build_model(cfg: Config,
                checkpoint: str | None = None,
                device: str | torch.device | None = 'cpu') -> nn.Module:
    """``cfg.model`` built in the config's ``default_scope`` (mmdet or mmseg), in training mode
    as built (call ``.eval()`` to infer); ``cfg`` is left as it is.

    Args:
        cfg: A config whose ``default_scope`` is one of :data:`convnext_dense.config.SCOPES`.
        checkpoint: A whole-model checkpoint (path or URL) to load, refused unless every tensor
            fits the model; its ``dataset_meta`` (else the config's test dataset's classes)
            becomes ``model.dataset_meta``. None: the weights of the layers' construction.
        device: Where the model goes; off CUDA, SyncBN layers become BN (SyncBN needs CUDA).
            None leaves it where its tensors were created (``with torch.device('meta')``
            builds it without memory), SyncBN reverted.

    Returns:
        The model, with ``model.cfg = cfg`` (as mmdet's ``init_detector`` and mmseg's
        ``init_model`` set it, for their ``inference_detector``/``inference_model``).
    """
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise ValueError(f'default_scope={scope!r}: build_model builds the models of mmdet and '
                         f'mmseg configs ({SCOPES}), whose _base_ default_runtime sets it')
    if checkpoint is not None and not str(checkpoint).startswith(('http://', 'https://')) \
            and not osp.isfile(checkpoint):
        # before building the model, which takes a while for the large sizes
        raise FileNotFoundError(f'checkpoint file {checkpoint!r} does not exist')
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(scope)
    model = MODELS.build(_without_pretrained(cfg.model))
    if device is None or torch.device(device).type != 'cuda':
        model = revert_sync_batchnorm(model)
    if device is not None:
        model = model.to(device)
    if checkpoint is not None:
        _, meta = load_model_checkpoint(model, checkpoint)
        model.dataset_meta = dataset_meta(meta, cfg)
    model.cfg = cfg
    return model


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside its DDP (or other mmengine model wrapper) and test-time-augmentation
    wrappers."""
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model
