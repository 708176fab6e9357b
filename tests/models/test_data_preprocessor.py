"""BucketDetDataPreprocessor against mmdet's DetDataPreprocessor on the same batches: the same
images, boxes, masks and metas, padded further to the chosen size bucket; the bucket choice and
its documented COCO padding overhead; the LSJ configs' buckets under --compile."""
import copy
import itertools

import pytest
import torch

import convnext_dense  # noqa: F401  (registers BucketDetDataPreprocessor)
from convnext_dense.models.data_preprocessor import (
    COCO_MS_BUCKETS,
    padding_overhead,
    smallest_bucket,
)
from convnext_dense.testing import det_batch
from tests.helpers import ROOT, LogRecords

# mmdet's Mask R-CNN data preprocessor (mmdet::_base_/models/mask-rcnn_r50_fpn.py)
ARGS = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True,
            pad_mask=True, pad_size_divisor=32)


def build(**kwargs):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    return MODELS.build(dict(**ARGS, **kwargs))


def two_sizes_batch():
    """Two images of different sizes, as a multi-scale batch holds them."""
    first, second = det_batch(1, 70, 90, instances=3), det_batch(1, 50, 100, instances=2)
    return dict(inputs=first['inputs'] + second['inputs'],
                data_samples=first['data_samples'] + second['data_samples'])


@pytest.mark.parametrize('training', [True, False])
def test_equals_mmdet_padded_to_the_bucket(training):
    ours = build(type='BucketDetDataPreprocessor', bucket_sizes=[(96, 96), (128, 160)])
    theirs = build(type='DetDataPreprocessor')
    assert type(ours).__name__ == 'BucketDetDataPreprocessor'
    batch = two_sizes_batch()
    out = ours(copy.deepcopy(batch), training=training)
    ref = theirs(copy.deepcopy(batch), training=training)
    # mmdet pads to (96, 128): the batch maximum (70, 100) rounded up to 32; (96, 96) is too
    # narrow, (128, 160) the one bucket that holds it.
    assert ref['inputs'].shape[-2:] == (96, 128)
    assert out['inputs'].shape == (2, 3, 128, 160)
    assert torch.equal(out['inputs'][..., :96, :128], ref['inputs'])
    assert (out['inputs'][..., 96:, :] == 0).all() and (out['inputs'][..., 128:] == 0).all()
    for sample, reference in zip(out['data_samples'], ref['data_samples']):
        assert sample.batch_input_shape == (128, 160)
        for key in ('pad_shape', 'img_shape', 'ori_shape', 'scale_factor'):
            assert sample.metainfo[key] == reference.metainfo[key], key
        assert torch.equal(sample.gt_instances.bboxes, reference.gt_instances.bboxes)
        assert torch.equal(sample.gt_instances.labels, reference.gt_instances.labels)
        masks, ref_masks = sample.gt_instances.masks, reference.gt_instances.masks
        if training:  # mmdet pads masks (pad_mask) to batch_input_shape when training
            assert (masks.height, masks.width) == (128, 160)
            assert (masks.masks[:, :96, :128] == ref_masks.masks).all()
            assert not masks.masks[:, 96:].any() and not masks.masks[:, :, 128:].any()
        else:
            assert (masks.masks == ref_masks.masks).all()


def test_batch_larger_than_every_bucket_is_mmdets_and_logged():
    ours = build(type='BucketDetDataPreprocessor', bucket_sizes=[(64, 64)])
    theirs = build(type='DetDataPreprocessor')
    batch = two_sizes_batch()
    with LogRecords() as records:
        out = ours(copy.deepcopy(batch), training=True)
        ours(copy.deepcopy(batch), training=True)  # the same size again: said once
    ref = theirs(copy.deepcopy(batch), training=True)
    assert torch.equal(out['inputs'], ref['inputs'])
    assert out['data_samples'][0].batch_input_shape == ref['data_samples'][0].batch_input_shape
    messages = [m for m in records if 'larger than every bucket' in m]
    assert len(messages) == 1 and '96x128' in messages[0] and 'compiles again' in messages[0]


