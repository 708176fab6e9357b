# Mask R-CNN ConvNeXt V2-H (FCMAE pre-trained on ImageNet-1K), large-scale jitter 1024, 3x (36
# epochs), soft-NMS test. Paper's numbers: configs/metafile.yml (Woo et al. 2023, Table 6).
# Chosen here as for V2-L (no published config; the paper sweeps drop path {0.2, ..., 0.5} and
# decay {0.9, 0.95}): layer-wise decay 0.95 / 12 layers as mmdet's V2-B, drop path 0.5.
_base_ = ['./_base_/mask_rcnn_convnext_v2_coco_lsj_3x.py']

pretrained = ('https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/'
              'convnextv2_huge_1k_224_fcmae.pt')
model = dict(backbone=dict(arch='huge', drop_path_rate=0.5, init_cfg=dict(checkpoint=pretrained)),
             neck=dict(in_channels=[352, 704, 1408, 2816]))
