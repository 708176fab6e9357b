"""``ToySegDataset``: the toy semantic segmentation set (:func:`.toy.make_toy_data`'s
``toy_ade/``) for mmseg, with its classes and palette (:data:`.toy.SEG_METAINFO`: background and
the five shapes).

It reads ADE20K's folder layout (``.jpg`` images, ``.png`` label maps) as mmseg's
``BaseSegDataset``, but every pixel is labelled: the background is class 0, scored like the
shapes, so ``reduce_zero_label`` is False (ADE20K's class 0 "other" is ignored instead). Imported
by the toy config's ``custom_imports``, not by ``import convnext_dense``, which stays free of
mmseg's datasets; registered in mmengine's root registry, where mmseg's finds it.
"""
from __future__ import annotations

from mmengine.registry import DATASETS
from mmseg.datasets import BaseSegDataset

from .toy import SEG_METAINFO


@DATASETS.register_module()
class ToySegDataset(BaseSegDataset):
    """The toy segmentation set: ``data_prefix=dict(img_path=..., seg_map_path=...)`` as for
    ``BaseSegDataset``; the suffixes and ``reduce_zero_label`` default to the toy set's."""

    METAINFO = SEG_METAINFO

    def __init__(self,
                 img_suffix: str = '.jpg',
                 seg_map_suffix: str = '.png',
                 reduce_zero_label: bool = False,
                 **kwargs) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         reduce_zero_label=reduce_zero_label, **kwargs)
