# ConvNeXt-atto (V2) UperNet on the synthetic toy ADE20K-style set (tools/make_toy_data.py): a
# from-scratch demo that trains on a CPU in minutes. Longer: --cfg-options
# train_cfg.max_iters=N (the LR schedule follows it).
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/convnext_dense_runtime.py',
    '../_base_/toy_schedule.py',
]
# ToySegDataset (convnext_dense/datasets/toy_seg.py) holds the classes and palette
custom_imports = dict(imports=['convnext_dense', 'convnext_dense.datasets.toy_seg'],
                      allow_failed_imports=False)

# background + 5 shapes (ToySegDataset.METAINFO): every pixel is labelled and scored, the
# background included (no reduce_zero_label)
num_classes = 6
crop_size = (128, 128)
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
# ade20k.py's loaders (its data_prefix folders, 1 image per validation batch, mIoU) on this data
train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    persistent_workers=False,
    dataset=dict(type=dataset_type, data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=2,
    persistent_workers=False,
    dataset=dict(type=dataset_type, data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

# The demos' schedule (../_base_/toy_schedule.py): lr 1e-3, 30 warm-up iterations, with the
# segmentation configs' stage-wise decay, for 600 iterations: with the background scored, the
# rarest shape (triangles) was still unlearnt after 300 (IoU 0 on the demo's held-out images)
max_iters = 600
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(paramwise_cfg=dict(decay_type='stage_wise'))

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters,
                    max_keep_ckpts=2),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
