"""Single-image inference and pictures of the predictions, for ``tools/demo.py``.

Builds the model as every tool does (:func:`convnext_dense.engine.build_model`: every tensor
of the checkpoint loaded) and uses mmdet's ``inference_detector`` with ``DetLocalVisualizer``
(masks and boxes) and mmseg's ``inference_model`` with ``SegLocalVisualizer`` (overlay), picked
by the config's ``default_scope``. The picture (:mod:`convnext_dense.visualization`)
shows the input, the ground truth when given (a COCO annotation file for detection, a label map
as ADE20K stores them for segmentation) and the prediction side by side, small images scaled up
(nearest neighbour) before the visualizers draw on them, so that boxes, outlines and label texts
are drawn at the size they are seen at.
"""
from __future__ import annotations

import inspect
import os.path as osp
from collections.abc import Sequence

import cv2
import mmcv
import numpy as np
import torch
from mmengine.structures import InstanceData, PixelData
from pycocotools import mask as mask_utils

from .config import load_config
from .engine import adapt_to_cpu, build_model
from .evaluation import check_coco_annotation
from .ops.roi_ops import set_roi_ops
from .visualization import (
    Picture,
    compose,
    label_outlines,
    legend_classes,
    scale_factor,
    upscale,
)


def read_image(image: str) -> np.ndarray:
    """``image`` as an RGB array, or an error naming the file.

    mmcv's ``imread(..., channel_order='rgb')`` hands what OpenCV could not decode (``None``) to
    ``cv2.cvtColor``, whose assertion names neither the file nor the reason.
    """
    if not osp.exists(image):
        raise FileNotFoundError(f'image {image!r} does not exist')
    if not osp.isfile(image):
        raise IsADirectoryError(f'image {image!r} is a folder; expected an image file')
    try:
        bgr = mmcv.imread(image)
    except cv2.error:  # an empty file
        bgr = None
    if bgr is None:
        raise ValueError(f'image {image!r} ({osp.getsize(image)} bytes) could not be read as '
                         'an image; expected a file OpenCV decodes (JPEG, PNG, BMP, TIFF, '
                         'WebP, ...)')
    return mmcv.bgr2rgb(bgr)


DRAWING_DPI = 180  # see _detection_panels
LINE_WIDTH = 1.5  # points: 3.75 px at DRAWING_DPI
OUTLINE_COLOR = (255, 255, 255)


def _palette(meta: dict) -> list[tuple[int, int, int]]:
    """One RGB colour per class: the meta's palette, or, where it has none (or too few), the
    seeded random colours mmdet's and mmseg's visualizers fall back to, fixed here once so that
    the panels and the legend agree."""
    classes, palette = meta['classes'], meta.get('palette')
    if palette is None or len(palette) < len(classes):
        palette = np.random.RandomState(42).randint(0, 256, size=(len(classes), 3))
    return [tuple(int(c) for c in colour) for colour in palette[:len(classes)]]


def _reduce_zero_label(cfg, datasets) -> bool:
    """Whether the config's test set reads label maps as ADE20K's (0 = "other", ignored; class
    ``k`` stored as ``k + 1``): its ``LoadAnnotations``' setting, else its dataset's, else the
    dataset class's default (``ADE20KDataset``: True)."""
    dataset = cfg.test_dataloader.dataset
    for transform in dataset.get('pipeline', None) or []:
        if str(transform.get('type', '')).endswith('LoadAnnotations') \
                and transform.get('reduce_zero_label') is not None:
            return bool(transform['reduce_zero_label'])
    if dataset.get('reduce_zero_label') is not None:
        return bool(dataset.reduce_zero_label)
    parameter = inspect.signature(datasets.get(dataset.type).__init__).parameters.get(
        'reduce_zero_label')
    if parameter is None or parameter.default is inspect.Parameter.empty:
        return False
    return bool(parameter.default)


