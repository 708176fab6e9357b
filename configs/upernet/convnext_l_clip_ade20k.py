# UperNet ConvNeXt-L, CLIP weights, 512x512 crops, 160k iterations on ADE20K, fine-tuned with
# stage-wise lr decay, with the image trunk of open_clip's convnext_large_d_320 CLIP
# (laion2b_s29b_b131k_ft_soup: LAION-2B, 320 px), the backbone FC-CLIP and FrozenSeg use. The paper
# trains UperNet-L at 640 only (convnext_l_in22k_ade20k_640.py); this is its recipe (lr, decay,
# drop path, fp32) on the 512 setup of the other sizes.
# The file is the whole CLIP model (open_clip layout): the image tower's timm trunk under
# visual.trunk. loads, its projection, the text tower and logit_scale are dropped and named in the
# log, and its final norm (after pooling, before the projection) is left out, so the stage-4 output
# norm starts fresh, as for an ImageNet classifier (docs/checkpoints.md). No published results for
# this model (configs/metafile.yml).
_base_ = ['./_base_/upernet_convnext_512.py']

# CLIP's input normalisation, on RGB (open_clip constants.py OPENAI_DATASET_MEAN / _STD, x 255);
# the paper's configs use ImageNet's.
clip_mean = [255 * v for v in (0.48145466, 0.4578275, 0.40821073)]
clip_std = [255 * v for v in (0.26862954, 0.26130258, 0.27577711)]
pretrained = ('https://huggingface.co/laion/CLIP-convnext_large_d_320.laion2B-s29B-b131K-ft-soup/'
              'resolve/main/open_clip_pytorch_model.bin')
model = dict(
    data_preprocessor=dict(mean=clip_mean, std=clip_std, bgr_to_rgb=True),
    backbone=dict(
        arch='large',
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[192, 384, 768, 1536]),
    auxiliary_head=dict(in_channels=768))

# Trained in fp32 as the paper trains L (official: use_fp16=False for L and XL): a plain
# OptimWrapper.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='ConvNeXtLayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise', num_layers=12))
