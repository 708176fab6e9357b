"""Datasets of the package: synthetic toy scenes for trying the configs without real data."""
from .toy import (
    CLASSES,
    METAINFO,
    PALETTE,
    ToyObject,
    encode_annotation,
    generate_scene,
    make_toy_data,
    mask_to_polygons,
)

__all__ = ['CLASSES', 'METAINFO', 'PALETTE', 'ToyObject', 'encode_annotation', 'generate_scene',
           'make_toy_data', 'mask_to_polygons']
