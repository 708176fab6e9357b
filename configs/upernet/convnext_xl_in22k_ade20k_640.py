# UperNet ConvNeXt-XL (ImageNet-22K), 640x640 crops, 160k iterations on ADE20K.
# Paper's numbers: configs/metafile.yml.
# Values as the official upernet_convnext_xlarge_640_160k_ade20k_ss.py;
# mmseg: convnext-xlarge_upernet_8xb2-amp-160k_ade20k-640x640.py.
_base_ = ['./_base_/upernet_convnext_640.py']

pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnext_xlarge_22k_224.pth'
model = dict(
    backbone=dict(
        arch='xlarge',
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[256, 512, 1024, 2048]),
    auxiliary_head=dict(in_channels=1024))

# Trained in fp32 as the paper (official: use_fp16=False for L and XL; official vs mmseg:
# mmseg trains L/XL with AmpOptimWrapper): a plain OptimWrapper.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='ConvNeXtLayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=8e-5, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise', num_layers=12))
