# Mask R-CNN ConvNeXt-S, DINOv3 weights, 3x (36 epochs), multi-scale 480-800 + crop: the ConvNeXt
# paper's Mask R-CNN recipe (_base_/mask_rcnn_convnext_coco_3x.py). The paper tunes Mask R-CNN for
# T only; the lr, layer decay and drop path of S are those of its Cascade recipe of this size
# (cascade_convnext_s_coco_3x.py), tuned by the same authors on the same backbone (for T the two
# recipes differ: lr 1e-4 / decay 0.95 vs 2e-4 / 0.7).
# Weights: DINOv3 ConvNeXt-S, distilled from the DINOv3 ViT-7B on LVD-1689M (Simeoni et al. 2025):
# facebookresearch/dinov3's file, at the URL its dinov3/hub/backbones.py builds. The download is
# gated: accept the licence on Meta's DINOv3 download page, then set
# model.backbone.init_cfg.checkpoint to the URL you are sent or a local copy (timm's and Hugging
# Face's copies load too). Its final norm normalises the patch tokens and becomes the stage-4
# output norm (docs/checkpoints.md). DINOv3 License:
# https://github.com/facebookresearch/dinov3/blob/main/LICENSE.md
# Input as DINOv3 was trained: ImageNet mean/std, RGB (dinov3/data/transforms.py), the base's
# data_preprocessor. No published results: DINOv3 reports frozen linear probes only
# (configs/metafile.yml).
_base_ = ['./_base_/mask_rcnn_convnext_coco_3x.py']

pretrained = ('https://dl.fbaipublicfiles.com/dinov3/dinov3_convnext_small/'
              'dinov3_convnext_small_pretrain_lvd1689m-296db49d.pth')
# S has T's widths (the neck's in_channels) and the recipe's lr 2e-4 and decay 0.7
model = dict(backbone=dict(arch='small', drop_path_rate=0.6, init_cfg=dict(checkpoint=pretrained)))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
