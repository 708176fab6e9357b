# UperNet ConvNeXt V2-H (FCMAE, then ImageNet-22K and ImageNet-1K fine-tuned), 640x640 crops,
# 160k iterations on ADE20K. Paper's numbers: configs/metafile.yml (Woo et al. 2023, Table 7;
# multi-scale test, convnext_v2_h_in22k_ade20k_640_ms.py). Recipe: see
# _base_/upernet_convnext_v2_512.py.
# The V2 release has no 224x224 IN-22K V2-H model (V1's 640 configs start from 22k_224
# weights); of its 384x384 and 512x512 ones this takes the 512x512, the closer to the 640 crops.
_base_ = ['./_base_/upernet_convnext_v2_640.py']

pretrained = ('https://dl.fbaipublicfiles.com/convnext/convnextv2/im22k/'
              'convnextv2_huge_22k_512_ema.pt')
model = dict(backbone=dict(arch='huge', init_cfg=dict(checkpoint=pretrained)),
             decode_head=dict(in_channels=[352, 704, 1408, 2816]),
             auxiliary_head=dict(in_channels=1408))

# fp32, as V1's L/XL (official: use_fp16=False for L and XL): the recipe's optimizer in a plain
# OptimWrapper (no loss scale).
optim_wrapper = dict(_base_.optim_wrapper, _delete_=True, type='OptimWrapper')
optim_wrapper.pop('loss_scale')
