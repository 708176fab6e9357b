"""``ToyCocoDataset``: the toy instance segmentation set (:func:`.toy.make_toy_data`'s
``toy_coco/``) for mmdet: mmdet's ``CocoDataset`` with the toy classes and palette
(:data:`.toy.COCO_METAINFO`: the five shapes; the background is no instance).

Imported by the toy config's ``custom_imports``, not by ``import convnext_dense``, which stays
free of mmdet's datasets; registered in mmengine's root registry, where mmdet's finds it.
"""
from __future__ import annotations

from mmdet.datasets import CocoDataset
from mmengine.registry import DATASETS

from .toy import COCO_METAINFO


@DATASETS.register_module()
class ToyCocoDataset(CocoDataset):
    """The toy detection set: ``ann_file`` and ``data_prefix`` as for ``CocoDataset``."""

    METAINFO = COCO_METAINFO
