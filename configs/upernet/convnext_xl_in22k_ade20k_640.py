# UperNet ConvNeXt-XL (ImageNet-22K), 640x640 crops, 160k iterations on ADE20K.
# Paper's numbers: configs/metafile.yml.
# Values as the official upernet_convnext_xlarge_640_160k_ade20k_ss.py;
# mmseg: convnext-xlarge_upernet_8xb2-amp-160k_ade20k-640x640.py. The L recipe
# (convnext_l_in22k_ade20k_640.py: fp32, drop path 0.4, stage-wise decay 0.9) with lr 8e-5.
_base_ = ['./convnext_l_in22k_ade20k_640.py']

pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnext_xlarge_22k_224.pth'
model = dict(backbone=dict(arch='xlarge', init_cfg=dict(checkpoint=pretrained)),
             decode_head=dict(in_channels=[256, 512, 1024, 2048]),
             auxiliary_head=dict(in_channels=1024))
optim_wrapper = dict(optimizer=dict(lr=8e-5))
