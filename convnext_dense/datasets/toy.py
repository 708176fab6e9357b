"""Synthetic toy scenes for trying the detection and segmentation configs without real data.

A scene is a textured, noisy background with a few objects of :data:`SHAPE_CLASSES` painted on
it, each class with its own shape, colour and texture, in varied sizes and rotations. Objects
are painted in order, so later ones partly cover earlier ones; the instance masks are the
visible parts. :func:`make_toy_data` writes, from one seed and byte for byte reproducibly:

* ``OUT/toy_coco``: COCO instance segmentation, ``{train,val}/NNNNNN.png`` and
  ``annotations/instances_{train,val}.json``. Most masks are polygons; rings (their hole cannot
  be a polygon), masks a polygon would not reproduce exactly and a random few more are RLE,
  uncompressed (``counts`` list) or compressed (``counts`` string), so every mask path of the
  loaders and of COCOeval is exercised. ``bbox`` and ``area`` are those of the mask the
  annotation decodes to.
* ``OUT/toy_ade``: ADE20K's folder layout for semantic segmentation,
  ``images/{training,validation}/*.jpg`` and ``annotations/{training,validation}/*.png`` holding
  the index into :data:`SEG_CLASSES` of every pixel: 0 = background, a class of its own (unlike
  ADE20K's ignored "other": every pixel is scored), shape ``k`` of :data:`SHAPE_CLASSES` as
  ``k + 1``.

The detection set's classes are the shapes (:data:`COCO_METAINFO`), the segmentation set's the
background and the shapes (:data:`SEG_METAINFO`); the toy configs take them from the dataset
classes that hold them (:mod:`.toy_coco`, :mod:`.toy_seg`), so they are written here only.

Both datasets are written into a temporary folder next to their destination and renamed into
place when complete, so an interrupted run leaves no half-written dataset.
"""
from __future__ import annotations

import json
import os
import os.path as osp
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

SHAPE_CLASSES: tuple[str, ...] = ('circle', 'square', 'triangle', 'ring', 'star')
# RGB; the colour each shape is painted in (textures vary around it) and drawn with.
SHAPE_PALETTE: list[list[int]] = [[220, 40, 40], [40, 170, 60], [50, 80, 220], [240, 200, 30],
                                  [200, 60, 200]]
# Black: blended half and half over the image it darkens the predicted background, so that the
# shapes (tinted with the colour they are painted in) stand out, and so does any pixel the model
# gives to the wrong side.
BACKGROUND_CLASS, BACKGROUND_COLOR = 'background', [0, 0, 0]
SEG_CLASSES: tuple[str, ...] = (BACKGROUND_CLASS, *SHAPE_CLASSES)
SEG_PALETTE: list[list[int]] = [BACKGROUND_COLOR, *SHAPE_PALETTE]
# The datasets' metainfo: instances of the shapes; every pixel, background included.
COCO_METAINFO: dict[str, Any] = dict(classes=SHAPE_CLASSES, palette=SHAPE_PALETTE)
SEG_METAINFO: dict[str, Any] = dict(classes=SEG_CLASSES, palette=SEG_PALETTE)
COCO_DIR, ADE_DIR = 'toy_coco', 'toy_ade'
SPLITS = (('train', 'training'), ('val', 'validation'))  # (COCO name, ADE20K name)

# An earlier object stays at least this visible when later ones are painted over it, so every
# annotated object is recognisable.
MIN_VISIBLE_FRACTION = 0.4
MIN_VISIBLE_PIXELS = 24
RLE_FRACTION = 0.15  # polygon-able objects stored as RLE anyway, to exercise that path


@dataclass
class ToyObject:
    """One painted object: its class index into :data:`SHAPE_CLASSES` and its visible mask."""

    label: int
    mask: np.ndarray  # bool HxW, the visible part
    full_area: int  # pixels before later objects covered part of it

    @property
    def occluded(self) -> bool:
        return int(self.mask.sum()) < self.full_area


