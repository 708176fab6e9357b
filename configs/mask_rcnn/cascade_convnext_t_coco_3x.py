# Cascade Mask R-CNN ConvNeXt-T (ImageNet-1K), 3x (36 epochs), multi-scale 480-800 + crop,
# 4conv1fc GIoU box heads. Paper's numbers: configs/metafile.yml.
# Values as the official
# cascade_mask_rcnn_convnext_tiny_..._3x_coco_in1k.py (configs/convnext/);
# mmdet's cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py agrees
# apart from the warm-up (see _base_/coco_convnext_3x.py). They are the recipe's own (drop path
# 0.4, lr 2e-4, layer-wise decay 0.7 over 6 layers, mixed precision).
_base_ = ['./_base_/cascade_convnext_coco_3x.py']

pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnext_tiny_1k_224.pth'
model = dict(backbone=dict(arch='tiny', init_cfg=dict(checkpoint=pretrained)))
