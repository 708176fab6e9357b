# UperNet ConvNeXt on ADE20K at 512x512 crops (images resized to a 2048x512 maximum): mmseg's
# ade20k data (random resize 0.5-2.0, crop, flip, photometric distortion; test resize
# 2048x512), sliding-window inference with 512x512 windows at stride 341 (official *_ss.py).
_base_ = ['./upernet_convnext.py', 'mmseg::_base_/datasets/ade20k.py']

# (H, W) of the input tools/analysis/get_flops.py measures by default (the paper's FLOPs).
flops_shape = (512, 2048)
# crop_size: (512, 512), from ade20k.py
model = dict(
    data_preprocessor=dict(size=_base_.crop_size),
    test_cfg=dict(mode='slide', crop_size=_base_.crop_size, stride=(341, 341)))
train_dataloader = dict(batch_size=2)  # 2 images per GPU x 8 GPUs (ade20k.py: 4); test: 1
