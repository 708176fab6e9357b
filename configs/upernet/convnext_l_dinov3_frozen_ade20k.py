# UperNet on a frozen DINOv3 ConvNeXt-L (ADE20K, 512x512 crops, 160k iterations): the setting of
# the DINOv3 paper's dense evaluations, which train only a head on the frozen backbone (its ADE20K
# linear probe of ConvNeXt-L: configs/metafile.yml). frozen_stages=4 freezes the stem, the four
# stages and their output norms: the stride-32 one is DINOv3's own final norm, the stride-4/8/16
# ones stay plain LayerNorms (weight 1, bias 0). The heads train with the optimizer of
# convnext_l_dinov3_ade20k.py, which leaves frozen parameters out. Drop path off: a frozen backbone
# runs in eval mode.
_base_ = ['./convnext_l_dinov3_ade20k.py']

model = dict(backbone=dict(frozen_stages=4, drop_path_rate=0.))