# -- shapes -------------------------------------------------------------------------------------
def _polygon_mask(points: np.ndarray, size: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    # 4 fractional bits: sub-pixel vertices, so small shapes keep their form.
    cv2.fillPoly(mask, [np.round((points - 0.5) * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    return mask.astype(bool)


def _regular_points(cx: float, cy: float, radii: list[float], angle: float) -> np.ndarray:
    count = len(radii)
    theta = angle + 2 * np.pi * np.arange(count) / count
    radii = np.asarray(radii)
    return np.stack([cx + radii * np.cos(theta), cy + radii * np.sin(theta)], axis=1)


def _shape_mask(label: int, cx: float, cy: float, radius: float, angle: float,
                size: int) -> np.ndarray:
    """The full (unoccluded) mask of class ``label`` centred at (cx, cy)."""
    yy, xx = np.mgrid[:size, :size] + 0.5  # pixel centres
    dist2 = (xx - cx) ** 2 + (yy - cy) ** 2
    name = SHAPE_CLASSES[label]
    if name == 'circle':
        return dist2 <= radius ** 2
    if name == 'ring':
        return (dist2 <= radius ** 2) & (dist2 >= (0.55 * radius) ** 2)
    if name == 'square':
        return _polygon_mask(_regular_points(cx, cy, [radius] * 4, angle), size)
    if name == 'triangle':
        return _polygon_mask(_regular_points(cx, cy, [radius * 1.15] * 3, angle), size)
    if name == 'star':
        return _polygon_mask(_regular_points(cx, cy, [radius * 1.1, radius * 0.48] * 5, angle),
                             size)
    raise ValueError(f'no shape for class {name!r}')


# -- textures -----------------------------------------------------------------------------------
def _texture(label: int, rng: np.random.Generator, size: int, cx: float, cy: float,
             radius: float) -> np.ndarray:
    """An HxWx3 float RGB texture of class ``label`` (painted where the mask is)."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    base = np.asarray(SHAPE_PALETTE[label], np.float32) * rng.uniform(0.85, 1.1)
    name = SHAPE_CLASSES[label]
    if name == 'square':  # diagonal stripes
        period = rng.uniform(4, 7)
        stripes = (np.floor((xx + yy) / period) % 2)[..., None]
        texture = base * (0.6 + 0.4 * stripes)
    elif name == 'ring':  # checker
        cell = int(rng.integers(3, 6))
        checker = ((xx // cell + yy // cell) % 2)[..., None]
        texture = base * (0.55 + 0.45 * checker)
    elif name == 'triangle':  # shading across the object
        angle = rng.uniform(0, 2 * np.pi)
        ramp = ((xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)) / max(radius, 1.0)
        texture = base * (0.85 + 0.2 * np.clip(ramp, -1, 1))[..., None]
    elif name == 'star':  # dots
        dots = ((xx % 5 < 2) & (yy % 5 < 2))[..., None]
        texture = np.where(dots, base * 0.55, base)
    else:  # circle: plain
        texture = np.broadcast_to(base, (size, size, 3))
    return texture + rng.normal(0, 8, (size, size, 3))


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth desaturated colour field + a random line texture + pixel noise."""
    grid = rng.uniform(60, 190, (4, 4, 1)) + rng.uniform(-25, 25, (4, 4, 3))
    field = cv2.resize(grid.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    angle, period = rng.uniform(0, np.pi), rng.uniform(6, 14)
    lines = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    field = field + (rng.uniform(5, 20) * lines)[..., None]
    return field + rng.normal(0, 12, (size, size, 3))


# -- scenes -------------------------------------------------------------------------------------
@dataclass
class _Placement:
    """An object painted into a scene being built."""
    label: int
    cx: float
    cy: float
    radius: float
    full_mask: np.ndarray  # bool HxW, the whole shape
    visible: np.ndarray  # bool HxW, what later objects left of it


def generate_scene(rng: np.random.Generator,
                   size: int = 128,
                   min_objects: int = 2,
                   max_objects: int = 5) -> tuple[np.ndarray, list[ToyObject]]:
    """One toy scene.

    Args:
        rng: the random generator; the scene depends on nothing else.
        size: width and height in pixels.
        min_objects, max_objects: how many objects to try to place (a placement that would hide
            too much of an earlier object is retried, and given up after a few tries).

    Returns:
        ``(image, objects)``: an HxWx3 uint8 RGB image and the objects in painting order, each
        with its visible mask (the masks do not overlap).
    """
    if size < 32:
        raise ValueError(f'size={size}: toy scenes need at least 32x32 pixels')
    image = _background(rng, size)
    placed: list[_Placement] = []
    for _ in range(int(rng.integers(min_objects, max_objects + 1))):
        for _attempt in range(20):
            label = int(rng.integers(len(SHAPE_CLASSES)))
            radius = rng.uniform(0.08, 0.2) * size
            if placed and rng.random() < 0.5:  # next to an earlier object: occlusion
                other = placed[int(rng.integers(len(placed)))]
                direction = rng.uniform(0, 2 * np.pi)
                distance = other.radius + radius * rng.uniform(0.2, 0.9)
                cx = other.cx + distance * np.cos(direction)
                cy = other.cy + distance * np.sin(direction)
            else:
                cx, cy = rng.uniform(0.1 * size, 0.9 * size, 2)
            if not (0.05 * size <= cx <= 0.95 * size and 0.05 * size <= cy <= 0.95 * size):
                continue
            mask = _shape_mask(label, cx, cy, radius, rng.uniform(0, 2 * np.pi), size)
            candidate = _Placement(label, cx, cy, radius, mask, mask)
            # what each object would still show with this one painted over them
            visible_after = [p.visible & ~mask for p in placed] + [mask]
            if all(v.sum() >= max(MIN_VISIBLE_FRACTION * p.full_mask.sum(), MIN_VISIBLE_PIXELS)
                   for v, p in zip(visible_after, placed + [candidate])):
                break
        else:
            continue  # no acceptable placement for this object
        texture = _texture(label, rng, size, cx, cy, radius)
        image[mask] = texture[mask]
        for placement, visible in zip(placed, visible_after):
            placement.visible = visible
        placed.append(candidate)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    objects = [ToyObject(p.label, p.visible, int(p.full_mask.sum())) for p in placed]
    return image, objects


# -- COCO annotations ---------------------------------------------------------------------------
def mask_to_polygons(mask: np.ndarray) -> list[list[float]] | None:
    """COCO polygons that pycocotools rasterises back to exactly ``mask``, or None.

    Contours are traced on the mask upsampled 2x, so they run a quarter pixel inside the pixel
    edges (through no pixel centre): rasterised, they give back the same pixels. A mask with a
    hole, or one whose polygons do not round-trip, has no polygon form: None.
    """
    height, width = mask.shape
    up = cv2.resize(mask.astype(np.uint8), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        points = (contour.reshape(-1, 2).astype(np.float64) + 0.5) / 2
        if len(points) < 3:
            return None
        polygons.append([round(float(v), 2) for v in points.ravel()])
    if not polygons:
        return None
    decoded = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, height,
                                                                        width)))
    return polygons if np.array_equal(decoded.astype(bool), mask) else None


def uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO's uncompressed RLE of a binary mask (how COCO stores crowd regions): the lengths of
    the runs of the column-major pixels, starting with a run of zeros."""
    flat = mask.ravel(order='F').astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0] + counts
    return dict(size=list(mask.shape), counts=counts)


def encode_annotation(mask: np.ndarray, form: str) -> dict[str, Any]:
    """``segmentation``, ``area`` and ``bbox`` of a COCO annotation of ``mask``.

    Args:
        form: ``'polygon'``, ``'rle'`` (uncompressed) or ``'compressed_rle'``.
    """
    height, width = mask.shape
    if form == 'polygon':
        segmentation: Any = mask_to_polygons(mask)
        if segmentation is None:
            raise ValueError('mask has no exact polygon form (a hole?); use RLE')
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif form == 'rle':
        segmentation = uncompressed_rle(mask)
        rle = mask_utils.frPyObjects(segmentation, height, width)
    elif form == 'compressed_rle':
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        segmentation = dict(size=list(rle['size']), counts=rle['counts'].decode('ascii'))
    else:
        raise ValueError(f"form={form!r}: use 'polygon', 'rle' or 'compressed_rle'")
    bbox = [float(v) for v in mask_utils.toBbox(rle)]
    return dict(segmentation=segmentation, area=float(mask_utils.area(rle)), bbox=bbox)


# -- writing ------------------------------------------------------------------------------------
def _write_image(path: str, rgb: np.ndarray) -> None:
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.endswith('.jpg') else []
    if not cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params):
        raise OSError(f'could not write image {path!r}')


def _write_coco_split(root: str, split: str, rng: np.random.Generator, num: int,
                      size: int) -> dict[str, int]:
    os.makedirs(osp.join(root, split))
    images, annotations = [], []
    forms = {'polygon': 0, 'rle': 0, 'compressed_rle': 0}
    occluded = 0
    for index in range(num):
        image, objects = generate_scene(rng, size)
        file_name = f'{index:06d}.png'
        _write_image(osp.join(root, split, file_name), image)
        image_id = index + 1
        images.append(dict(id=image_id, file_name=file_name, width=size, height=size))
        for obj in objects:
            polygon_ok = SHAPE_CLASSES[obj.label] != 'ring' and rng.random() >= RLE_FRACTION
            if polygon_ok and mask_to_polygons(obj.mask) is not None:
                form = 'polygon'
            else:  # alternate the two RLE forms
                form = 'rle' if (forms['rle'] + forms['compressed_rle']) % 2 == 0 \
                    else 'compressed_rle'
            forms[form] += 1
            annotations.append(dict(id=len(annotations) + 1, image_id=image_id,
                                    category_id=obj.label + 1, iscrowd=0,
                                    **encode_annotation(obj.mask, form)))
        occluded += sum(obj.occluded for obj in objects)
    coco = dict(info=dict(description='convnext_dense toy instance segmentation', version='1.0'),
                licenses=[], images=images, annotations=annotations,
                categories=[dict(id=i + 1, name=name, supercategory='shape')
                            for i, name in enumerate(SHAPE_CLASSES)])
    ann_dir = osp.join(root, 'annotations')
    os.makedirs(ann_dir, exist_ok=True)
    with open(osp.join(ann_dir, f'instances_{split}.json'), 'w', encoding='utf-8') as f:
        json.dump(coco, f)
    return dict(images=len(images), annotations=len(annotations), occluded=occluded, **forms)


def _write_ade_split(root: str, split: str, rng: np.random.Generator, num: int,
                     size: int) -> dict[str, int]:
    image_dir = osp.join(root, 'images', split)
    label_dir = osp.join(root, 'annotations', split)
    os.makedirs(image_dir)
    os.makedirs(label_dir)
    for index in range(num):
        image, objects = generate_scene(rng, size)
        labels = np.full((size, size), SEG_CLASSES.index(BACKGROUND_CLASS), np.uint8)
        for obj in objects:
            labels[obj.mask] = SEG_CLASSES.index(SHAPE_CLASSES[obj.label])
        name = f'toy_{split}_{index:06d}'
        _write_image(osp.join(image_dir, f'{name}.jpg'), image)
        if not cv2.imwrite(osp.join(label_dir, f'{name}.png'), labels):
            raise OSError(f'could not write label map {name}.png in {label_dir!r}')
    return dict(images=num)


def _check_destination(path: str, overwrite: bool) -> None:
    if osp.exists(path) and not osp.isdir(path):
        raise FileExistsError(f'output {path!r} exists and is not a folder')
    if osp.isdir(path) and os.listdir(path) and not overwrite:
        raise FileExistsError(f'output folder {path!r} exists and is not empty; remove it or '
                              'pass overwrite=True (--overwrite) to replace it')


def _move_into_place(built: str, destination: str) -> None:
    """Rename the finished ``built`` folder to ``destination``, replacing an old one."""
    old = None
    if osp.exists(destination):
        old = tempfile.mkdtemp(dir=osp.dirname(destination),
                               prefix=f'.{osp.basename(destination)}.old-')
        os.replace(destination, osp.join(old, 'data'))
    os.replace(built, destination)
    if old is not None:
        shutil.rmtree(old)


def make_toy_data(out: str = 'data',
                  num_train: int = 64,
                  num_val: int = 16,
                  size: int = 128,
                  seed: int = 0,
                  overwrite: bool = False) -> dict[str, Any]:
    """Write the toy COCO and ADE20K-style datasets under ``out``.

    Args:
        out: the folder that receives ``toy_coco/`` and ``toy_ade/`` (created if missing; other
            contents are left alone).
        num_train, num_val: images per split, of each dataset.
        size: image width and height in pixels.
        seed: the seed of everything; the same arguments give byte-identical files.
        overwrite: replace existing ``toy_coco/`` / ``toy_ade/`` folders; without it a non-empty
            one is an error.

    Returns:
        A summary: the dataset folders and, per split, image and annotation counts.
    """
    for name, value in (('num_train', num_train), ('num_val', num_val)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f'{name} must be a positive integer, got {value!r}')
    if isinstance(size, bool) or not isinstance(size, int) or size < 32:
        raise ValueError(f'size must be an integer >= 32, got {size!r}')
    coco_dir, ade_dir = osp.join(out, COCO_DIR), osp.join(out, ADE_DIR)
    for path in (coco_dir, ade_dir):
        _check_destination(path, overwrite)
    os.makedirs(out, exist_ok=True)
    # Independent streams: the COCO set does not change when the ADE20K set's sizes do.
    coco_seed, ade_seed = np.random.SeedSequence(seed).spawn(2)
    counts = dict(train=num_train, val=num_val)
    summary: dict[str, Any] = dict(coco=coco_dir, ade=ade_dir,
                                   coco_classes=list(SHAPE_CLASSES),
                                   ade_classes=list(SEG_CLASSES))
    tmp = tempfile.mkdtemp(dir=out, prefix='.toy_data.partial-')
    try:
        coco_rng = np.random.default_rng(coco_seed)
        built_coco = osp.join(tmp, COCO_DIR)
        for split, _ in SPLITS:
            summary[f'coco_{split}'] = _write_coco_split(built_coco, split, coco_rng,
                                                         counts[split], size)
        ade_rng = np.random.default_rng(ade_seed)
        built_ade = osp.join(tmp, ADE_DIR)
        for split, ade_split in SPLITS:
            summary[f'ade_{ade_split}'] = _write_ade_split(built_ade, ade_split, ade_rng,
                                                           counts[split], size)
        _move_into_place(built_coco, coco_dir)
        _move_into_place(built_ade, ade_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary
