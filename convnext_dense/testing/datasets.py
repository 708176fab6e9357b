"""Synthetic datasets on disk in the COCO and ADE20K layouts the paper configs read, made of the
images of :mod:`.batches` (noise, box-shaped instances, random label maps): what the installation
check trains and evaluates the configs on, at any size, without downloading a dataset.

* :func:`write_coco_like`: ``ROOT/{train2017,val2017}/NNNNNN.jpg`` and
  ``ROOT/annotations/instances_{train2017,val2017}.json``, mmdet's ``coco_instance.py`` layout
  (set ``data_root``). Instances are :func:`.batches.det_images`' boxes with rectangular polygon
  masks; categories are named by the given classes (mmdet's ``CocoDataset`` keeps only
  annotations whose category name is one of its classes).
* :func:`write_ade_like`: ``ROOT/images/{training,validation}/*.jpg`` and
  ``ROOT/annotations/{training,validation}/*.png``, mmseg's ``ade20k.py`` layout; label maps hold
  ``0..num_classes`` with 0 the "other" label that ``reduce_zero_label`` ignores.
"""
from __future__ import annotations

import json
import os
import os.path as osp
from collections.abc import Sequence

import cv2
import numpy as np

from .batches import det_images, seg_images

COCO_SPLITS = ('train2017', 'val2017')
ADE_SPLITS = ('training', 'validation')


def _write_jpeg(path: str, image_chw) -> None:
    """An RGB (3, H, W) uint8 image as a JPEG (which mmcv reads as BGR, as every real dataset's
    image). Without chroma subsampling: noise would lose half its colour resolution."""
    bgr = np.ascontiguousarray(image_chw.permute(1, 2, 0).numpy()[..., ::-1])
    params = [cv2.IMWRITE_JPEG_QUALITY, 95,
              cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    if not cv2.imwrite(path, bgr, params):
        raise OSError(f'could not write image {path!r}')


def _check_counts(counts: Sequence[int], splits: Sequence[str]) -> None:
    if len(counts) != len(splits) or any(
            isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in counts):
        raise ValueError(f'counts={counts!r}: give one positive image count per split '
                         f'{tuple(splits)}')


def write_coco_like(root: str, counts: Sequence[int], height: int, width: int, instances: int,
                    classes: Sequence[str], seed: int = 0) -> dict[str, int]:
    """Write a COCO-layout instance segmentation set of ``height`` x ``width`` images.

    Args:
        counts: Images of ``train2017`` and of ``val2017``.
        instances: Boxes per image (see :func:`.batches.det_images`).
        classes: Category names, ids 1..len(classes); labels are drawn over all of them.
        seed: Each split draws from its own generator, ``seed`` and ``seed + 1``.

    Returns:
        Images per split.
    """
    _check_counts(counts, COCO_SPLITS)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    categories = [dict(id=i + 1, name=name, supercategory='synthetic')
                  for i, name in enumerate(classes)]
    summary = {}
    for offset, (split, count) in enumerate(zip(COCO_SPLITS, counts)):
        os.makedirs(osp.join(root, split), exist_ok=True)
        images, annotations = [], []
        for index, (image, boxes, labels) in enumerate(det_images(
                count, height, width, instances, len(classes), seed + offset)):
            file_name = f'{index:06d}.jpg'
            _write_jpeg(osp.join(root, split, file_name), image)
            images.append(dict(id=index + 1, file_name=file_name, height=height, width=width))
            # the pixels box_masks fills: [x0, x1) x [y0, y1) of the truncated corners
            for (x0, y0, x1, y1), label in zip(boxes.long().tolist(), labels.tolist()):
                annotations.append(dict(
                    id=len(annotations) + 1, image_id=index + 1, category_id=label + 1,
                    iscrowd=0, bbox=[x0, y0, x1 - x0, y1 - y0], area=(x1 - x0) * (y1 - y0),
                    segmentation=[[x0, y0, x1, y0, x1, y1, x0, y1]]))
        with open(osp.join(root, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(dict(images=images, annotations=annotations, categories=categories), f)
        summary[split] = count
    return summary


def write_ade_like(root: str, counts: Sequence[int], height: int, width: int, num_classes: int,
                   seed: int = 0) -> dict[str, int]:
    """Write an ADE20K-layout semantic segmentation set of ``height`` x ``width`` images.

    Args:
        counts: Images of ``training`` and of ``validation``.
        num_classes: Label maps hold ``0..num_classes`` (ADE20K: 150; 0 is "other").
        seed: Each split draws from its own generator, ``seed`` and ``seed + 1``.

    Returns:
        Images per split.
    """
    _check_counts(counts, ADE_SPLITS)
    summary = {}
    for offset, (split, count) in enumerate(zip(ADE_SPLITS, counts)):
        image_dir = osp.join(root, 'images', split)
        label_dir = osp.join(root, 'annotations', split)
        os.makedirs(image_dir, exist_ok=True)
        os.makedirs(label_dir, exist_ok=True)
        for index, (image, labels) in enumerate(seg_images(count, height, width,
                                                           num_classes + 1, seed + offset)):
            name = f'synthetic_{split}_{index:06d}'
            _write_jpeg(osp.join(image_dir, f'{name}.jpg'), image)
            path = osp.join(label_dir, f'{name}.png')
            if not cv2.imwrite(path, labels.numpy().astype(np.uint8)):
                raise OSError(f'could not write label map {path!r}')
        summary[split] = count
    return summary
