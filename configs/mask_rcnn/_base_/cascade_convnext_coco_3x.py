# Cascade Mask R-CNN + FPN with a ConvNeXt backbone, paper recipe (see
# coco_convnext_ms_crop_3x.py): each of the three box heads has 4 shared 3x3 convs (SyncBN) and
# one fc ("4conv1fc"), class-specific regression of decoded boxes with a GIoU loss of weight 10.
# Size files set model.backbone (arch, drop path, weights), model.neck.in_channels, the lr and
# the decay settings.
_base_ = [
    'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py',
    './coco_convnext_ms_crop_3x.py',
    './roi_ops.py',
]


def _bbox_head(target_stds):
    return dict(
        type='ConvFCBBoxHead',
        num_shared_convs=4,
        num_shared_fcs=1,
        in_channels=256,
        conv_out_channels=256,
        fc_out_channels=1024,
        roi_feat_size=7,
        num_classes=80,
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[0., 0., 0., 0.],
            target_stds=target_stds),
        reg_class_agnostic=False,
        reg_decoded_bbox=True,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=10.0))


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
    roi_head=dict(
        bbox_head=[
            _bbox_head([0.1, 0.1, 0.2, 0.2]),
            _bbox_head([0.05, 0.05, 0.1, 0.1]),
            _bbox_head([0.033, 0.033, 0.067, 0.067]),
        ],
        # mmdet's FCNMaskHead with its training targets built on the device, without host
        # round trips (convnext_dense/models/mask_head.py); one config for the three stages
        mask_head=dict(type='DeviceTargetFCNMaskHead')))
