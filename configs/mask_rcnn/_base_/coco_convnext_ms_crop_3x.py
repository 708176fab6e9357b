# COCO recipe of the ConvNeXt paper (Liu et al. 2022, Appendix A.3) for Mask R-CNN and Cascade
# Mask R-CNN: multi-scale 480-800 training with the DETR-style crop branch, 16 images per batch
# (2 per GPU x 8 GPUs), and the optimizer and 3x schedule of coco_convnext_3x.py (AdamW, wd 0.05,
# layer-wise lr decay, steps at 27 and 33, mixed precision). The size-specific files set the
# backbone size, drop path, pretrained weights, lr and the decay settings.
_base_ = ['./coco_convnext_3x.py']

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
