# UperNet ConvNeXt-L, DINOv3 weights, 512x512 crops, 160k iterations on ADE20K, fine-tuned with
# stage-wise lr decay. The paper trains UperNet-L at 640 only (convnext_l_in22k_ade20k_640.py);
# this is its recipe (lr, decay, drop path, fp32) on the 512 setup of the other sizes
# (_base_/upernet_convnext_l_512.py).
# Weights: DINOv3 ConvNeXt-L, distilled from the DINOv3 ViT-7B on LVD-1689M (Simeoni et al. 2025):
# facebookresearch/dinov3's file, at the URL its dinov3/hub/backbones.py builds. The download is
# gated: accept the licence on Meta's DINOv3 download page, then set
# model.backbone.init_cfg.checkpoint to the URL you are sent or a local copy (timm's and Hugging
# Face's copies load too). Its final norm normalises the patch tokens and becomes the stage-4
# output norm (docs/checkpoints.md). DINOv3 License:
# https://github.com/facebookresearch/dinov3/blob/main/LICENSE.md
# Input as DINOv3 was trained: ImageNet mean/std, RGB (dinov3/data/transforms.py), the base's
# data_preprocessor. No published results for this model: DINOv3 reports frozen linear probes only
# (configs/metafile.yml).
_base_ = ['./_base_/upernet_convnext_l_512.py']

pretrained = ('https://dl.fbaipublicfiles.com/dinov3/dinov3_convnext_large/'
              'dinov3_convnext_large_pretrain_lvd1689m-61fa432d.pth')
model = dict(backbone=dict(init_cfg=dict(checkpoint=pretrained)))
