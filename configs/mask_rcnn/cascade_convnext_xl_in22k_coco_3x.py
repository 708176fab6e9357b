# Cascade Mask R-CNN ConvNeXt-XL (ImageNet-22K), 3x (36 epochs), multi-scale 480-800 + crop,
# 4conv1fc GIoU box heads. Paper's numbers: configs/metafile.yml.
# Values as the official
# cascade_mask_rcnn_convnext_xlarge_..._3x_coco_in22k.py (configs/convnext/);
# mmdet has no ConvNeXt-XL config. The L recipe (fp32, lr 1e-4, decay 0.7 over 12 layers) with
# drop path 0.8.
_base_ = ['./cascade_convnext_l_in22k_coco_3x.py']

pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnext_xlarge_22k_224.pth'
model = dict(backbone=dict(arch='xlarge', drop_path_rate=0.8, init_cfg=dict(checkpoint=pretrained)),
             neck=dict(in_channels=[256, 512, 1024, 2048]))