def read_label_map(label_file: str, image_shape: tuple[int, int],
                   reduce_zero_label: bool) -> np.ndarray:
    """A semantic-segmentation ground truth (a single-channel PNG of label ids, as ADE20K and
    the toy set store them) as mmseg's ``LoadAnnotations`` reads it for evaluation: HxW uint8
    labels, 255 where ignored.

    Raises:
        FileNotFoundError: no such file.
        ValueError: it is no image, not single-channel, or not of ``image_shape`` (H, W).
    """
    from mmseg.datasets.transforms import LoadAnnotations
    if not osp.isfile(label_file):
        raise FileNotFoundError(f'ground-truth label map {label_file!r} does not exist')
    results = dict(seg_map_path=label_file, reduce_zero_label=reduce_zero_label, seg_fields=[])
    try:
        # reduce_zero_label comes from `results`, as a dataset passes it
        labels = LoadAnnotations()(results)['gt_seg_map']
    except (OSError, ValueError, cv2.error) as error:
        raise ValueError(f'ground-truth label map {label_file!r} could not be read as an '
                         f'image: {error}') from None
    if labels.ndim != 2:
        raise ValueError(f'ground-truth label map {label_file!r} has shape {labels.shape}; '
                         'expected a single-channel image of label ids (as ADE20K stores them)')
    if labels.shape != tuple(image_shape):
        raise ValueError(f'ground-truth label map {label_file!r} is '
                         f'{labels.shape[1]}x{labels.shape[0]}, the image '
                         f'{image_shape[1]}x{image_shape[0]}')
    return labels


def read_coco_instances(ann_file: str, image: str, image_shape: tuple[int, int],
                        image_id: int | None = None) -> tuple[dict, list[dict]]:
    """The record of ``image`` in the COCO annotation file ``ann_file`` and its annotations.

    The image is found by ``image_id`` if given, else by its base name (among several of
    that name, the one whose ``file_name`` the path of ``image`` ends with). Crowd annotations
    are left out, as mmdet's ``CocoDataset`` ignores them.

    Returns:
        ``(image record, [dict(category=NAME, bbox=[x1, y1, x2, y2], segmentation=...)])``,
        ``segmentation`` being None for an annotation without one.

    Raises:
        FileNotFoundError, ValueError: the file is missing or not COCO, the image is not in it
            (or ambiguous), or its recorded size is not that of ``image``.
    """
    coco = check_coco_annotation(ann_file, where='ground truth')
    if image_id is not None:
        records = [r for r in coco['images'] if r.get('id') == image_id]
        if not records:
            raise ValueError(f'ground truth {ann_file!r} has no image with id {image_id!r}')
    else:
        name = osp.basename(image)
        records = [r for r in coco['images'] if osp.basename(str(r.get('file_name'))) == name]
        if len(records) > 1:
            path = osp.normpath(osp.abspath(image))
            records = [r for r in records
                       if path.endswith(osp.sep + osp.normpath(str(r['file_name'])))] or records
        if not records:
            known = ', '.join(repr(r.get('file_name')) for r in coco['images'][:3])
            raise ValueError(f'ground truth {ann_file!r} has no image named {name!r} (its '
                             f'images are named like {known}); give the image id instead')
        if len(records) > 1:
            ids = [r.get('id') for r in records]
            raise ValueError(f'ground truth {ann_file!r} has {len(records)} images named '
                             f'{name!r} (ids {ids}); give the image id to choose one')
    record = records[0]
    recorded = (record.get('height'), record.get('width'))
    if recorded != tuple(image_shape):
        raise ValueError(f'ground truth {ann_file!r}: image id {record.get("id")} '
                         f'({record.get("file_name")!r}) is recorded as '
                         f'{recorded[1]}x{recorded[0]}, but {image!r} is '
                         f'{image_shape[1]}x{image_shape[0]}')
    names = {c['id']: c['name'] for c in coco['categories']}
    annotations = []
    for ann in coco['annotations']:
        if ann['image_id'] != record['id'] or ann.get('iscrowd', 0):
            continue
        x, y, w, h = ann['bbox']
        annotations.append(dict(category=names[ann['category_id']], bbox=[x, y, x + w, y + h],
                                segmentation=ann.get('segmentation') or None))
    return record, annotations


def _coco_mask(segmentation, height: int, width: int) -> np.ndarray:
    if isinstance(segmentation, list):  # polygons
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get('counts'), list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle).astype(bool)


def coco_gt_instances(annotations: list[dict], classes: Sequence[str],
                      image_shape: tuple[int, int], ann_file: str = 'the ground truth'
                      ) -> InstanceData:
    """Annotations from :func:`read_coco_instances` as mmdet's ``gt_instances`` (boxes, labels
    by class name as ``CocoDataset`` maps them, and masks where every annotation has one)."""
    labels = []
    for ann in annotations:
        if ann['category'] not in classes:
            raise ValueError(f'{ann_file!r}: category {ann["category"]!r} is not among the '
                             f"model's classes {tuple(classes)}")
        labels.append(list(classes).index(ann['category']))
    instances = InstanceData()
    instances.bboxes = torch.tensor([ann['bbox'] for ann in annotations],
                                    dtype=torch.float32).reshape(-1, 4)
    instances.labels = torch.tensor(labels, dtype=torch.long)
    if annotations and all(ann['segmentation'] is not None for ann in annotations):
        instances.masks = np.stack([_coco_mask(ann['segmentation'], *image_shape)
                                    for ann in annotations])
    return instances


