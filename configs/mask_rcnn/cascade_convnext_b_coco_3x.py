# Cascade Mask R-CNN ConvNeXt-B (ImageNet-1K), 3x (36 epochs), multi-scale 480-800 + crop,
# 4conv1fc GIoU box heads. Paper's numbers: configs/metafile.yml.
# Values as the official
# cascade_mask_rcnn_convnext_base_..._3x_coco_in1k.py (configs/convnext/);
# mmdet has no ConvNeXt-B config. lr 2e-4 as the recipe; layer-wise decay 0.8 over 12 layers.
_base_ = ['./_base_/cascade_convnext_coco_3x.py']

pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnext_base_1k_224.pth'
model = dict(backbone=dict(arch='base', drop_path_rate=0.7, init_cfg=dict(checkpoint=pretrained)),
             neck=dict(in_channels=[128, 256, 512, 1024]))
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.8, num_layers=12))
