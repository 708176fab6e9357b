"""Support for the tests, the benchmarks and the installation check (synthetic inputs and
datasets); nothing here is needed to train."""
from .batches import DetImage, box_masks, det_batch, det_images, seg_batch, seg_images

__all__ = ['DetImage', 'box_masks', 'det_batch', 'det_images', 'seg_batch', 'seg_images']