def _scaled_instances(instances: InstanceData, scale: int) -> InstanceData:
    """``instances`` in the coordinates of their image scaled up ``scale`` times."""
    scaled = InstanceData()
    scaled.bboxes = instances.bboxes.float() * scale
    scaled.labels = instances.labels
    if 'scores' in instances:
        scaled.scores = instances.scores
    if 'masks' in instances:
        masks = instances.masks
        if isinstance(masks, torch.Tensor):
            masks = masks.numpy()
        elif hasattr(masks, 'to_ndarray'):  # mmdet's BitmapMasks / PolygonMasks
            masks = masks.to_ndarray()
        scaled.masks = np.stack([upscale(mask.astype(bool), scale) for mask in masks]) \
            if len(masks) else np.zeros((0, *(s * scale for s in masks.shape[1:])), bool)
    return scaled


def _input_title(shape: tuple[int, ...], scale: int) -> str:
    size = f'input {shape[1]}x{shape[0]}'
    return f'{size} (shown x{scale})' if scale > 1 else size


def _detection_panels(result, rgb: np.ndarray, meta: dict, gt_instances: InstanceData | None,
                      score_thr: float) -> tuple[list[tuple[str, np.ndarray]], set[int]]:
    from mmdet.registry import VISUALIZERS
    from mmdet.structures import DetDataSample
    scale = scale_factor(rgb.shape[0])
    big = upscale(rgb, scale)
    # A new visualizer per picture: VISUALIZERS.build would hand back the first one of its
    # name (mmengine's ManagerMixin), with the settings and image of an earlier call.
    visualizer = VISUALIZERS.get('DetLocalVisualizer')(name='demo_det', vis_backends=[],
                                                       line_width=LINE_WIDTH)
    # DetLocalVisualizer sizes label texts in points, 6 for any box under 30000 px^2 (all of
    # a toy image's, even scaled up): at matplotlib's 100 dpi that is 8 px, too small to read.
    # mmengine's Visualizer keeps its figure's dpi in `dpi` (set_image sizes the figure by
    # it); a higher one draws the same picture with larger texts and thicker lines.
    visualizer.fig_save.set_dpi(DRAWING_DPI)
    visualizer.dpi = DRAWING_DPI
    visualizer.dataset_meta = meta
    panels = [(_input_title(rgb.shape, scale), big)]
    present: set[int] = set()
    if gt_instances is not None:
        visualizer.add_datasample('ground truth', big,
                                  DetDataSample(gt_instances=_scaled_instances(gt_instances,
                                                                               scale)),
                                  draw_gt=True, draw_pred=False, show=False)
        panels.append((f'ground truth: {len(gt_instances)} objects', visualizer.get_image()))
        present |= {int(label) for label in gt_instances.labels}
    predicted = result.pred_instances.cpu()
    # mmdet's own threshold test (DetLocalVisualizer keeps scores > pred_score_thr)
    predicted = predicted[predicted.scores > score_thr]
    visualizer.add_datasample('prediction', big,
                              DetDataSample(pred_instances=_scaled_instances(predicted, scale)),
                              draw_gt=False, draw_pred=True, show=False,
                              pred_score_thr=score_thr)
    panels.append((f'prediction: {len(predicted)} with score > {score_thr:g}',
                   visualizer.get_image()))
    present |= {int(label) for label in predicted.labels}
    return panels, present


