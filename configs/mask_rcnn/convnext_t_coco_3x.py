_base_ = ['./mask_rcnn_convnext_t_coco_3x.py']  # alias: Mask R-CNN ConvNeXt-T 3x
