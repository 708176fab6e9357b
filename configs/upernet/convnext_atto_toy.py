# ConvNeXt-atto (V2) UperNet on the synthetic toy ADE20K-style set (tools/make_toy_data.py): a
# from-scratch demo that trains on a CPU in minutes. Longer: --cfg-options
# train_cfg.max_iters=N (the LR schedule follows it).
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
]
# ToySegDataset (convnext_dense/datasets/toy_seg.py) holds the classes and palette
custom_imports = dict(imports=['convnext_dense', 'convnext_dense.datasets.toy_seg'],
                      allow_failed_imports=False)

# background + 5 shapes (ToySegDataset.METAINFO): every pixel is labelled and scored, the
# background included (no reduce_zero_label)
num_classes = 6
crop_size = (128, 128)
max_iters = 300
norm_cfg = dict(type='BN', requires_grad=True)  # SyncBN needs CUDA and several processes

model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True, type='ConvNeXt', arch='atto', drop_path_rate=0.1, init_cfg=None),
    # mmseg's UPerHead / FCNHead with the loss computed without the full-resolution logits
    # (convnext_dense/models/decode_heads.py), as the paper configs; averaged over the labelled
    # pixels (avg_non_ignore), as PyTorch's cross-entropy: mmseg's default divides by all
    # pixels, the padding of the crops (255, ignored) included
    decode_head=dict(
        type='ChunkedLossUPerHead', in_channels=[40, 80, 160, 320], channels=128,
        num_classes=num_classes, norm_cfg=norm_cfg,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0,
                         avg_non_ignore=True)),
    auxiliary_head=dict(
        type='ChunkedLossFCNHead', in_channels=160, channels=64, num_classes=num_classes,
        norm_cfg=norm_cfg,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4,
                         avg_non_ignore=True)))

# ADE20K's folder layout, with its own classes (ADE20KDataset only accepts class names out of
# its 150) and the background scored
dataset_type = 'ToySegDataset'
data_root = 'data/toy_ade'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),  # reduce_zero_label (False) comes from the dataset
    dict(type='RandomResize', scale=(256, 128), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 128), keep_ratio=True),
    dict(type='LoadAnnotations'),  # reduce_zero_label (False) comes from the dataset
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    persistent_workers=False,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=False,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='OptimWrapper',
    constructor='ConvNeXtLayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise'))
# Warmup and decay overlap from iteration 0 and multiply (both schedulers are chainable, eta_min
# is 0): a run shorter than the warmup still works. PolyLR has no `end`, so it ends at
# train_cfg.max_iters, whatever that is set to.
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=30),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=0),
]

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters,
                    max_keep_ckpts=2),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
randomness = dict(seed=0)

# Long runs that fail safe (docs/long_runs.md): stop at the first non-finite loss or gradient
# (with fp16 AMP: after 50 consecutive steps the loss scaler skipped), save a resumable
# checkpoint on SIGTERM (Slurm preemption, scancel), stop when a checkpoint cannot be written.
custom_hooks = [
    dict(type='NonFiniteCheckHook', check_grad_norm=True, max_skipped_steps=50),
    dict(type='StopSignalHook', signals=('SIGTERM', )),
    dict(type='CheckpointWriteCheckHook'),
]
