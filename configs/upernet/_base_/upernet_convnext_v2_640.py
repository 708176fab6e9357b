# UperNet ConvNeXt V2 on ADE20K at 640x640 crops (Woo et al. 2023, Table 7: V2-H with IN-22K
# fine-tuning): upernet_convnext_640.py with a V2 backbone (GRN, no layer scale), and the
# multi-scale test of upernet_convnext_v2_512.py on the 2560x640 test scale. See
# upernet_convnext_v2_512.py for the recipe values chosen.
_base_ = ['./upernet_convnext_640.py']

model = dict(backbone=dict(version='v2', layer_scale_init_value=0.))

# 2560x640 x 0.75-1.25 (step 0.125), with and without flip
tta_scales = [(1920, 480), (2240, 560), (2560, 640), (2880, 720), (3200, 800)]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='TestTimeAug',
         transforms=[[dict(type='Resize', scale=scale, keep_ratio=True) for scale in tta_scales],
                     *_base_.tta_pipeline[1].transforms[1:]]),
]
