# ConvNeXt-atto (V2) Mask R-CNN on the synthetic toy COCO set (tools/make_toy_data.py): a
# from-scratch demo sized for a CPU. At the default 300 iterations on the default toy set it
# reaches bbox AP 0.52-0.57 / segm AP 0.56-0.59 on the 16 held-out images (README). Longer:
# --cfg-options train_cfg.max_iters=N (the LR schedule follows it).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/default_runtime.py',
    '../_base_/convnext_dense_runtime.py',
    '../_base_/toy_schedule.py',
    './_base_/roi_ops.py',
]
# ToyCocoDataset (convnext_dense/datasets/toy_coco.py) holds the classes and palette
custom_imports = dict(imports=['convnext_dense', 'convnext_dense.datasets.toy_coco'],
                      allow_failed_imports=False)

num_classes = 5  # the shapes (ToyCocoDataset.METAINFO)
image_size = (128, 128)

# Slimmed heads and fewer sampled RoIs than the COCO recipe (256-channel FPN, 512 RoIs per
# image): the toy images hold at most 5 objects, and on a CPU the RoI heads' convolutions and
# RoIAlign backward dominate the step time.
fpn_channels = 128
model = dict(
    backbone=dict(
        _delete_=True, type='ConvNeXt', arch='atto', drop_path_rate=0.1, init_cfg=None),
    neck=dict(in_channels=[40, 80, 160, 320], out_channels=fpn_channels),
    rpn_head=dict(
        in_channels=fpn_channels,
        feat_channels=fpn_channels,
        # toy objects are 16-60 px: anchors of 16..256 px instead of 32..512
        anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=fpn_channels),
        bbox_head=dict(in_channels=fpn_channels, fc_out_channels=512, num_classes=num_classes),
        mask_roi_extractor=dict(out_channels=fpn_channels),
        # mmdet's FCNMaskHead, its targets built on the device (convnext_dense/models/mask_head.py)
        mask_head=dict(type='DeviceTargetFCNMaskHead', in_channels=fpn_channels,
                       conv_out_channels=fpn_channels, num_classes=num_classes)),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=128)),
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=300)))

data_root = 'data/toy_coco/'
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='ToyCocoDataset',
        data_root=data_root,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=4),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=2,
    persistent_workers=False,
    dataset=dict(
        type='ToyCocoDataset',
        data_root=data_root,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='FastCocoMetric', backend='faster_coco_eval',
                     ann_file=data_root + 'annotations/instances_val.json',
                     metric=['bbox', 'segm'])
test_evaluator = val_evaluator

# The demos' schedule (../_base_/toy_schedule.py) with the detector's lr, layer-wise decay,
# gradient clipping and 50 warm-up iterations.
optim_wrapper = dict(optimizer=dict(lr=5e-4), paramwise_cfg=dict(decay_type='layer_wise'),
                     clip_grad=dict(max_norm=10.0))
param_scheduler = [dict(_base_.param_scheduler[0], end=50), _base_.param_scheduler[1]]

default_hooks = dict(
    # evaluations logged by iteration (the iteration-based schedule), not all as "epoch 0"
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=_base_.max_iters,
                    max_keep_ckpts=2))
log_processor = dict(by_epoch=False, window_size=20)
