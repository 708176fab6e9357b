# UperNet ConvNeXt-L at 512x512 crops: the paper trains UperNet-L at 640 only
# (convnext_l_in22k_ade20k_640.py); this is its recipe (drop path 0.4, lr 1e-4, stage-wise decay
# 0.9, fp32) on the 512 setup of the other sizes (upernet_convnext_512.py), for the configs with
# other L weights (DINOv3, CLIP), which set the checkpoint.
_base_ = ['./upernet_convnext_512.py']

model = dict(backbone=dict(arch='large'),
             decode_head=dict(in_channels=[192, 384, 768, 1536]),
             auxiliary_head=dict(in_channels=768))

# Trained in fp32 as the paper trains L (official: use_fp16=False for L and XL): the recipe's
# optimizer in a plain OptimWrapper (no loss scale).
optim_wrapper = dict(_base_.optim_wrapper, _delete_=True, type='OptimWrapper')
optim_wrapper.pop('loss_scale')
