# Mask R-CNN ConvNeXt V2-B (FCMAE pre-trained on ImageNet-1K), large-scale jitter 1024, 3x (36
# epochs), soft-NMS test. Paper's numbers: configs/metafile.yml (Woo et al. 2023, Table 6).
# The recipe's drop path 0.4 and layer-wise decay 0.95 / 12 layers: mmdet's port
# (mask-rcnn_convnext-v2-b_fpn_lsj-3x-fcmae_coco.py); the paper sweeps drop path
# {0.2, ..., 0.5} and decay {0.9, 0.95} without saying which it chose.
_base_ = ['./_base_/mask_rcnn_convnext_v2_coco_lsj_3x.py']

pretrained = ('https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/'
              'convnextv2_base_1k_224_fcmae.pt')
model = dict(backbone=dict(arch='base', init_cfg=dict(checkpoint=pretrained)))
