# UperNet ConvNeXt-L (ImageNet-22K), 640x640 crops, 160k iterations on ADE20K.
# Paper's numbers: configs/metafile.yml.
# Values as the official upernet_convnext_large_640_160k_ade20k_ss.py;
# mmseg: convnext-large_upernet_8xb2-amp-160k_ade20k-640x640.py.
_base_ = ['./_base_/upernet_convnext_640.py']

pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnext_large_22k_224.pth'
model = dict(backbone=dict(arch='large', init_cfg=dict(checkpoint=pretrained)),
             decode_head=dict(in_channels=[192, 384, 768, 1536]),
             auxiliary_head=dict(in_channels=768))

# Trained in fp32 as the paper (official: use_fp16=False for L and XL; official vs mmseg:
# mmseg trains L/XL with AmpOptimWrapper): the recipe's optimizer in a plain OptimWrapper (no
# loss scale).
optim_wrapper = dict(_base_.optim_wrapper, _delete_=True, type='OptimWrapper')
optim_wrapper.pop('loss_scale')
