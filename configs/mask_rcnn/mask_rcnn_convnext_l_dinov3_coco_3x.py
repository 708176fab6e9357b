# Mask R-CNN ConvNeXt-L, DINOv3 weights, 3x (36 epochs), multi-scale 480-800 + crop: the ConvNeXt
# paper's Mask R-CNN recipe (_base_/mask_rcnn_convnext_coco_3x.py). The paper tunes Mask R-CNN for
# T only; the lr, layer decay, drop path and precision of L are those of its Cascade recipe of this
# size (cascade_convnext_l_in22k_coco_3x.py), tuned by the same authors on the same backbone (for T
# the two recipes differ: lr 1e-4 / decay 0.95 vs 2e-4 / 0.7). As there, L differs from B
# (mask_rcnn_convnext_b_dinov3_coco_3x.py) in drop path, decay and precision.
# Weights: DINOv3 ConvNeXt-L, distilled from the DINOv3 ViT-7B on LVD-1689M (Simeoni et al. 2025):
# facebookresearch/dinov3's file, at the URL its dinov3/hub/backbones.py builds. The download is
# gated: accept the licence on Meta's DINOv3 download page, then set
# model.backbone.init_cfg.checkpoint to the URL you are sent or a local copy (timm's and Hugging
# Face's copies load too). Its final norm normalises the patch tokens and becomes the stage-4
# output norm (docs/checkpoints.md). DINOv3 License:
# https://github.com/facebookresearch/dinov3/blob/main/LICENSE.md
# Input as DINOv3 was trained: ImageNet mean/std, RGB (dinov3/data/transforms.py), the base's
# data_preprocessor. No published results: DINOv3 reports frozen linear probes only
# (configs/metafile.yml).
_base_ = ['./mask_rcnn_convnext_b_dinov3_coco_3x.py']

pretrained = ('https://dl.fbaipublicfiles.com/dinov3/dinov3_convnext_large/'
              'dinov3_convnext_large_pretrain_lvd1689m-61fa432d.pth')
model = dict(backbone=dict(arch='large', drop_path_rate=0.7, init_cfg=dict(checkpoint=pretrained)),
             neck=dict(in_channels=[192, 384, 768, 1536]))

# Trained in fp32 as the paper trains L (official: use_fp16=False for L and XL): B's AdamW in a
# plain OptimWrapper (no loss scale), with decay 0.7 as the official L/XL configs (0.8 is B's).
optim_wrapper = dict(_base_.optim_wrapper, _delete_=True, type='OptimWrapper',
                     paramwise_cfg=dict(_base_.optim_wrapper.paramwise_cfg, decay_rate=0.7))
optim_wrapper.pop('loss_scale')
