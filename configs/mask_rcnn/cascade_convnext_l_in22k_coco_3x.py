# Cascade Mask R-CNN ConvNeXt-L (ImageNet-22K), 3x (36 epochs), multi-scale 480-800 + crop,
# 4conv1fc GIoU box heads. Paper's numbers: configs/metafile.yml.
# Values as the official
# cascade_mask_rcnn_convnext_large_..._3x_coco_in22k.py (configs/convnext/);
# mmdet has no ConvNeXt-L config.
_base_ = ['./_base_/cascade_convnext_coco_3x.py']

pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnext_large_22k_224.pth'
model = dict(
    backbone=dict(
        arch='large',
        drop_path_rate=0.7,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[192, 384, 768, 1536]))

# Trained in fp32 as the paper (official: use_fp16=False for L and XL): a plain OptimWrapper.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='ConvNeXtLayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    # decay 0.7 as the official L/XL configs (0.8 is B's)
    paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise', num_layers=12))
