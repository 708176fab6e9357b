"""The layout of a demo picture: panels side by side (input, ground truth, prediction), each
scaled up by nearest neighbour so that a small image (the toy sets' 128x128) is at least
:data:`MIN_PANEL_HEIGHT` pixels tall, a title over each panel and a class legend (colour swatch
and name) under them.

The overlays in the panels are drawn by mmdet's ``DetLocalVisualizer`` and mmseg's
``SegLocalVisualizer`` (:mod:`convnext_dense.apis`); this module only lays finished panels out
with OpenCV, on plain arrays, so it is tested without a model.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

MIN_PANEL_HEIGHT = 384
# More classes than this (ADE20K's 150) would bury the picture under its legend: then the
# legend lists only the classes present in the ground truth or the prediction.
MAX_LEGEND_CLASSES = 24

BACKGROUND = (255, 255, 255)
TEXT_COLOR = (20, 20, 20)
FONT = cv2.FONT_HERSHEY_SIMPLEX
MARGIN = 12  # around the picture and between panels
TITLE_HEIGHT = 34
TITLE_SCALE = 0.7
LEGEND_ROW_HEIGHT = 28
LEGEND_SCALE = 0.55
SWATCH = 18
SWATCH_GAP = 8  # between a swatch and its name
ENTRY_GAP = 22  # between one legend entry and the next


@dataclass(frozen=True)
class Box:
    """A rectangle of the picture, in pixels."""

    x: int
    y: int
    width: int
    height: int

    def crop(self, image: np.ndarray) -> np.ndarray:
        return image[self.y:self.y + self.height, self.x:self.x + self.width]


@dataclass
class Picture:
    """A composed picture and where its parts are."""

    image: np.ndarray  # HxWx3 uint8, RGB
    scale: int  # the nearest-neighbour factor the panels were scaled up by
    panels: list[tuple[str, Box]]  # (title, where the panel's pixels are)
    legend: list[tuple[str, Box]]  # (class name, where its colour swatch is)


def scale_factor(height: int, min_height: int = MIN_PANEL_HEIGHT) -> int:
    """The smallest integer factor that makes ``height`` pixels at least ``min_height`` (1 for
    an image that is tall enough: pictures are never scaled down)."""
    if isinstance(height, bool) or not isinstance(height, (int, np.integer)) or height < 1:
        raise ValueError(f'height={height!r}: expected a positive number of pixels')
    return max(1, math.ceil(min_height / height))


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """``image`` (HxW or HxWxC) with each pixel repeated into a ``factor`` x ``factor`` block:
    nearest neighbour, so label maps keep their labels and pixels stay visible as squares."""
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f'factor={factor!r}: expected a positive integer')
    if image.ndim not in (2, 3):
        raise ValueError(f'image of shape {image.shape}: expected HxW or HxWxC')
    if factor == 1:
        return image
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def label_outlines(labels: np.ndarray, num_classes: int, width: int = 2) -> np.ndarray:
    """The rim, ``width`` pixels wide, of each region of one class in the label map
    ``labels`` (HxW), inside the region: a bool HxW mask. Labels ``>= num_classes`` (ignored)
    get none, and the image's border is no edge.

    Drawn over a segmentation overlay, the rims tell regions apart where the overlay's tint
    does not (an object painted in its class colour, as in the toy set, looks the same tinted).
    """
    if labels.ndim != 2:
        raise ValueError(f'labels of shape {labels.shape}: expected an HxW label map')
    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    outlines = np.zeros(labels.shape, bool)
    for label in np.unique(labels):
        if label >= num_classes:
            continue
        region = (labels == label).astype(np.uint8)
        # erode's default border counts as inside: regions touching the border keep no rim there
        outlines |= (region > 0) & (cv2.erode(region, kernel) == 0)
    return outlines


def legend_classes(num_classes: int, present: Sequence[int] | None = None) -> list[int]:
    """Indices of the classes the legend lists: all of them, or, beyond
    :data:`MAX_LEGEND_CLASSES`, those in ``present`` (sorted; all if ``present`` is None)."""
    if num_classes <= MAX_LEGEND_CLASSES or present is None:
        return list(range(num_classes))
    return sorted({int(i) for i in present if 0 <= int(i) < num_classes})


def _fit_text(text: str, max_width: int, scale: float,
              thickness: int) -> tuple[str, float, tuple[int, int]]:
    """``text`` at the largest scale down to half of ``scale`` that fits ``max_width`` pixels,
    shortened with '...' if even that does not fit; returns (text, scale, (width, height))."""
    for step in range(6):
        size_scale = scale * (1 - 0.1 * step)
        (width, height), _ = cv2.getTextSize(text, FONT, size_scale, thickness)
        if width <= max_width:
            return text, size_scale, (width, height)
    while len(text) > 1:
        text = text[:-4] + '...' if len(text) > 4 else text[:-1]
        (width, height), _ = cv2.getTextSize(text, FONT, size_scale, thickness)
        if width <= max_width:
            break
    return text, size_scale, (width, height)


def _legend_layout(names: Sequence[str], width: int) -> tuple[list[tuple[int, int, str, float]],
                                                               int]:
    """Where each legend entry goes, flowing left to right and wrapping at ``width``:
    ([(x, row, name, scale)], number of rows)."""
    entries = []
    x, row = MARGIN, 0
    for name in names:
        text, text_scale, (text_width, _) = _fit_text(
            name, width - 2 * MARGIN - SWATCH - SWATCH_GAP, LEGEND_SCALE, 1)
        entry_width = SWATCH + SWATCH_GAP + text_width
        if x > MARGIN and x + entry_width > width - MARGIN:
            x, row = MARGIN, row + 1
        entries.append((x, row, text, text_scale))
        x += entry_width + ENTRY_GAP
    return entries, (row + 1 if entries else 0)


def compose(panels: Sequence[tuple[str, np.ndarray]],
            classes: Sequence[str],
            palette: Sequence[Sequence[int]],
            shown: Sequence[int] | None = None,
            min_height: int = MIN_PANEL_HEIGHT) -> Picture:
    """Lay ``panels`` out side by side, with their titles and a legend of ``classes``.

    Args:
        panels: ``(title, image)`` pairs, left to right; the images HxWx3 uint8 RGB, all of one
            size. Panels shorter than ``min_height`` are scaled up (nearest neighbour) by
            :func:`scale_factor`.
        classes: class names, indexed by label.
        palette: an RGB colour per class.
        shown: the labels the legend lists, in this order (default: every class).
        min_height: the least height of a panel in the picture.

    Returns:
        The :class:`Picture`: the RGB image, the scale and where each panel and swatch is.
    """
    if not panels:
        raise ValueError('panels is empty: give at least one (title, image) pair')
    shapes = {image.shape for _, image in panels}
    if len(shapes) != 1:
        raise ValueError(f'panels have different shapes {sorted(shapes)}: they must be of one '
                         'size')
    shape = shapes.pop()
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f'panel images of shape {shape}: expected HxWx3 RGB')
    if palette is None or len(palette) < len(classes):
        count = 'no palette' if palette is None else f'{len(palette)} palette colours'
        raise ValueError(f'{count} for {len(classes)} classes: each class needs a colour')
    shown = list(range(len(classes))) if shown is None else [int(i) for i in shown]
    outside = [i for i in shown if not 0 <= i < len(classes)]
    if outside:
        raise ValueError(f'shown={outside} are not labels of the {len(classes)} classes')

    scale = scale_factor(shape[0], min_height)
    panel_height, panel_width = shape[0] * scale, shape[1] * scale
    width = 2 * MARGIN + len(panels) * panel_width + (len(panels) - 1) * MARGIN
    names = [str(classes[i]) for i in shown]
    entries, rows = _legend_layout(names, width)
    legend_top = MARGIN + TITLE_HEIGHT + panel_height + MARGIN
    height = legend_top + rows * LEGEND_ROW_HEIGHT + (MARGIN if rows else 0)
    picture = np.full((height, width, 3), BACKGROUND, np.uint8)

    placed = []
    for index, (title, image) in enumerate(panels):
        box = Box(MARGIN + index * (panel_width + MARGIN), MARGIN + TITLE_HEIGHT, panel_width,
                  panel_height)
        box.crop(picture)[...] = upscale(np.asarray(image, np.uint8), scale)
        text, text_scale, (text_width, text_height) = _fit_text(title, panel_width, TITLE_SCALE,
                                                                2)
        origin = (box.x + (panel_width - text_width) // 2,
                  MARGIN + (TITLE_HEIGHT + text_height) // 2)
        cv2.putText(picture, text, origin, FONT, text_scale, TEXT_COLOR, 2, cv2.LINE_AA)
        placed.append((title, box))

    legend = []
    for label, (x, row, text, text_scale) in zip(shown, entries):
        top = legend_top + row * LEGEND_ROW_HEIGHT + (LEGEND_ROW_HEIGHT - SWATCH) // 2
        swatch = Box(x, top, SWATCH, SWATCH)
        colour = tuple(int(c) for c in palette[label])
        cv2.rectangle(picture, (x - 1, top - 1), (x + SWATCH, top + SWATCH), TEXT_COLOR, 1)
        swatch.crop(picture)[...] = colour
        (_, text_height), _ = cv2.getTextSize(text, FONT, text_scale, 1)
        cv2.putText(picture, text, (x + SWATCH + SWATCH_GAP, top + (SWATCH + text_height) // 2),
                    FONT, text_scale, TEXT_COLOR, 1, cv2.LINE_AA)
        legend.append((str(classes[label]), swatch))
    return Picture(picture, scale, placed, legend)
