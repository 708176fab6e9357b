"""Support for the tests and the benchmarks (synthetic inputs); nothing here is needed to train."""
from .batches import det_batch, seg_batch

__all__ = ['det_batch', 'seg_batch']
