# UperNet ConvNeXt-L, CLIP weights, 512x512 crops, 160k iterations on ADE20K, fine-tuned with
# stage-wise lr decay, with the image trunk of open_clip's convnext_large_d_320 CLIP
# (laion2b_s29b_b131k_ft_soup: LAION-2B, 320 px), the backbone FC-CLIP and FrozenSeg use. The paper
# trains UperNet-L at 640 only (convnext_l_in22k_ade20k_640.py); this is its recipe (lr, decay,
# drop path, fp32) on the 512 setup of the other sizes (_base_/upernet_convnext_l_512.py).
# The file is the whole CLIP model (open_clip layout): the image tower's timm trunk under
# visual.trunk. loads, its projection, the text tower and logit_scale are dropped and named in the
# log, and its final norm (after pooling, before the projection) is left out, so the stage-4 output
# norm starts fresh, as for an ImageNet classifier (docs/checkpoints.md). No published results for
# this model (configs/metafile.yml).
_base_ = ['./_base_/upernet_convnext_l_512.py', './_base_/clip_input.py']

pretrained = ('https://huggingface.co/laion/CLIP-convnext_large_d_320.laion2B-s29B-b131K-ft-soup/'
              'resolve/main/open_clip_pytorch_model.bin')
model = dict(data_preprocessor=dict(mean=_base_.clip_mean, std=_base_.clip_std, bgr_to_rgb=True),
             backbone=dict(init_cfg=dict(checkpoint=pretrained)))
