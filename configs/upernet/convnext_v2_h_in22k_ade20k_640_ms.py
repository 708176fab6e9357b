# convnext_v2_h_in22k_ade20k_640.py with the V2 paper's multi-scale test (0.75-1.25 x the test
# scale) + flip through mmseg's TTA:
#   python tools/test.py configs/upernet/convnext_v2_h_in22k_ade20k_640_ms.py CHECKPOINT --tta
# (mmseg's test.py then tests tta_model wrapping model on tta_pipeline). Training with this
# file is the same as with convnext_v2_h_in22k_ade20k_640.py.
_base_ = ['./convnext_v2_h_in22k_ade20k_640.py']

# Each scale is inferred on the whole image, as V1's *_ms.py; tta_pipeline (the paper's scales x
# flip) comes from the V2 base, tta_model from mmseg's ade20k base.
model = dict(test_cfg=dict(_delete_=True, mode='whole'))
