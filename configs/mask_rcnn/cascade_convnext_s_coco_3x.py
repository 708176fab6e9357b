# Cascade Mask R-CNN ConvNeXt-S (ImageNet-1K), 3x (36 epochs), multi-scale 480-800 + crop,
# 4conv1fc GIoU box heads. Paper's numbers: configs/metafile.yml.
# Values as the official
# cascade_mask_rcnn_convnext_small_..._3x_coco_in1k.py (configs/convnext/);
# mmdet's cascade-mask-rcnn_convnext-s-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py agrees
# apart from the warm-up (see _base_/coco_convnext_3x.py). S has T's widths (the neck's
# in_channels) and lr 2e-4 / decay 0.7; its 27 blocks are grouped into 12 decay layers.
_base_ = ['./_base_/cascade_convnext_coco_3x.py']

pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnext_small_1k_224.pth'
model = dict(backbone=dict(arch='small', drop_path_rate=0.6, init_cfg=dict(checkpoint=pretrained)))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