def test_smallest_bucket():
    buckets = [(64, 128), (128, 64), (128, 128)]
    assert smallest_bucket(64, 64, buckets) == (64, 128)  # least area, first of equal ones
    assert smallest_bucket(96, 64, buckets) == (128, 64)
    assert smallest_bucket(96, 96, buckets) == (128, 128)
    assert smallest_bucket(160, 32, buckets) is None


def test_padding_overhead_by_hand():
    # (40, 60) alone: mmdet pads to (64, 64), the bucket is (64, 96): 64 x 32 extra pixels.
    # (70, 90) + (50, 60): mmdet (96, 96), bucket (96, 96): none.
    extra, relative = padding_overhead([[(40, 60)], [(70, 90), (50, 60)]],
                                       [(64, 96), (96, 96)])
    assert extra == 64 * 32 / 3
    assert relative == 64 * 32 / (64 * 64 + 2 * 96 * 96)


def test_documented_coco_overhead():
    """The figures in the COCO_MS_BUCKETS comment: the recipe's main branch (mmcv's keep-ratio
    resize to (s, 1333), s = 480..800 step 32) on 640x480 and 640x427 images, 2 per batch."""
    from mmcv.image import rescale_size
    scales = [(s, 1333) for s in range(480, 801, 32)]
    figures = {}
    for width, height in [(640, 480), (640, 427)]:
        sizes = [tuple(reversed(rescale_size((width, height), scale))) for scale in scales]
        figures[width, height] = padding_overhead(itertools.product(sizes, repeat=2),
                                                  COCO_MS_BUCKETS)
    assert round(figures[640, 480][0]) == 112445 and round(figures[640, 480][1], 3) == 0.169
    assert round(figures[640, 427][0]) == 142091 and round(figures[640, 427][1], 3) == 0.190
    assert len(COCO_MS_BUCKETS) == 8  # at most 8 shapes per compiled mode


@pytest.mark.parametrize('buckets', [[(100, 128)], [(128, )], [], [(0, 32)]])
def test_bad_buckets(buckets):
    with pytest.raises(ValueError, match='bucket_sizes'):
        build(type='BucketDetDataPreprocessor', bucket_sizes=buckets)


def _batch(*sizes):
    """One image of each (H, W), as the data loader yields them."""
    batches = [det_batch(1, height, width, instances=2) for height, width in sizes]
    return dict(inputs=[image for b in batches for image in b['inputs']],
                data_samples=[sample for b in batches for sample in b['data_samples']])


@pytest.mark.parametrize('config', sorted((ROOT / 'configs/mask_rcnn').glob('*_lsj_*.py')),
                         ids=lambda path: path.stem)
def test_lsj_configs_compile_path_keeps_the_crop_size(config):
    """--compile's config rewriting on the V2 LSJ configs: a batch of the recipe's 1024x1024
    crops (one full crop, one image the jitter scaled below the crop size) stays 1024x1024,
    where the COCO buckets alone pad it to 1120x1120; a 4:3 test image resized to fit
    1333x800 still finds its COCO bucket."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    from convnext_dense.engine.fast_path import configure_fast_path
    register_all_modules()
    cfg = Config.fromfile(str(config))
    assert 'RandomCrop' in [t.type for t in cfg.train_dataloader.dataset.pipeline]
    crop_size = tuple(cfg.image_size)
    configure_fast_path(cfg, compile=True)
    preprocessor = MODELS.build(cfg.model.data_preprocessor)
    assert type(preprocessor).__name__ == 'BucketDetDataPreprocessor'
    assert set(COCO_MS_BUCKETS) <= set(preprocessor.bucket_sizes)
    batch = _batch(crop_size, (700, 1000))
    out = preprocessor(copy.deepcopy(batch), training=True)
    assert tuple(out['inputs'].shape[-2:]) == crop_size == (1024, 1024)
    assert out['data_samples'][0].gt_instances.masks.masks.shape[-2:] == crop_size
    coco = build(type='BucketDetDataPreprocessor')
    assert tuple(coco(copy.deepcopy(batch), training=True)['inputs'].shape[-2:]) == (1120, 1120)
    # mmcv's keep-ratio resize of 640x480 to fit (1333, 800): 800x1067, padded to 800x1088
    test_out = preprocessor(_batch((800, 1067)), training=False)
    assert tuple(test_out['inputs'].shape[-2:]) == (800, 1120)
