# Mask R-CNN ConvNeXt-T (ImageNet-1K), 3x (36 epochs) multi-scale + crop (the paper's numbers:
# configs/metafile.yml). Values as the official
# mask_rcnn_convnext_tiny_patch4_window7_mstrain_480-800_adamw_3x_coco_in1k.py (mmdet's
# mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py agrees apart from the warm-up).
_base_ = ['./_base_/mask_rcnn_convnext_coco_3x.py']

pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnext_tiny_1k_224.pth'
model = dict(
    backbone=dict(
        arch='tiny',
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))

optim_wrapper = dict(
    optimizer=dict(lr=1e-4),
    paramwise_cfg=dict(decay_rate=0.95, decay_type='layer_wise', num_layers=6))
