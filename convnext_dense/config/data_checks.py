"""Checks of a config's datasets before a run starts, with errors that name the file and key.

Without them, a missing data root, an annotation file that is not COCO, or an annotation whose
category id is not among the categories surfaces deep inside mmdet/mmseg as a bare
``KeyError: 'images'``, ``KeyError: 91`` or an empty-dataset assertion, after the model was
built and the work dir written. The COCO annotation file itself is checked by
:func:`convnext_dense.evaluation.annotations.check_coco_annotation`.
"""
from __future__ import annotations

import os.path as osp

from ..evaluation.annotations import check_coco_annotation

LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def _datasets(cfg, loaders) -> list[tuple[str, dict]]:
    """``(dataloader name, innermost dataset cfg)`` of the config's dataloaders."""
    found = []
    for name in loaders:
        loader = cfg.get(name)
        if not loader:
            continue
        dataset = loader.get('dataset')
        while isinstance(dataset, dict) and 'dataset' in dataset:  # RepeatDataset & co.
            dataset = dataset['dataset']
        if isinstance(dataset, dict):
            found.append((name, dataset))
    return found


def _join(data_root: str, path: str | None) -> str | None:
    if path is None or osp.isabs(path) or not data_root:
        return path
    return osp.join(data_root, path)


def check_datasets(cfg, loaders: tuple[str, ...] = LOADERS) -> None:
    """Check the data root, image folders and (COCO) annotation file of each dataloader."""
    for loader, dataset in _datasets(cfg, loaders):
        where = f'{loader}.dataset ({dataset.get("type")})'
        data_root = dataset.get('data_root') or ''
        if data_root and not osp.isdir(data_root):
            raise FileNotFoundError(f'{where}: data_root {data_root!r} does not exist (make the '
                                    f'toy data with tools/make_toy_data.py, or set '
                                    f'{loader}.dataset.data_root)')
        prefix = dataset.get('data_prefix') or {}
        for key in ('img', 'img_path', 'seg_map_path'):
            folder = _join(data_root, prefix.get(key))
            if folder and not osp.isdir(folder):
                raise FileNotFoundError(f'{where}: data_prefix.{key} folder {folder!r} does not '
                                        'exist')
        ann_file = dataset.get('ann_file')
        if ann_file and str(dataset.get('type', '')).startswith('Coco'):
            check_coco_annotation(_join(data_root, ann_file), where)
