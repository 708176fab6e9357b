# convnext_l_in22k_ade20k_640.py with multi-scale (0.5-1.75x) + flip testing through mmseg's TTA:
#   python tools/test.py configs/upernet/convnext_l_in22k_ade20k_640_ms.py CHECKPOINT --tta
# (mmseg's test.py then tests tta_model wrapping model on tta_pipeline). Training with this
# file is the same as with convnext_l_in22k_ade20k_640.py.
_base_ = ['./convnext_l_in22k_ade20k_640.py']

# Each scale is inferred on the whole image, as the official ms+flip numbers were (the
# official *_ms.py / 640 configs keep upernet_convnext.py's test_cfg mode='whole'; mmseg has
# no ms configs). tta_model and tta_pipeline (scales 0.5-1.75 x flip) come from mmseg's
# ade20k base.
model = dict(test_cfg=dict(_delete_=True, mode='whole'))
