# UperNet ConvNeXt on ADE20K at 640x640 crops (images resized to a 2560x640 maximum): mmseg's
# ade20k_640x640 data (random resize 0.5-2.0, crop, flip, photometric distortion; test resize
# 2560x640), sliding-window inference with 640x640 windows at stride 426 (official *_ss.py).
_base_ = ['./upernet_convnext.py', 'mmseg::_base_/datasets/ade20k_640x640.py']

# (H, W) of the input tools/analysis/get_flops.py measures by default (the paper's FLOPs).
flops_shape = (640, 2560)
# crop_size: (640, 640), from ade20k_640x640.py
model = dict(
    data_preprocessor=dict(size=_base_.crop_size),
    test_cfg=dict(mode='slide', crop_size=_base_.crop_size, stride=(426, 426)))
train_dataloader = dict(batch_size=2)  # 2 images per GPU x 8 GPUs (ade20k_640x640.py: 4); test: 1
