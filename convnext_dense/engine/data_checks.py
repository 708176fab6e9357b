"""Checks of a config's datasets before a run starts, with errors that name the file and key.

Without them, a missing data root, an annotation file that is not COCO, or an annotation whose
category id is not among the categories surfaces deep inside mmdet/mmseg as a bare
``KeyError: 'images'``, ``KeyError: 91`` or an empty-dataset assertion, after the model was
built and the work dir written.
"""
from __future__ import annotations

import json
import os.path as osp
from typing import Any

COCO_KEYS = ('images', 'annotations', 'categories')


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


def check_coco_annotation(path: str, where: str = '') -> dict[str, Any]:
    """Load and check a COCO annotation file; returns it."""
    prefix = f'{where}: ' if where else ''
    if not osp.isfile(path):
        raise FileNotFoundError(f'{prefix}annotation file {path!r} does not exist')
    try:
        with open(path, encoding='utf-8') as f:
            coco = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f'{prefix}annotation file {path!r} is not JSON: {error}') from error
    if not isinstance(coco, dict) or any(k not in coco for k in COCO_KEYS):
        have = sorted(coco) if isinstance(coco, dict) else type(coco).__name__
        raise ValueError(f'{prefix}{path!r} is not a COCO annotation file: it needs the keys '
                         f'{COCO_KEYS}, it has {have}')
    category_ids = {c['id'] for c in coco['categories']}
    image_ids = {image['id'] for image in coco['images']}
    for index, ann in enumerate(coco['annotations']):
        if ann.get('category_id') not in category_ids:
            raise ValueError(f'{prefix}{path!r}: annotations[{index}] (id {ann.get("id")}) has '
                             f'category_id {ann.get("category_id")!r}, which is not among the '
                             f'categories {sorted(category_ids)}')
        if ann.get('image_id') not in image_ids:
            raise ValueError(f'{prefix}{path!r}: annotations[{index}] (id {ann.get("id")}) has '
                             f'image_id {ann.get("image_id")!r}, which is not among the images')
    return coco


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
