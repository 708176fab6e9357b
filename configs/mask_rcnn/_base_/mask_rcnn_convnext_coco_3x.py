# Mask R-CNN + FPN with a ConvNeXt backbone, paper recipe (see coco_convnext_ms_crop_3x.py).
# Size files set model.backbone (arch, drop path, weights), model.neck.in_channels, the lr and
# the decay settings.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    './coco_convnext_ms_crop_3x.py',
    './roi_ops.py',
]

model = dict(
    backbone=dict(
        _delete_=True,
        type='ConvNeXt',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.4,
        # only matters without pretrained weights; 1.0 as in both upstreams
        layer_scale_init_value=1.0,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://dl.fbaipublicfiles.com/convnext/convnext_tiny_1k_224.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]),
    # mmdet's FCNMaskHead with its training targets built on the device, without host round trips
    # (convnext_dense/models/mask_head.py); the same targets
    roi_head=dict(mask_head=dict(type='DeviceTargetFCNMaskHead')))
