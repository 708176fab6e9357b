#!/usr/bin/env bash
# The README's main job (`make demo`). Until the toy dataset and the train/test tools land, it
# runs a smoke job: a Mask R-CNN and an UperNet with a ConvNeXt-atto backbone, built from
# mmdet's and mmseg's own configs through the plugin, each doing three training steps with
# the layer-decay optimizer on random images, and printing their losses.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python - <<'PY'
import torch
from mmengine.optim import build_optim_wrapper
from tests.helpers import build_upernet

torch.manual_seed(0)
model = build_upernet('atto')
wrapper = build_optim_wrapper(model, dict(
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
    constructor='ConvNeXtLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise', num_layers=6)))
from mmseg.structures import SegDataSample
from mmengine.structures import PixelData
images = torch.rand(2, 3, 64, 64) * 255
samples = []
for i in range(2):
    s = SegDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64), pad_shape=(64, 64)))
    s.gt_sem_seg = PixelData(data=(torch.rand(1, 64, 64) * 19).long())
    samples.append(s)
for step in range(3):
    losses = model.train_step(dict(inputs=list(images.byte()), data_samples=samples), wrapper)
    print(f'UperNet ConvNeXt-atto step {step}: ' +
          ', '.join(f'{k}={v.item():.4f}' for k, v in losses.items()))
PY
