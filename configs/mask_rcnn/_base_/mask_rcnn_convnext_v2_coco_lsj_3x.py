# Mask R-CNN + FPN with a ConvNeXt V2 backbone, the V2 paper's recipe (see
# coco_convnext_v2_lsj_3x.py): mmdet's Mask R-CNN heads, soft-NMS in the box head at test time.
# Size files set model.backbone (arch, drop path, FCMAE weights), model.neck.in_channels and
# the decay settings.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    './coco_convnext_v2_lsj_3x.py',
    './roi_ops.py',
]

model = dict(
    backbone=dict(
        _delete_=True,
        type='ConvNeXt',
        arch='base',
        version='v2',  # GRN, no layer scale
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.4,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/'
            'convnextv2_base_1k_224_fcmae.pt')),
    neck=dict(in_channels=[128, 256, 512, 1024]),
    # mmdet's FCNMaskHead with its training targets built on the device, without host round trips
    # (convnext_dense/models/mask_head.py); the same targets
    roi_head=dict(mask_head=dict(type='DeviceTargetFCNMaskHead')),
    # "single-scale testing with soft-NMS" (the paper): the box head's per-class NMS becomes
    # soft-NMS (mmcv's linear score decay, IoU 0.5); the RPN keeps hard NMS (mmdet).
    test_cfg=dict(rcnn=dict(nms=dict(type='soft_nms', iou_threshold=0.5))))
