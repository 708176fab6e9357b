# RoIAlign and NMS kernels of every detection config: 'auto' (mmcv's where mmcv has them for the
# tensor's device, else torchvision's), 'mmcv' or 'torchvision' (convnext_dense/ops/roi_ops.py,
# docs/device_ops.md)
roi_ops = 'auto'
