# COCO recipe of the ConvNeXt V2 paper (Woo et al. 2023, Appendix A.3) for Mask R-CNN:
# large-scale jitter (images resized by 0.1-2.0 of 1024x1024, then 1024x1024 crops), 32 images per
# batch (4 per GPU x 8 GPUs), single-scale test (with soft-NMS, set by the model file), and the
# optimizer and 3x schedule of coco_convnext_3x.py (AdamW, wd 0.05, layer-wise lr decay, steps at
# 27 and 33, mixed precision). The size-specific files set the backbone size, drop path and FCMAE
# weights.
#
# The paper publishes no detection code. Where it gives a sweep and no chosen value (layer
# decay {0.9, 0.95}, drop path {0.2, ..., 0.5}) or leaves a detail open, the values of mmdet's
# port are taken: projects/ConvNeXt-V2/configs/mask-rcnn_convnext-v2-b_fpn_lsj-3x-fcmae_coco.py
# (mmdet 3.x), marked "mmdet".
_base_ = ['./coco_convnext_3x.py']

# Large-scale jitter (as mmdet's port and its common/lsj-*_coco-instance.py); the test keeps
# coco_instance.py's 1333x800 resize (mmdet).
image_size = (1024, 1024)
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.1, 2.0), keep_ratio=True),
    dict(type='RandomCrop',
         crop_type='absolute_range',
         crop_size=image_size,
         recompute_bbox=True,
         allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(batch_size=4, dataset=dict(pipeline=train_pipeline))
# 8 GPUs x 4 images; set enable=True to scale the lr linearly to another total batch size.
auto_scale_lr = dict(base_batch_size=32)

# --compile (convnext_dense/engine/fast_path/configure.py) pads each batch to the smallest of
# these (H, W) that holds it: the 1024x1024 crops first, which the default buckets
# (COCO_MS_BUCKETS of convnext_dense/models/data_preprocessor.py) would pad to 1120x1120, 19.6%
# more pixels; then those, for smaller training batches and the test's 1333x800 resize.
compile_bucket_sizes = [(1024, 1024),
                        (704, 960), (800, 1120), (800, 1344),
                        (960, 704), (1120, 800), (1344, 800),
                        (1120, 1120), (1344, 1344)]

# Linear warm-up over 1000 iterations from lr x 0.001 (mmdet), then the same steps at 27 and 33.
param_scheduler = [dict(_base_.param_scheduler[0], end=1000), _base_.param_scheduler[1]]

# Mixed precision as V1; GRN reduces its L2 norm in fp32 (convnext_dense.models.layers.GRN), so
# fp16 does not overflow it at 1024x1024. lr 1e-4 as the paper; layer-wise decay 0.95 over 12
# layers (mmdet; the paper sweeps {0.9, 0.95}).
optim_wrapper = dict(optimizer=dict(lr=1e-4), paramwise_cfg=dict(decay_rate=0.95, num_layers=12))
