"""Single-image inference and pictures of the predictions, for ``tools/demo.py``.

Uses mmdet's ``init_detector``/``inference_detector`` with ``DetLocalVisualizer`` (masks and
boxes) and mmseg's ``init_model``/``inference_model`` with ``SegLocalVisualizer`` (overlay),
picked by the config's ``default_scope``.
"""
from __future__ import annotations

import os
import os.path as osp
import warnings

import cv2
import mmcv
import numpy as np

from .checkpoint import load_model_checkpoint
from .engine.launch import adapt_to_cpu, load_config


def _dataset_meta(meta: dict, cfg, datasets) -> dict:
    """Class names and palette to draw with: the checkpoint's (mmengine's ``dataset_meta``, or
    mmcv 1.x's ``CLASSES``/``PALETTE``), else the test dataset's of the config."""
    if meta.get('dataset_meta'):
        return dict(meta['dataset_meta'])
    if meta.get('CLASSES'):
        return dict(classes=tuple(meta['CLASSES']), palette=meta.get('PALETTE'))
    dataset = cfg.test_dataloader.dataset
    if dataset.get('metainfo'):
        return dict(dataset.metainfo)
    return dict(datasets.get(dataset.type).METAINFO)


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


def draw_prediction(image: str,
                    config: str,
                    checkpoint: str,
                    out_file: str,
                    device: str = 'cpu',
                    score_thr: float = 0.3,
                    cfg_options: dict | None = None) -> np.ndarray:
    """Predict on ``image`` and save the drawn prediction to ``out_file`` (PNG, JPG).

    Returns the drawn RGB image.
    """
    rgb = read_image(image)
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint file {checkpoint!r} does not exist')
    cfg = load_config(config, cfg_options)
    if device == 'cpu':
        adapt_to_cpu(cfg)
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    if cfg.default_scope == 'mmdet':
        from mmdet.apis import inference_detector, init_detector
        from mmdet.registry import DATASETS, VISUALIZERS
        # Built without the checkpoint: mmdet/mmseg load it with strict=False (and mmseg fails
        # on a file without 'meta'); load_model_checkpoint checks every tensor.
        with warnings.catch_warnings():  # "checkpoint is None, use COCO classes": not so here
            warnings.simplefilter('ignore')
            model = init_detector(cfg, None, device=device)
        _, meta = load_model_checkpoint(model, checkpoint)
        model.dataset_meta = _dataset_meta(meta, cfg, DATASETS)
        result = inference_detector(model, image)
        visualizer = VISUALIZERS.build(dict(type='DetLocalVisualizer', name='demo_det',
                                            vis_backends=[]))
        visualizer.dataset_meta = model.dataset_meta
        visualizer.add_datasample('prediction', rgb, result, draw_gt=False, show=False,
                                  pred_score_thr=score_thr, out_file=out_file)
    else:
        from mmseg.apis import inference_model, init_model
        from mmseg.registry import DATASETS, VISUALIZERS
        model = init_model(cfg, None, device=device)
        _, meta = load_model_checkpoint(model, checkpoint)
        model.dataset_meta = _dataset_meta(meta, cfg, DATASETS)
        result = inference_model(model, image)
        visualizer = VISUALIZERS.build(dict(type='SegLocalVisualizer', name='demo_seg',
                                            vis_backends=[], alpha=0.5))
        visualizer.dataset_meta = dict(classes=model.dataset_meta['classes'],
                                       palette=model.dataset_meta['palette'])
        visualizer.add_datasample('prediction', rgb, result, draw_gt=False, show=False,
                                  with_labels=False, out_file=out_file)
    return visualizer.get_image()
