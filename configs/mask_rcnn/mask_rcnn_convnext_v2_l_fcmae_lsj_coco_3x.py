# Mask R-CNN ConvNeXt V2-L (FCMAE pre-trained on ImageNet-1K), large-scale jitter 1024, 3x (36
# epochs), soft-NMS test. Paper's numbers: configs/metafile.yml (Woo et al. 2023, Table 6).
# Chosen here (no published config; the paper sweeps drop path {0.2, ..., 0.5} and decay
# {0.9, 0.95}): layer-wise decay 0.95 / 12 layers as mmdet's V2-B (same depths, so the same
# per-layer decay), drop path 0.5, the top of the sweep, since the wider model overfits more (the
# V1 recipe likewise raises drop path with width: Cascade B 0.6, L 0.7, XL 0.8 on IN-22K).
_base_ = ['./_base_/mask_rcnn_convnext_v2_coco_lsj_3x.py']

pretrained = ('https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/'
              'convnextv2_large_1k_224_fcmae.pt')
model = dict(backbone=dict(arch='large', drop_path_rate=0.5, init_cfg=dict(checkpoint=pretrained)),
             neck=dict(in_channels=[192, 384, 768, 1536]))
