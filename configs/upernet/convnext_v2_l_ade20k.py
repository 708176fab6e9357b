# UperNet ConvNeXt V2-L (FCMAE, then ImageNet-1K fine-tuned), 512x512 crops, 160k iterations on
# ADE20K. Paper's numbers: configs/metafile.yml (Woo et al. 2023, Table 7; multi-scale test,
# convnext_v2_l_ade20k_ms.py). Recipe: see _base_/upernet_convnext_v2_512.py.
_base_ = ['./_base_/upernet_convnext_v2_512.py']

pretrained = ('https://dl.fbaipublicfiles.com/convnext/convnextv2/im1k/'
              'convnextv2_large_1k_224_ema.pt')
model = dict(backbone=dict(arch='large', init_cfg=dict(checkpoint=pretrained)),
             decode_head=dict(in_channels=[192, 384, 768, 1536]),
             auxiliary_head=dict(in_channels=768))

# fp32, as V1's L/XL (official: use_fp16=False for L and XL): the recipe's optimizer in a plain
# OptimWrapper (no loss scale).
optim_wrapper = dict(_base_.optim_wrapper, _delete_=True, type='OptimWrapper')
optim_wrapper.pop('loss_scale')
