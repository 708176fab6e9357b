# UperNet ConvNeXt-B, DINOv3 weights, 512x512 crops, 160k iterations on ADE20K, fine-tuned with
# stage-wise lr decay: the ConvNeXt paper's recipe of convnext_b_ade20k.py with the DINOv3
# backbone.
# Weights: DINOv3 ConvNeXt-B, distilled from the DINOv3 ViT-7B on LVD-1689M (Simeoni et al. 2025):
# facebookresearch/dinov3's file, at the URL its dinov3/hub/backbones.py builds. The download is
# gated: accept the licence on Meta's DINOv3 download page, then set
# model.backbone.init_cfg.checkpoint to the URL you are sent or a local copy (timm's and Hugging
# Face's copies load too). Its final norm normalises the patch tokens and becomes the stage-4
# output norm (docs/checkpoints.md). DINOv3 License:
# https://github.com/facebookresearch/dinov3/blob/main/LICENSE.md
# Input as DINOv3 was trained: ImageNet mean/std, RGB (dinov3/data/transforms.py), the base's
# data_preprocessor. No published results for this model: DINOv3 reports frozen linear probes only
# (configs/metafile.yml).
_base_ = ['./convnext_b_ade20k.py']

pretrained = ('https://dl.fbaipublicfiles.com/dinov3/dinov3_convnext_base/'
              'dinov3_convnext_base_pretrain_lvd1689m-801f2ba9.pth')
model = dict(backbone=dict(init_cfg=dict(checkpoint=pretrained)))
