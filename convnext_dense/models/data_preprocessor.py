"""Pad-to-bucket batching for detection, so that a backbone compiled for fixed shapes
(``torch.compile(dynamic=False)``) sees a handful of input shapes instead of one per batch.

mmdet's ``DetDataPreprocessor`` pads each batch to its largest image rounded up to
``pad_size_divisor``: under the paper's multi-scale COCO recipe (short side 480..800 in steps of
32, long side <= 1333, ``configs/mask_rcnn/_base_/coco_convnext_ms_crop_3x.py``) that is well
over a hundred distinct (H, W) batch shapes. A compiled backbone recompiles for each of them, and
past dynamo's ``recompile_limit`` (8 by default) runs eagerly without saying so; automatic dynamic
shapes are no way out (inductor fails on ConvNeXt with symbolic sizes in torch 2.14).
``BucketDetDataPreprocessor`` pads each batch to the smallest of a fixed set of (H, W) buckets
that holds it instead, and is otherwise mmdet's ``DetDataPreprocessor``.

Registered as a builder function, like ``FP32SingleRoIExtractor``, so that ``import
convnext_dense`` does not import mmdet's model zoo for mmseg users.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.registry import MODELS

# Buckets (H, W) for the paper's COCO recipe, every side a multiple of 32 (the FPN's largest
# stride). The main branch resizes to short side s in 480..800 and long side <= 1333; COCO's
# commonest images are 640x480 (4:3) and 640x427 (3:2), which become (s, 4s/3) and (s, 3s/2).
# Three landscape buckets, (704, 960), (800, 1120) and (800, 1344) (everything landscape up to
# the 1333 cap), were chosen among all (H, W) multiples of 32 as the triple of least mean
# overhead over those two shapes; the same three transposed hold portrait batches
# (AspectRatioBatchSampler groups images by orientation). The crop branch can turn a landscape
# image into a portrait crop after grouping, so a batch may mix orientations: (1120, 1120) holds
# two 4:3 images of any scale one of each orientation, (1344, 1344) anything within the cap.
# Mean padding overhead over mmdet's per-batch padding (``padding_overhead``, main branch, 2
# images per GPU, both short sides drawn uniformly from the 11 scales): 640x480 images +16.9%
# pixels (112,445 extra pixels per image), 640x427 images +19.0% (142,091).
COCO_MS_BUCKETS = ((704, 960), (800, 1120), (800, 1344),
                   (960, 704), (1120, 800), (1344, 800),
                   (1120, 1120), (1344, 1344))


def _padded(size: int, divisor: int) -> int:
    return math.ceil(size / divisor) * divisor


def smallest_bucket(height: int, width: int,
                    buckets: Iterable[tuple[int, int]]) -> tuple[int, int] | None:
    """The bucket of least area that holds a ``height`` x ``width`` batch (ties: the first
    given), or None when none does."""
    fitting = [tuple(b) for b in buckets if b[0] >= height and b[1] >= width]
    return min(fitting, key=lambda b: b[0] * b[1]) if fitting else None


def padding_overhead(batches: Iterable[Sequence[tuple[int, int]]],
                     buckets: Sequence[tuple[int, int]],
                     size_divisor: int = 32) -> tuple[float, float]:
    """Mean extra pixels per image of padding to ``buckets`` over padding to the batch maximum
    rounded up to ``size_divisor`` (mmdet's), and the same relative to mmdet's padded area.

    Args:
        batches: Each batch as its images' (H, W) after resizing.
    """
    extra = base = images = 0
    for batch in batches:
        height = _padded(max(h for h, _ in batch), size_divisor)
        width = _padded(max(w for _, w in batch), size_divisor)
        bucket = smallest_bucket(height, width, buckets) or (height, width)
        extra += (bucket[0] * bucket[1] - height * width) * len(batch)
        base += height * width * len(batch)
        images += len(batch)
    if not images:
        raise ValueError('batches is empty')
    return extra / images, extra / base


def _check_buckets(bucket_sizes, pad_size_divisor: int) -> tuple[tuple[int, int], ...]:
    buckets = tuple(tuple(bucket) for bucket in bucket_sizes)
    if not buckets:
        raise ValueError('bucket_sizes is empty; give at least one (H, W)')
    for bucket in buckets:
        if (len(bucket) != 2 or not all(isinstance(side, int) and side > 0 for side in bucket)
                or any(side % pad_size_divisor for side in bucket)):
            raise ValueError(f'bucket_sizes: {bucket} is not an (H, W) pair of positive '
                             f'multiples of pad_size_divisor={pad_size_divisor}')
    return buckets


@functools.cache
def _preprocessor_class() -> type:
    from mmdet.models.data_preprocessors import DetDataPreprocessor

    class BucketDetDataPreprocessor(DetDataPreprocessor):
        """mmdet's ``DetDataPreprocessor`` padding each batch to the smallest of
        ``bucket_sizes`` that holds it (see the module docstring for the buckets and why).

        Each image's ``pad_shape`` stays its own size rounded up to ``pad_size_divisor``, as
        mmdet sets it; ``batch_input_shape``, the batch tensor and, where mmdet pads them
        (``pad_mask``/``pad_seg`` in training), the masks and semantic maps take the bucket's
        size. A batch larger than every bucket is padded as mmdet pads it, with a log line:
        a backbone compiled for fixed shapes compiles again for it.

        Buckets should fit the recipe's sizes: more padding is more pixels computed, and on a
        ConvNeXt trained from scratch (stem bias initialised to zero) the stem's LayerNorm sees
        the same all-zero vector at every padded position, whose gradient it scales by
        1/sqrt(eps); with mmdet's own padding of a 128 + 96 px batch the toy Mask R-CNN's first
        gradient norm is 4.8e5 instead of 34, which ``clip_grad`` then scales every update
        down by. Pretrained stems (non-zero bias) do not show it.

        Args:
            bucket_sizes: (H, W) sizes, each a multiple of ``pad_size_divisor``. Defaults to
                ``COCO_MS_BUCKETS``.
            **kwargs: ``DetDataPreprocessor``'s arguments.
        """

        def __init__(self, bucket_sizes: Sequence[Sequence[int]] = COCO_MS_BUCKETS,
                     **kwargs) -> None:
            super().__init__(**kwargs)
            self.bucket_sizes = _check_buckets(bucket_sizes, self.pad_size_divisor)
            self._oversized: set[tuple[int, int]] = set()

        def forward(self, data: dict, training: bool = False) -> dict:
            data = super().forward(data, training)
            inputs, samples = data['inputs'], data['data_samples']
            height, width = inputs.shape[-2:]
            bucket = smallest_bucket(height, width, self.bucket_sizes)
            if bucket is None:
                if (height, width) not in self._oversized:
                    self._oversized.add((height, width))
                    print_log(f'BucketDetDataPreprocessor: a {height}x{width} batch is larger '
                              f'than every bucket of bucket_sizes={list(self.bucket_sizes)}; '
                              'padded to the size divisor, a compiled backbone compiles again '
                              'for it', logger='current')
                return data
            if bucket == (height, width):
                return data
            pad = (0, bucket[1] - width, 0, bucket[0] - height)
            data['inputs'] = F.pad(inputs, pad, 'constant', self.pad_value)
            if samples is not None:
                for sample in samples:
                    sample.set_metainfo({'batch_input_shape': bucket})
                # mmdet pads these to batch_input_shape; padding them again to the bucket
                # with the same values is the same as padding them once.
                if self.pad_mask and training:
                    self.pad_gt_masks(samples)
                if self.pad_seg and training:
                    self.pad_gt_sem_seg(samples)
            return data

    return BucketDetDataPreprocessor


@MODELS.register_module(name='BucketDetDataPreprocessor')
def build_bucket_det_data_preprocessor(**kwargs) -> torch.nn.Module:
    """mmdet's ``DetDataPreprocessor`` that pads each batch to a fixed size bucket
    (``bucket_sizes=[(H, W), ...]`` plus ``DetDataPreprocessor``'s arguments)."""
    return _preprocessor_class()(**kwargs)
