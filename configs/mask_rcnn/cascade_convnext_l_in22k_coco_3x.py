# Cascade Mask R-CNN ConvNeXt-L (ImageNet-22K), 3x (36 epochs), multi-scale 480-800 + crop,
# 4conv1fc GIoU box heads. Paper's numbers: configs/metafile.yml.
# Values as the official
# cascade_mask_rcnn_convnext_large_..._3x_coco_in22k.py (configs/convnext/);
# mmdet has no ConvNeXt-L config. Differs from B (ImageNet-22K) in drop path, decay and precision:
# the lr 1e-4 and the decay over 12 layers are B's.
_base_ = ['./cascade_convnext_b_in22k_coco_3x.py']

pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnext_large_22k_224.pth'
model = dict(backbone=dict(arch='large', drop_path_rate=0.7, init_cfg=dict(checkpoint=pretrained)),
             neck=dict(in_channels=[192, 384, 768, 1536]))

# Trained in fp32 as the paper (official: use_fp16=False for L and XL): B's AdamW in a plain
# OptimWrapper (no loss scale), with decay 0.7 as the official L/XL configs (0.8 is B's).
optim_wrapper = dict(_base_.optim_wrapper, _delete_=True, type='OptimWrapper',
                     paramwise_cfg=dict(_base_.optim_wrapper.paramwise_cfg, decay_rate=0.7))
optim_wrapper.pop('loss_scale')
