"""Reading a COCO annotation file with errors that name the file and what is wrong.

Without the check, an annotation file that is not COCO, or an annotation whose category id is
not among the categories, surfaces deep inside pycocotools or mmdet as a bare
``KeyError: 'images'`` or ``KeyError: 91``. :func:`check_coco_annotation` is used by the COCO
evaluation of result files, by the dataset checks before a run
(:mod:`convnext_dense.config.data_checks`) and by the demo's ground truth.
"""
from __future__ import annotations

import json
import os.path as osp
from typing import Any

COCO_KEYS = ('images', 'annotations', 'categories')


def read_json(path: str, what: str, prefix: str = '') -> Any:
    """The content of the JSON file ``path``; a missing or unreadable file is an error that
    names it as ``what`` ('annotation file', 'results file'). Not ``fileio.read_json``:
    importing ``convnext_dense.fileio`` imports torch, which ``tools/coco_eval.py`` starts
    without."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'{prefix}{what} {path!r} does not exist')
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f'{prefix}{what} {path!r} is not JSON: {error}') from error


def check_coco_annotation(path: str, where: str = '') -> dict[str, Any]:
    """Load and check a COCO annotation file; returns it."""
    prefix = f'{where}: ' if where else ''
    coco = read_json(path, 'annotation file', prefix)
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
