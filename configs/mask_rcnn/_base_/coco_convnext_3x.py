# What the COCO recipes of both ConvNeXt papers share (Liu et al. 2022 and Woo et al. 2023,
# Appendix A.3), for Mask R-CNN and Cascade Mask R-CNN: AdamW (wd 0.05) with layer-wise lr decay
# in mixed precision, 36 epochs with steps at 27 and 33, COCO AP. The values are those of the V1
# recipe (coco_convnext_ms_crop_3x.py); coco_convnext_v2_lsj_3x.py changes the warm-up, lr, decay
# and batch size, and each recipe adds its training pipeline.
#
# Official configs: facebookresearch/ConvNeXt object_detection/configs/convnext/*.py (mmdet
# 2.x). mmdet 3.3's port: mmdet::convnext/*.py. Where they disagree, marked "official vs mmdet".
_base_ = [
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    '../../_base_/convnext_dense_runtime.py',
]

# (H, W) of the input tools/analysis/get_flops.py measures by default: the paper's 1280x800.
flops_shape = (800, 1280)

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

# COCO AP by faster-coco-eval's C++ matching, pycocotools' 12 numbers (convnext_dense/evaluation/
# metric.py); backend='pycocotools' runs pycocotools' own COCOeval.
val_evaluator = dict(type='FastCocoMetric', backend='faster_coco_eval')
test_evaluator = val_evaluator
