# Shared COCO recipe of the ConvNeXt paper (Liu et al. 2022, Appendix A.3) for Mask R-CNN and
# Cascade Mask R-CNN: multi-scale 480-800 training with the DETR-style crop branch, AdamW
# (wd 0.05) with layer-wise lr decay, 36 epochs with steps at 27 and 33, 16 images per batch
# (2 per GPU x 8 GPUs), mixed precision. The size-specific files set the backbone size, drop
# path, pretrained weights, lr and the decay settings.
#
# Official configs: facebookresearch/ConvNeXt object_detection/configs/convnext/*.py (mmdet
# 2.x). mmdet 3.3's port: mmdet::convnext/*.py. Where they disagree, marked "official vs mmdet".
_base_ = [
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['convnext_dense'], allow_failed_imports=False)

# (H, W) of the input tools/analysis/get_flops.py measures by default: the paper's 1280x800.
flops_shape = (800, 1280)

# augmentation strategy originates from DETR / Sparse R-CNN
ms_scales = [(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333), (640, 1333),
             (672, 1333), (704, 1333), (736, 1333), (768, 1333), (800, 1333)]
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=ms_scales, keep_ratio=True)],
            [
                dict(type='RandomChoiceResize',
                     scales=[(400, 1333), (500, 1333), (600, 1333)],
                     keep_ratio=True),
                dict(type='RandomCrop',
                     crop_type='absolute_range',
                     crop_size=(384, 600),
                     allow_negative_crop=True),
                dict(type='RandomChoiceResize', scales=ms_scales, keep_ratio=True),
            ],
        ]),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
# Linear warm-up over 500 iterations from lr x 0.001 (official: mmdet 2.x schedule_1x,
# warmup_iters=500; official vs mmdet: mmdet's convnext configs warm up for 1000 iterations;
# we keep the official 500, which is also mmdet's schedule_1x default).
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33],
         gamma=0.1),
]

# Mixed precision with a dynamic loss scale (official: apex O1 through EpochBasedRunnerAmp and
# use_fp16=True; mmdet: AmpOptimWrapper). L/XL override this with a plain fp32 OptimWrapper.
# No gradient clipping in either upstream.
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    constructor='ConvNeXtLayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise', num_layers=6))

# 8 GPUs x 2 images; set enable=True to scale the lr linearly to another total batch size.
auto_scale_lr = dict(enable=False, base_batch_size=16)

# Long runs that fail safe (docs/long_runs.md): stop at the first non-finite loss or gradient
# (with fp16 AMP: after 50 consecutive steps the loss scaler skipped), save a resumable
# checkpoint on SIGTERM (Slurm preemption, scancel), stop when a checkpoint cannot be written.
custom_hooks = [
    dict(type='NonFiniteCheckHook', check_grad_norm=True, max_skipped_steps=50),
    dict(type='StopSignalHook', signals=('SIGTERM', )),
    dict(type='CheckpointWriteCheckHook'),
]

# COCO AP by faster-coco-eval's C++ matching, pycocotools' 12 numbers (convnext_dense/evaluation/
# metric.py); backend='pycocotools' runs pycocotools' own COCOeval.
val_evaluator = dict(type='FastCocoMetric', backend='faster_coco_eval')
test_evaluator = val_evaluator
