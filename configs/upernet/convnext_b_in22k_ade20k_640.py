# UperNet ConvNeXt-B (ImageNet-22K), 640x640 crops, 160k iterations on ADE20K.
# Paper's numbers: configs/metafile.yml.
# Values as the official upernet_convnext_base_640_160k_ade20k_ss.py;
# mmseg: convnext-base_upernet_8xb2-amp-160k_ade20k-640x640.py.
_base_ = ['./_base_/upernet_convnext_640.py']

pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnext_base_22k_224.pth'
model = dict(backbone=dict(arch='base', init_cfg=dict(checkpoint=pretrained)),
             decode_head=dict(in_channels=[128, 256, 512, 1024]),
             auxiliary_head=dict(in_channels=512))
