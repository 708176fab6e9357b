# UperNet ConvNeXt V2-H (FCMAE, then ImageNet-1K fine-tuned), 512x512 crops, 160k iterations on
# ADE20K. Paper's numbers: configs/metafile.yml (Woo et al. 2023, Table 7; multi-scale test,
# convnext_v2_h_ade20k_ms.py). Recipe: see _base_/upernet_convnext_v2_512.py; fp32 as V2-L
# (convnext_v2_l_ade20k.py), whose settings it takes.
_base_ = ['./convnext_v2_l_ade20k.py']

pretrained = ('https://dl.fbaipublicfiles.com/convnext/convnextv2/im1k/'
              'convnextv2_huge_1k_224_ema.pt')
model = dict(backbone=dict(arch='huge', init_cfg=dict(checkpoint=pretrained)),
             decode_head=dict(in_channels=[352, 704, 1408, 2816]),
             auxiliary_head=dict(in_channels=1408))
