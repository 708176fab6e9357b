"""`custom_imports=dict(imports=['convnext_dense'])` makes `type='ConvNeXt'` and the decay
constructor resolve from mmdet's and mmseg's registries, and full detectors/segmentors run."""
import subprocess
import sys

import torch

from tests.helpers import build_mask_rcnn, build_upernet

FRESH_INTERPRETER_CHECK = """
from mmengine.config import Config
from mmengine.utils import import_modules_from_strings
cfg = Config(dict(custom_imports=dict(imports=['convnext_dense'], allow_failed_imports=False),
                  backbone=dict(type='ConvNeXt', arch='atto')))
import_modules_from_strings(**cfg.custom_imports)
from mmdet.registry import MODELS as DET, OPTIM_WRAPPER_CONSTRUCTORS as DET_OPT
from mmseg.registry import MODELS as SEG, OPTIM_WRAPPER_CONSTRUCTORS as SEG_OPT
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as ROOT_OPT
from convnext_dense.models import ConvNeXt
from convnext_dense.optim import ConvNeXtLayerDecayOptimWrapperConstructor as Constructor
assert type(DET.build(cfg.backbone)) is ConvNeXt
assert type(SEG.build(cfg.backbone)) is ConvNeXt
name = 'ConvNeXtLayerDecayOptimWrapperConstructor'
assert DET_OPT.get(name) is SEG_OPT.get(name) is not None
assert ROOT_OPT.get(name) is DET_OPT.get(name) is SEG_OPT.get(name) is Constructor
print('ok')
"""


def test_config_only_plugin_in_fresh_interpreter():
    result = subprocess.run([sys.executable, '-c', FRESH_INTERPRETER_CHECK],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith('ok')


CONSTRUCTOR = 'ConvNeXtLayerDecayOptimWrapperConstructor'


def test_registries_build_our_classes():
    from mmdet.registry import MODELS as DET
    from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS as DET_OPT
    from mmengine.registry import MODELS as ROOT
    from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as ROOT_OPT
    from mmseg.registry import MODELS as SEG
    from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS as SEG_OPT

    from convnext_dense.models import ConvNeXt
    from convnext_dense.optim import ConvNeXtLayerDecayOptimWrapperConstructor
    for registry in (ROOT, DET, SEG):
        backbone = registry.build(dict(type='ConvNeXt', arch='atto'))
        assert type(backbone) is ConvNeXt, (registry.name, type(backbone))
        assert list(backbone.out_channels) == [40, 80, 160, 320]  # atto, not the default
    optim_wrapper_cfg = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4))
    for registry in (ROOT_OPT, DET_OPT, SEG_OPT):
        assert registry.get(CONSTRUCTOR) is ConvNeXtLayerDecayOptimWrapperConstructor
        constructor = registry.build(dict(type=CONSTRUCTOR, optim_wrapper_cfg=optim_wrapper_cfg,
                                          paramwise_cfg=dict(decay_rate=0.9,
                                                             decay_type='stage_wise')))
        assert type(constructor) is ConvNeXtLayerDecayOptimWrapperConstructor
        assert (constructor.decay_rate, constructor.decay_type) == (0.9, 'stage_wise')
    # mmdet's and mmseg's own decay constructors keep their names (no clash with ours)
    assert DET_OPT.get('LearningRateDecayOptimizerConstructor').__module__.startswith('mmdet.')
    assert SEG_OPT.get('LearningRateDecayOptimizerConstructor').__module__.startswith('mmseg.')


def test_mask_rcnn_with_convnext_runs():
    from mmdet.structures import DetDataSample
    model = build_mask_rcnn('atto').eval()
    sample = DetDataSample(metainfo=dict(img_shape=(64, 96), ori_shape=(64, 96),
                                         scale_factor=(1., 1.), pad_shape=(64, 96),
                                         batch_input_shape=(64, 96)))
    with torch.no_grad():
        results = model(torch.randn(1, 3, 64, 96), [sample], mode='predict')
    assert hasattr(results[0], 'pred_instances')
    assert model.backbone.out_channels == model.neck.in_channels


def test_upernet_with_convnext_runs():
    model = build_upernet('atto').eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 64, 64), mode='tensor')
    assert logits.shape == (1, model.decode_head.num_classes, 16, 16)
