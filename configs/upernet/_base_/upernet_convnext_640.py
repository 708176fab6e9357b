# UperNet ConvNeXt on ADE20K at 640x640 crops (images resized to a 2560x640 maximum): mmseg's
# ade20k_640x640 data (random resize 0.5-2.0, crop, flip, photometric distortion; test resize
# 2560x640), sliding-window inference with 640x640 windows at stride 426 (official *_ss.py).
_base_ = [
    './upernet_convnext.py',
    'mmseg::_base_/datasets/ade20k_640x640.py',
]

crop_size = (640, 640)
# (H, W) of the input tools/analysis/get_flops.py measures by default (the paper's FLOPs).
flops_shape = (640, 2560)
model = dict(
    data_preprocessor=dict(size=crop_size),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(426, 426)))

# 2 images per GPU x 8 GPUs
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
