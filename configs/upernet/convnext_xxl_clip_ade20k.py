# UperNet ConvNeXt-XXLarge, CLIP weights, 512x512 crops, 160k iterations on ADE20K, with the image
# trunk of open_clip's convnext_xxlarge CLIP (laion2b_s34b_b82k_augreg_soup: LAION-2B, 256 px).
# Depths 3/4/30/3, widths 384-3072, LayerNorm eps 1e-5 as timm builds it (the arch's default here).
# Built and checked, never trained here: no recipe exists for this size, so it takes the paper's XL
# one (convnext_xl_in22k_ade20k_640.py: the L recipe with lr 8e-5, so stage-wise decay 0.9, drop
# path 0.4, fp32) on the 512 setup (_base_/upernet_convnext_l_512.py). At 2 crops per GPU it may
# need --cfg-options model.backbone.with_cp=True (activation checkpointing).
# The file is the whole CLIP model (open_clip layout): the image tower's timm trunk under
# visual.trunk. loads, its projection, the text tower and logit_scale are dropped and named in the
# log, and its final norm (after pooling, before the projection) is left out, so the stage-4 output
# norm starts fresh, as for an ImageNet classifier (docs/checkpoints.md). No published results for
# this model (configs/metafile.yml).
_base_ = ['./_base_/upernet_convnext_l_512.py', './_base_/clip_input.py']

pretrained = ('https://huggingface.co/laion/CLIP-convnext_xxlarge-laion2B-s34B-b82K-augreg-soup/'
              'resolve/main/open_clip_pytorch_model.bin')
model = dict(data_preprocessor=dict(mean=_base_.clip_mean, std=_base_.clip_std, bgr_to_rgb=True),
             backbone=dict(arch='xxlarge', init_cfg=dict(checkpoint=pretrained)),
             decode_head=dict(in_channels=[384, 768, 1536, 3072]),
             auxiliary_head=dict(in_channels=1536))
optim_wrapper = dict(optimizer=dict(lr=8e-5))
