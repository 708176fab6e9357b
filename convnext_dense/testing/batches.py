"""Synthetic batches for the tests and the benchmarks: one builder per task, shaped as mmdet's and
mmseg's data loaders yield them, reproducible from the sizes alone."""
from __future__ import annotations

import torch


def det_batch(batch: int, height: int, width: int, instances: int, num_classes: int = 80):
    """A detection batch as mmdet's data loader yields it: uint8 images and ground truth with
    ``instances`` boxes, box-shaped masks and labels in ``0..num_classes-1``, the same for a
    given size (fixed seed)."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    generator = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append((torch.rand(3, height, width, generator=generator) * 255).byte())
        xy = torch.rand(instances, 2, generator=generator) * torch.tensor([width, height]) * .7
        wh = (torch.rand(instances, 2, generator=generator) * .25 + .05) * \
            torch.tensor([width, height])
        boxes = torch.cat([xy, xy + wh], dim=1)
        masks = torch.zeros(instances, height, width, dtype=torch.uint8)
        for i, (x0, y0, x1, y1) in enumerate(boxes.long().tolist()):
            masks[i, y0:y1, x0:x1] = 1
        sample = DetDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                             scale_factor=(1., 1.)))
        sample.gt_instances = InstanceData(
            bboxes=boxes,
            labels=torch.randint(0, num_classes, (instances, ), generator=generator),
            masks=BitmapMasks(masks.numpy(), height, width))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def seg_batch(batch: int, height: int, width: int, num_classes: int = 150):
    """A segmentation batch as mmseg's data loader yields it: uint8 images and label maps in
    ``0..num_classes-1``, the same for a given size (fixed seed)."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    generator = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append((torch.rand(3, height, width, generator=generator) * 255).byte())
        sample = SegDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                             pad_shape=(height, width)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, height, width),
                                                         generator=generator))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)