def _segmentation_panels(result, rgb: np.ndarray, meta: dict, gt_labels: np.ndarray | None
                         ) -> tuple[list[tuple[str, np.ndarray]], set[int]]:
    from mmseg.registry import VISUALIZERS
    from mmseg.structures import SegDataSample
    scale = scale_factor(rgb.shape[0])
    big = upscale(rgb, scale)
    visualizer = VISUALIZERS.get('SegLocalVisualizer')(name='demo_seg', vis_backends=[],
                                                       alpha=0.5)
    visualizer.dataset_meta = meta
    num_classes = len(meta['classes'])
    panels = [(_input_title(rgb.shape, scale), big)]
    present: set[int] = set()
    maps = [] if gt_labels is None else [('ground truth', gt_labels)]
    maps.append(('prediction', result.pred_sem_seg.cpu().data[0].numpy()))
    for title, labels in maps:
        field = 'gt_sem_seg' if title == 'ground truth' else 'pred_sem_seg'
        data = torch.from_numpy(upscale(labels, scale).astype(np.int64))[None]
        sample = SegDataSample(**{field: PixelData(data=data)})
        # class names come from the legend: SegLocalVisualizer's labels are blended into the
        # overlay at half opacity
        visualizer.add_datasample(title, big, sample, draw_gt=title == 'ground truth',
                                  draw_pred=title == 'prediction', show=False,
                                  with_labels=False)
        drawn = visualizer.get_image().copy()
        # SegLocalVisualizer blends unlabelled (ignored) pixels with black: show them as they
        # are, so that only the labelled ones are tinted; and outline each region in white, as
        # DetLocalVisualizer outlines masks
        big_labels = data[0].numpy()
        unlabelled = big_labels >= num_classes
        drawn[unlabelled] = big[unlabelled]
        drawn[label_outlines(big_labels, num_classes)] = OUTLINE_COLOR
        panels.append((title, drawn))
        present |= {int(label) for label in np.unique(labels) if label < num_classes}
    return panels, present


def draw_prediction(image: str,
                    config: str,
                    checkpoint: str,
                    out_file: str,
                    device: str = 'cpu',
                    score_thr: float = 0.3,
                    cfg_options: dict | None = None,
                    gt: str | None = None,
                    gt_id: int | None = None) -> Picture:
    """Predict on ``image`` and save a picture of it to ``out_file`` (PNG, JPG): the input,
    the ground truth (if ``gt`` is given) and the prediction side by side, with titles and a
    legend of the classes (see :func:`convnext_dense.visualization.compose`).

    Args:
        gt: the ground truth of ``image``. Detection: a COCO annotation file holding the image
            (found by ``gt_id``, else by file name); segmentation: its label map, a
            single-channel PNG as ADE20K stores them (read with the config's
            ``reduce_zero_label``).
        gt_id: the image's id in a COCO ``gt``.

    Returns:
        The composed :class:`~convnext_dense.visualization.Picture`, as written.
    """
    rgb = read_image(image)
    shape = rgb.shape[:2]
    if gt is not None and not osp.isfile(gt):
        raise FileNotFoundError(f'ground truth {gt!r} does not exist')
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint file {checkpoint!r} does not exist')
    cfg = load_config(config, cfg_options)
    set_roi_ops(cfg.get('roi_ops', 'auto'))  # RoIAlign/NMS kernels (convnext_dense.ops.roi_ops)
    if device == 'cpu':
        adapt_to_cpu(cfg)
    if cfg.default_scope == 'mmdet':
        from mmdet.apis import inference_detector
        annotations = None if gt is None else read_coco_instances(gt, image, shape, gt_id)[1]
        # mmdet's init_detector would load the checkpoint with strict=False (and mmseg's
        # init_model fails on a file without 'meta'); build_model checks every tensor.
        model = build_model(cfg, checkpoint, device).eval()
        classes = tuple(model.dataset_meta['classes'])
        palette = _palette(model.dataset_meta)
        gt_instances = None if annotations is None \
            else coco_gt_instances(annotations, classes, shape, gt)
        result = inference_detector(model, image)
        panels, present = _detection_panels(result, rgb, dict(classes=classes, palette=palette),
                                            gt_instances, score_thr)
    else:
        from mmseg.apis import inference_model
        from mmseg.registry import DATASETS
        if gt_id is not None:
            raise ValueError(f'gt_id={gt_id!r} names an image of a COCO annotation file; a '
                             'segmentation ground truth is a label map of the one image')
        gt_labels = None if gt is None \
            else read_label_map(gt, shape, _reduce_zero_label(cfg, DATASETS))
        model = build_model(cfg, checkpoint, device).eval()
        classes = tuple(model.dataset_meta['classes'])
        palette = _palette(model.dataset_meta)
        result = inference_model(model, image)
        panels, present = _segmentation_panels(result, rgb,
                                               dict(classes=classes, palette=palette),
                                               gt_labels)
    picture = compose(panels, classes, palette, legend_classes(len(classes), present))
    if not mmcv.imwrite(mmcv.rgb2bgr(picture.image), out_file):
        raise OSError(f'could not write the picture to {out_file!r}')
    return picture
