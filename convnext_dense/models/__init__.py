from .convnext import Block, ConvNeXt, Stage
from .data_preprocessor import COCO_MS_BUCKETS, build_bucket_det_data_preprocessor
from .decode_heads import CHUNKED_LOSS_HEADS, ChunkedSegLossMixin, with_chunked_loss
from .layers import GRN, LayerNorm2d
from .mask_head import build_device_target_mask_head, device_mask_target
from .roi_extractor import build_fp32_roi_extractor

__all__ = ['CHUNKED_LOSS_HEADS', 'COCO_MS_BUCKETS', 'Block', 'ChunkedSegLossMixin', 'ConvNeXt',
           'GRN', 'LayerNorm2d', 'Stage', 'build_bucket_det_data_preprocessor',
           'build_device_target_mask_head', 'build_fp32_roi_extractor', 'device_mask_target',
           'with_chunked_loss']
