"""Synthetic inputs for the tests and the benchmarks: one generator per task, reproducible from the
sizes and the seed alone. :func:`det_batch` and :func:`seg_batch` shape them as mmdet's and mmseg's
data loaders yield them (the speed benchmark's inputs); :mod:`.datasets` writes the same images as
COCO / ADE20K-style files (the installation check's training data)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch


class DetImage(NamedTuple):
    """One synthetic detection image: ``image`` uint8 (3, H, W), ``boxes`` float (N, 4) as
    (x0, y0, x1, y1) pixels, ``labels`` int64 (N, )."""
    image: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor


def det_images(count: int, height: int, width: int, instances: int, num_classes: int = 80,
               seed: int = 0) -> Iterator[DetImage]:
    """``count`` noise images, each with ``instances`` boxes of 5-30% of the image's sides and
    labels in ``0..num_classes-1``, drawn in turn from one generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(count):
        image = (torch.rand(3, height, width, generator=generator) * 255).byte()
        xy = torch.rand(instances, 2, generator=generator) * torch.tensor([width, height]) * .7
        wh = (torch.rand(instances, 2, generator=generator) * .25 + .05) * \
            torch.tensor([width, height])
        labels = torch.randint(0, num_classes, (instances, ), generator=generator)
        yield DetImage(image, torch.cat([xy, xy + wh], dim=1), labels)


def box_masks(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 (N, H, W) masks filling each box's pixels ``[y0:y1, x0:x1]`` (corners truncated)."""
    masks = torch.zeros(len(boxes), height, width, dtype=torch.uint8)
    for i, (x0, y0, x1, y1) in enumerate(boxes.long().tolist()):
        masks[i, y0:y1, x0:x1] = 1
    return masks


def seg_images(count: int, height: int, width: int, num_classes: int = 150,
               seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` (uint8 (3, H, W) noise image, int64 (H, W) label map in
    ``0..num_classes-1``) pairs, drawn in turn from one generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(count):
        image = (torch.rand(3, height, width, generator=generator) * 255).byte()
        yield image, torch.randint(0, num_classes, (height, width), generator=generator)


def det_batch(batch: int, height: int, width: int, instances: int, num_classes: int = 80):
    """A detection batch as mmdet's data loader yields it: the first ``batch`` images of
    :func:`det_images` with their boxes, box-shaped masks and labels."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    inputs, samples = [], []
    for image, boxes, labels in det_images(batch, height, width, instances, num_classes):
        inputs.append(image)
        sample = DetDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                             scale_factor=(1., 1.)))
        sample.gt_instances = InstanceData(
            bboxes=boxes, labels=labels,
            masks=BitmapMasks(box_masks(boxes, height, width).numpy(), height, width))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def seg_batch(batch: int, height: int, width: int, num_classes: int = 150):
    """A segmentation batch as mmseg's data loader yields it: the first ``batch`` images and
    label maps of :func:`seg_images`."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    inputs, samples = [], []
    for image, labels in seg_images(batch, height, width, num_classes):
        inputs.append(image)
        sample = SegDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                             pad_shape=(height, width)))
        sample.gt_sem_seg = PixelData(data=labels[None])
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)
