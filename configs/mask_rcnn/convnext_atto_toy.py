# ConvNeXt-atto (V2) Mask R-CNN on the synthetic toy COCO set (tools/make_toy_data.py): a
# from-scratch demo sized for a CPU. At the default 300 iterations on the default toy set it
# reaches bbox AP 0.52-0.57 / segm AP 0.56-0.59 on the 16 held-out images (README). Longer:
# --cfg-options train_cfg.max_iters=N (the LR schedule follows it).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/default_runtime.py',
]
# ToyCocoDataset (convnext_dense/datasets/toy_coco.py) holds the classes and palette
custom_imports = dict(imports=['convnext_dense', 'convnext_dense.datasets.toy_coco'],
                      allow_failed_imports=False)

num_classes = 5  # the shapes (ToyCocoDataset.METAINFO)
image_size = (128, 128)
max_iters = 300
# RoIAlign and NMS kernels: 'auto' (mmcv's where mmcv has them for the tensor's device, else
# torchvision's), 'mmcv' or 'torchvision' (convnext_dense/ops/roi_ops.py, docs/device_ops.md)
roi_ops = 'auto'

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

train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='OptimWrapper',
    constructor='ConvNeXtLayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=5e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(decay_rate=0.9, decay_type='layer_wise'),
    clip_grad=dict(max_norm=10.0))
# Warmup and decay overlap from iteration 0 and multiply (both schedulers are chainable, eta_min
# is 0): a run shorter than the warmup still works. PolyLR has no `end`, so it ends at
# train_cfg.max_iters, whatever that is set to.
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=0),
]

default_hooks = dict(
    # evaluations logged by iteration (the iteration-based schedule), not all as "epoch 0"
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters,
                    max_keep_ckpts=2))
log_processor = dict(by_epoch=False, window_size=20)
randomness = dict(seed=0)

# Long runs that fail safe (docs/long_runs.md): stop at the first non-finite loss or gradient
# (with fp16 AMP: after 50 consecutive steps the loss scaler skipped), save a resumable
# checkpoint on SIGTERM (Slurm preemption, scancel), stop when a checkpoint cannot be written.
custom_hooks = [
    dict(type='NonFiniteCheckHook', check_grad_norm=True, max_skipped_steps=50),
    dict(type='StopSignalHook', signals=('SIGTERM', )),
    dict(type='CheckpointWriteCheckHook'),
]
