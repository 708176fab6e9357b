# Mask R-CNN ConvNeXt-T (ImageNet-1K), 1x (12 epochs, steps at 8 and 11) with the 3x recipe's
# multi-scale + crop augmentation, lr and decay. Neither upstream publishes a ConvNeXt 1x
# config: this is the 3x config on mmdet's 1x schedule (the same 500-iteration warm-up).
_base_ = ['./mask_rcnn_convnext_t_coco_3x.py']

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [_base_.param_scheduler[0],
                   dict(_base_.param_scheduler[1], end=max_epochs, milestones=[8, 11])]
