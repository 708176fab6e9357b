# Cascade Mask R-CNN ConvNeXt-S, DINOv3 weights, 3x (36 epochs), multi-scale 480-800 + crop,
# 4conv1fc GIoU box heads: the ConvNeXt paper's recipe of cascade_convnext_s_coco_3x.py, with the
# DINOv3 backbone.
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
_base_ = ['./cascade_convnext_s_coco_3x.py']

pretrained = ('https://dl.fbaipublicfiles.com/dinov3/dinov3_convnext_small/'
              'dinov3_convnext_small_pretrain_lvd1689m-296db49d.pth')
model = dict(backbone=dict(init_cfg=dict(checkpoint=pretrained)))
