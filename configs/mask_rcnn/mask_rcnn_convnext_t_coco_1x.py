# Mask R-CNN ConvNeXt-T (ImageNet-1K), 1x (12 epochs, steps at 8 and 11) with the 3x recipe's
# multi-scale + crop augmentation, lr and decay. Neither upstream publishes a ConvNeXt 1x
# config: this is the 3x config on mmdet's 1x schedule.
_base_ = ['./mask_rcnn_convnext_t_coco_3x.py']

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11],
         gamma=0.1),
]
