# UperNet ConvNeXt-T (ImageNet-1K), 512x512 crops, 160k iterations on ADE20K.
# Paper's numbers: configs/metafile.yml.
# Values as the official upernet_convnext_tiny_512_160k_ade20k_ss.py;
# mmseg: convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py.
_base_ = ['./_base_/upernet_convnext_512.py']

pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnext_tiny_1k_224.pth'
model = dict(backbone=dict(arch='tiny', init_cfg=dict(checkpoint=pretrained)))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=6))
