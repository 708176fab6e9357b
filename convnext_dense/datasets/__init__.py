"""Datasets of the package: synthetic toy scenes for trying the configs without real data.

The mmdet / mmseg dataset classes that read them (:mod:`.toy_coco`, :mod:`.toy_seg`) are not
imported here: the toy configs import them (``custom_imports``), and making the data needs
neither mmdet nor mmseg.
"""
from .toy import (
    BACKGROUND_CLASS,
    COCO_METAINFO,
    SEG_CLASSES,
    SEG_METAINFO,
    SEG_PALETTE,
    SHAPE_CLASSES,
    SHAPE_PALETTE,
    ToyObject,
    encode_annotation,
    generate_scene,
    make_toy_data,
    mask_to_polygons,
    uncompressed_rle,
)

__all__ = ['BACKGROUND_CLASS', 'COCO_METAINFO', 'SEG_CLASSES', 'SEG_METAINFO', 'SEG_PALETTE',
           'SHAPE_CLASSES', 'SHAPE_PALETTE', 'ToyObject', 'encode_annotation', 'generate_scene',
           'make_toy_data', 'mask_to_polygons', 'uncompressed_rle']
