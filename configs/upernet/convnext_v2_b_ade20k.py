# UperNet ConvNeXt V2-B (FCMAE, then ImageNet-1K fine-tuned), 512x512 crops, 160k iterations on
# ADE20K. Paper's numbers: configs/metafile.yml (Woo et al. 2023, Table 7; multi-scale test,
# convnext_v2_b_ade20k_ms.py). Recipe: see _base_/upernet_convnext_v2_512.py.
_base_ = ['./_base_/upernet_convnext_v2_512.py']

pretrained = ('https://dl.fbaipublicfiles.com/convnext/convnextv2/im1k/'
              'convnextv2_base_1k_224_ema.pt')
model = dict(backbone=dict(arch='base', init_cfg=dict(checkpoint=pretrained)),
             decode_head=dict(in_channels=[128, 256, 512, 1024]),
             auxiliary_head=dict(in_channels=512))
