# UperNet ConvNeXt-S (ImageNet-1K), 512x512 crops, 160k iterations on ADE20K.
# Paper's numbers: configs/metafile.yml.
# Values as the official upernet_convnext_small_512_160k_ade20k_ss.py;
# mmseg: convnext-small_upernet_8xb2-amp-160k_ade20k-512x512.py.
_base_ = ['./_base_/upernet_convnext_512.py']

pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnext_small_1k_224.pth'
# S has T's widths (the heads' in_channels) and the recipe's lr and decay
model = dict(backbone=dict(arch='small', drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)))
