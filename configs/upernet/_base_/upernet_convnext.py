# UperNet + FCN auxiliary head with a ConvNeXt backbone on ADE20K, the ConvNeXt paper's recipe
# (Liu et al. 2022, Appendix A.4): 160k iterations of 16 images (2 per GPU x 8 GPUs), AdamW
# lr 1e-4 (XL 8e-5), wd 0.05, stage-wise lr decay 0.9, 1500 iterations of linear warm-up then
# poly decay, mixed precision. upernet_convnext_512.py / _640.py add the data, crop size and
# sliding-window inference; the size-specific files set the backbone, heads' in_channels, lr
# and decay settings.
#
# Official configs: facebookresearch/ConvNeXt semantic_segmentation/configs/convnext/*.py
# (mmseg 0.x through BEiT). mmseg 1.2.2's port: mmseg::convnext/*.py. Where they disagree,
# marked "official vs mmseg".
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
    '../../_base_/convnext_dense_runtime.py',
]

num_classes = 150
model = dict(
    pretrained=None,  # upernet_r50's ResNet weights; the backbone's init_cfg loads ConvNeXt's
    backbone=dict(
        _delete_=True,
        type='ConvNeXt',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.4,
        # only matters without pretrained weights; 1.0 as in both upstreams
        layer_scale_init_value=1.0,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://dl.fbaipublicfiles.com/convnext/convnext_tiny_1k_224.pth')),
    # SyncBN (upernet_r50's norm_cfg) in both heads, as both upstreams. The ChunkedLoss heads are
    # mmseg's UPerHead / FCNHead with the same loss computed without the full-resolution logits
    # (convnext_dense/models/decode_heads.py): 0.79 GB less per GPU at 2 crops of 150 x 512 x 512.
    decode_head=dict(
        type='ChunkedLossUPerHead', in_channels=[96, 192, 384, 768], num_classes=num_classes),
    # FCN on stage 2 (in_index=2), loss weight 0.4
    auxiliary_head=dict(type='ChunkedLossFCNHead', in_channels=384, num_classes=num_classes))

# Mixed precision with a dynamic loss scale (official: apex O1 through IterBasedRunnerAmp and
# use_fp16=True; mmseg: AmpOptimWrapper). L/XL override this with a plain fp32 OptimWrapper.
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    constructor='ConvNeXtLayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise', num_layers=12))

# Linear warm-up from lr x 1e-6 over 1500 iterations, then poly (power 1) to 0 at 160k.
# official vs mmseg: mmcv 0.x's poly policy decays over all 160k iterations from iteration 0
# and the warm-up scales that; mmseg 1.x (and this config) starts PolyLR after the warm-up.
# The lr curves differ by < 1% of the base lr.
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, begin=1500, end=160000, eta_min=0.0, by_epoch=False),
]

auto_scale_lr = dict(enable=False, base_batch_size=16)  # 2 images per GPU x 8 GPUs
