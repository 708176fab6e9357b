# UperNet ConvNeXt-B, CLIP weights, 512x512 crops, 160k iterations on ADE20K, fine-tuned with
# stage-wise lr decay: the ConvNeXt paper's recipe of convnext_b_ade20k.py with the image trunk of
# open_clip's convnext_base_w CLIP (laion2b_s13b_b82k_augreg: LAION-2B, 256 px; open_clip's
# convnext_base tower has the same trunk and loads too).
# The file is the whole CLIP model (open_clip layout): the image tower's timm trunk under
# visual.trunk. loads, its projection, the text tower and logit_scale are dropped and named in the
# log, and its final norm (after pooling, before the projection) is left out, so the stage-4 output
# norm starts fresh, as for an ImageNet classifier (docs/checkpoints.md). No published results for
# this model (configs/metafile.yml).
_base_ = ['./convnext_b_ade20k.py', './_base_/clip_input.py']

pretrained = ('https://huggingface.co/laion/CLIP-convnext_base_w-laion2B-s13B-b82K-augreg/'
              'resolve/main/open_clip_pytorch_model.bin')
model = dict(data_preprocessor=dict(mean=_base_.clip_mean, std=_base_.clip_std, bgr_to_rgb=True),
             backbone=dict(init_cfg=dict(checkpoint=pretrained)))
