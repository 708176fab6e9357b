# Cascade Mask R-CNN ConvNeXt-B (ImageNet-22K), 3x (36 epochs), multi-scale 480-800 + crop,
# 4conv1fc GIoU box heads. Paper's numbers: configs/metafile.yml.
# Values as the official
# cascade_mask_rcnn_convnext_base_..._3x_coco_in22k.py (configs/convnext/);
# mmdet has no ConvNeXt-B config. Differs from the 1K one in weights, drop path and lr.
_base_ = ['./cascade_convnext_b_coco_3x.py']

pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnext_base_22k_224.pth'
model = dict(backbone=dict(drop_path_rate=0.6, init_cfg=dict(checkpoint=pretrained)))
optim_wrapper = dict(optimizer=dict(lr=1e-4))
