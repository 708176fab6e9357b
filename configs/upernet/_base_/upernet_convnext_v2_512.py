# UperNet ConvNeXt V2 on ADE20K at 512x512 crops (Woo et al. 2023, Appendix A.4): the V1 setup of
# upernet_convnext_512.py (160k iterations of 16 images, 512x512 crops, AdamW wd 0.05, warm-up +
# poly, sliding-window single-scale test) with a V2 backbone (GRN, no layer scale) initialised
# from the IN-1K (or IN-22K) fine-tuned weights, and the V2 paper's multi-scale test.
#
# The paper sweeps layer decay {0.8, 0.9}, lr {1e-4, 2e-4, 3e-4} and drop path
# {0.1, ..., 0.4} without saying which it chose, and no config is published (neither officially
# nor in mmseg). The size files take the V1 paper's ADE20K values for the same sizes, which lie
# inside every one of these sweeps: lr 1e-4, stage-wise decay 0.9 over 12 layers (the grouping of
# the V1 segmentation code, by the same authors), drop path 0.4.
_base_ = ['./upernet_convnext_512.py']

model = dict(backbone=dict(version='v2', layer_scale_init_value=0.))

# Multi-scale test of the paper: the 2048x512 test scale times 0.75-1.25 (step 0.125), each
# with and without a horizontal flip, inferred on the whole image (the *_ms.py files set
# test_cfg mode='whole', as V1's). mmseg's ade20k base scales the original image by its
# ratios instead; this scales the test resize itself, as mmseg 0.x's MultiScaleFlipAug did. The
# flips, annotation loading and packing are mmseg's.
tta_scales = [(1536, 384), (1792, 448), (2048, 512), (2304, 576), (2560, 640)]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='TestTimeAug',
         transforms=[[dict(type='Resize', scale=scale, keep_ratio=True) for scale in tta_scales],
                     *_base_.tta_pipeline[1].transforms[1:]]),
]
