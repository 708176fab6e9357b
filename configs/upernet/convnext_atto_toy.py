# ConvNeXt-atto (V2) UperNet on the synthetic toy ADE20K-style set (tools/make_toy_data.py): a
# from-scratch demo that trains on a CPU in minutes. Longer: --cfg-options
# train_cfg.max_iters=N (the LR schedule follows it).
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
]
custom_imports = dict(imports=['convnext_dense'], allow_failed_imports=False)

# convnext_dense.datasets.CLASSES / PALETTE (configs cannot import them)
classes = ('circle', 'square', 'triangle', 'ring', 'star')
palette = [(220, 40, 40), (40, 170, 60), (50, 80, 220), (240, 200, 30), (200, 60, 200)]
metainfo = dict(classes=classes, palette=palette)
num_classes = len(classes)  # label 0 (background) is ignored: reduce_zero_label
crop_size = (128, 128)
max_iters = 300
norm_cfg = dict(type='BN', requires_grad=True)  # SyncBN needs CUDA and several processes

model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True, type='ConvNeXt', arch='atto', drop_path_rate=0.1, init_cfg=None),
    # mmseg's UPerHead / FCNHead with the loss computed without the full-resolution logits
    # (convnext_dense/models/decode_heads.py), as the paper configs
    decode_head=dict(
        type='ChunkedLossUPerHead', in_channels=[40, 80, 160, 320], channels=128,
        num_classes=num_classes, norm_cfg=norm_cfg),
    auxiliary_head=dict(
        type='ChunkedLossFCNHead', in_channels=160, channels=64, num_classes=num_classes,
        norm_cfg=norm_cfg))

# ADE20KDataset only accepts class names out of its own 150 (it maps them to ADE20K's label
# ids), so the toy set is read by BaseSegDataset with ADE20K's conventions.
dataset_type = 'BaseSegDataset'
data_root = 'data/toy_ade'
ade_format = dict(img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),  # reduce_zero_label comes from the dataset
    dict(type='RandomResize', scale=(256, 128), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 128), keep_ratio=True),
    dict(type='LoadAnnotations'),  # reduce_zero_label comes from the dataset
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    persistent_workers=False,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        **ade_format,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=False,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        **ade_format,
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
