# Mask R-CNN ConvNeXt-T (ImageNet-1K), 3x (36 epochs) multi-scale + crop (the paper's numbers:
# configs/metafile.yml). Values as the official
# mask_rcnn_convnext_tiny_patch4_window7_mstrain_480-800_adamw_3x_coco_in1k.py (mmdet's
# mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py agrees apart from the warm-up): the
# recipe's drop path 0.4, lr 1e-4 and layer-wise decay 0.95 (the Cascade recipe's are 2e-4 and 0.7).
_base_ = ['./_base_/mask_rcnn_convnext_coco_3x.py']

pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnext_tiny_1k_224.pth'
model = dict(backbone=dict(arch='tiny', init_cfg=dict(checkpoint=pretrained)))
optim_wrapper = dict(optimizer=dict(lr=1e-4), paramwise_cfg=dict(decay_rate=0.95))
