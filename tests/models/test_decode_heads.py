"""The chunked segmentation loss (ChunkedLossUPerHead / ChunkedLossFCNHead) against mmseg's own
UPerHead / FCNHead ``loss_by_feat`` on the same logits: loss values, gradients with respect to
the low-resolution logits, ``acc_seg``; the bands' upsampling against ``F.interpolate``;
recording every tensor the forward and backward allocate, that no full-resolution map is; and
that the loss never makes the host wait for the device."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from convnext_dense.models.decode_heads import _upsample, plan_chunks
from tests.helpers import no_host_round_trip
from tests.numerics import assert_close_to_reference

NUM_CLASSES = 5
IGNORE = 255
HEADS = {  # the mmseg head -> a tiny configuration of it
    'UPerHead': dict(in_channels=[4, 4, 4, 4], in_index=[0, 1, 2, 3], channels=4),
    'FCNHead': dict(in_channels=4, in_index=0, channels=4, num_convs=1),
}
CLASS_WEIGHT = [1.0, 2.0, 0.5, 1.5, 3.0]
CE = 'CrossEntropyLoss'
# name -> (loss_decode, logits (h, w), labels (H, W), ignored pixels, align_corners)
CASES = {
    'default': (dict(type=CE), (7, 9), (30, 37), True, False),
    'avg_non_ignore': (dict(type=CE, avg_non_ignore=True), (7, 9), (30, 37), True, False),
    'two_losses': ([dict(type=CE, loss_weight=1.0),
                    dict(type=CE, loss_weight=0.4, avg_non_ignore=True, loss_name='loss_b')],
                   (8, 8), (32, 32), True, False),
    # the same loss_name adds up; reduction 'sum'
    'same_name': ([dict(type=CE, loss_weight=1.0),
                   dict(type=CE, loss_weight=0.5, reduction='sum')], (7, 9), (30, 37), True,
                  False),
    # both stacks compute mmseg's class-weighted mean here (no ignored pixel, the default
    # avg_non_ignore); test_class_weights_with_ignored_pixels covers the rest
    'class_weight': (dict(type=CE, class_weight=CLASS_WEIGHT, loss_weight=0.7), (7, 9),
                     (30, 37), False, False),
    'align_corners': (dict(type=CE), (7, 9), (30, 37), True, True),
    'downsample': (dict(type=CE, avg_non_ignore=True), (20, 24), (13, 17), True, False),
    'same_size': (dict(type=CE), (16, 12), (16, 12), True, False),
}


def build_head(kind: str, loss_decode, align_corners: bool = False, **extra):
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules()
    return MODELS.build(dict(type=kind, **HEADS[kind.removeprefix('ChunkedLoss')],
                             num_classes=NUM_CLASSES, norm_cfg=dict(type='BN'),
                             align_corners=align_corners, loss_decode=copy.deepcopy(loss_decode),
                             **extra))


def batch(num_images: int, logits_size, label_size, ignored: bool, seed: int = 0):
    """Random low-resolution logits and label maps (with a block and scattered pixels at the
    ignore index where ``ignored``) as mmseg's data samples."""
    from mmseg.structures import SegDataSample
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(num_images, NUM_CLASSES, *logits_size, generator=generator) * 3
    labels = torch.randint(0, NUM_CLASSES, (num_images, 1, *label_size), generator=generator)
    if ignored:
        labels[:, :, :label_size[0] // 3, :label_size[1] // 2] = IGNORE
        labels[torch.rand(labels.shape, generator=generator) < 0.1] = IGNORE
    return logits, [SegDataSample(gt_sem_seg=PixelData(data=label)) for label in labels]


def losses_and_grad(head, logits: torch.Tensor, samples, dtype=None):
    """``head.loss_by_feat`` on a copy of ``logits`` (in ``dtype``), and the gradient of the sum
    of its loss terms with respect to that copy."""
    logits = logits.detach().to(dtype or logits.dtype).requires_grad_()
    losses = head.loss_by_feat(logits, samples)
    sum(value for name, value in losses.items() if name.startswith('loss')).backward()
    return losses, logits.grad


def depths(logits_size, label_size, num_images: int) -> tuple[int, int]:
    """Reduction depths of the loss (a sum over every label pixel of a log-sum-exp over the
    classes of 4-term bilinear interpolations) and of a gradient element (a sum over the label
    pixels that read that logit, per axis at most 2 x ceil(out / in) + 2, of the same
    per-pixel terms)."""
    (h, w), (height, width) = logits_size, label_size
    per_pixel = NUM_CLASSES + 4
    reads = (2 * math.ceil(height / h) + 2) * (2 * math.ceil(width / w) + 2)
    return num_images * height * width + per_pixel, reads + per_pixel


@pytest.mark.parametrize('kind', HEADS)
@pytest.mark.parametrize('case', CASES)
def test_loss_grad_and_accuracy_match_mmseg(kind, case):
    loss_decode, logits_size, label_size, ignored, align_corners = CASES[case]
    # chunks of 3 rows and a last one of 1 row (30 = 9 x 3 + 3: 37-wide rows, 116 pixels)
    ours = build_head(f'ChunkedLoss{kind}', loss_decode, align_corners, loss_chunk_pixels=116)
    assert ours.full_resolution_loss_reason is None
    reference = build_head(kind, loss_decode, align_corners)
    logits, samples = batch(3, logits_size, label_size, ignored)
    expected, expected_grad = losses_and_grad(reference, logits, samples)
    actual, grad = losses_and_grad(ours, logits, samples)
    assert actual.keys() == expected.keys()
    loss_depth, grad_depth = depths(logits_size, label_size, len(samples))
    for name, value in expected.items():
        if name.startswith('loss'):
            assert_close_to_reference(actual[name], value, loss_depth, name=name)
    assert torch.equal(actual['acc_seg'], expected['acc_seg'])
    assert_close_to_reference(grad, expected_grad, grad_depth, name='d loss / d logits')


@pytest.mark.parametrize('avg_non_ignore', [False, True])
def test_class_weights_with_ignored_pixels(avg_non_ignore):
    """The class-weighted mean over the non-ignored pixels, as torch's cross_entropy; where the
    installed mmseg computes one (onedl-mmsegmentation, avg_non_ignore=False) it is the same,
    elsewhere it raises IndexError (see ChunkedSegLossMixin)."""
    from mmseg.models.losses import accuracy
    loss_decode = dict(type=CE, class_weight=CLASS_WEIGHT, loss_weight=0.7,
                       avg_non_ignore=avg_non_ignore)
    ours = build_head('ChunkedLossUPerHead', loss_decode, loss_chunk_pixels=116)
    logits, samples = batch(2, (7, 9), (30, 37), ignored=True)
    labels = torch.stack([sample.gt_sem_seg.data for sample in samples]).squeeze(1)
    leaf = logits.clone().requires_grad_()
    upsampled = F.interpolate(leaf, size=(30, 37), mode='bilinear', align_corners=False)
    expected = 0.7 * F.cross_entropy(upsampled, labels, weight=torch.tensor(CLASS_WEIGHT),
                                     ignore_index=IGNORE)
    expected.backward()
    expected_grad = leaf.grad
    actual, grad = losses_and_grad(ours, logits, samples)
    loss_depth, grad_depth = depths((7, 9), (30, 37), 2)
    assert_close_to_reference(actual['loss_ce'], expected, loss_depth, name='loss_ce')
    assert_close_to_reference(grad, expected_grad, grad_depth, name='d loss / d logits')
    assert torch.equal(actual['acc_seg'], accuracy(upsampled, labels, ignore_index=IGNORE))
    try:
        mmseg_losses = build_head('UPerHead', loss_decode).loss_by_feat(logits, samples)
    except IndexError:
        return
    assert_close_to_reference(actual['loss_ce'], mmseg_losses['loss_ce'], loss_depth)


def test_autocast_loss_is_fp32():
    """Under bf16 autocast the loss is mmseg's fp32 one on the bf16 logits, and the gradient
    comes back in bf16."""
    loss_decode = dict(type=CE, avg_non_ignore=True)
    ours = build_head('ChunkedLossUPerHead', loss_decode, loss_chunk_pixels=116)
    logits, samples = batch(2, (7, 9), (30, 37), ignored=True)
    logits = logits.bfloat16()
    expected, expected_grad = losses_and_grad(build_head('UPerHead', loss_decode), logits,
                                              samples, torch.float32)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        actual, grad = losses_and_grad(ours, logits, samples)
    loss_depth, _ = depths((7, 9), (30, 37), 2)
    assert actual['loss_ce'].dtype == torch.float32 and grad.dtype == torch.bfloat16
    assert_close_to_reference(actual['loss_ce'], expected['loss_ce'], loss_depth)
    assert torch.equal(actual['acc_seg'], expected['acc_seg'])
    # the fp32 gradient rounded once to bf16
    assert_close_to_reference(grad.float(), expected_grad, 1, dtype=torch.bfloat16)


@pytest.mark.parametrize('align_corners', [False, True])
@pytest.mark.parametrize('sizes', [((7, 9), (30, 37)), ((8, 8), (32, 32)), ((20, 24), (13, 17)),
                                   ((5, 6), (5, 6)), ((1, 3), (4, 7)), ((6, 5), (18, 20)),
                                   ((4, 4), (64, 64))])
@pytest.mark.parametrize('max_pixels', [1, 40, 500, 10 ** 6])
def test_chunks_upsample_as_interpolate(sizes, align_corners, max_pixels):
    """Every (image, output row) in exactly one chunk of at most max_pixels (or one row; f rows
    for a whole factor f), and each chunk's values those of F.interpolate on the whole map
    (bilinear: 4 terms); bit for bit with align_corners=False and a power-of-two factor, where
    every coordinate is exact."""
    (h, w), (height, width) = sizes
    logits = torch.randn(3, 4, h, w, generator=torch.Generator().manual_seed(0))
    expected = F.interpolate(logits, size=(height, width), mode='bilinear',
                             align_corners=align_corners)
    factor = height // h if height % h == 0 else 1
    exact = not align_corners and height % h == 0 and factor & (factor - 1) == 0
    covered = torch.zeros(3, height, dtype=torch.long)
    for chunk in plan_chunks(3, (h, w), (height, width), align_corners, max_pixels):
        images, rows = chunk.images, chunk.rows
        pixels = (images.stop - images.start) * (rows.stop - rows.start) * width
        assert pixels <= max(max_pixels, factor * width), chunk
        covered[images, rows] += 1
        actual = _upsample(logits[images, :, chunk.source_rows], chunk, width, align_corners)
        if chunk.crop is not None:  # a taller band
            actual = actual[:, :, chunk.crop]
        if exact:
            assert torch.equal(actual, expected[images, :, rows]), chunk
        else:
            assert_close_to_reference(actual, expected[images, :, rows], 4)
    assert torch.equal(covered, torch.ones_like(covered))


class AllocationRecorder(TorchDispatchMode):
    """The storage size, dtype and operator of every tensor an operator returns (views share
    their base's storage, so a view of a small tensor stays small)."""

    def __init__(self):
        super().__init__()
        self.allocations: list[tuple[int, torch.dtype, str]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(result):
            if isinstance(tensor, torch.Tensor):
                self.allocations.append((tensor.untyped_storage().nbytes(), tensor.dtype,
                                         str(func)))
        return result


@pytest.mark.parametrize('autocast', [False, True])
def test_no_full_resolution_logits(autocast):
    """mmseg's path allocates the N x C x H x W fp32 map (the recorder sees it); ours, forward
    and backward, allocates no floating-point tensor larger than one band (C x
    loss_chunk_pixels fp32 values, plus the rows of the padding) or the low-resolution logits'
    fp32 gradient."""
    num_images, logits_size, label_size, chunk_pixels = 4, (16, 16), (64, 64), 1024
    full_map = num_images * NUM_CLASSES * label_size[0] * label_size[1] * 4
    loss_decode = [dict(type=CE), dict(type=CE, loss_weight=0.4, loss_name='loss_b')]
    logits, samples = batch(num_images, logits_size, label_size, ignored=True)
    if autocast:
        logits = logits.bfloat16()
    largest = {}
    for kind in ('UPerHead', 'ChunkedLossUPerHead'):
        extra = dict(loss_chunk_pixels=chunk_pixels) if kind.startswith('Chunked') else {}
        head = build_head(kind, loss_decode, **extra)
        with AllocationRecorder() as recorder, \
                torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
            losses_and_grad(head, logits, samples)
        # the labels (N x H x W int64) are the same input to both
        largest[kind] = max(a for a in recorder.allocations if a[1].is_floating_point)
    assert largest['UPerHead'][:2] == (full_map, torch.float32), largest
    # a band of 16 rows is upsampled from its source rows with one more on each side: 4 more
    # output rows each
    band = NUM_CLASSES * (chunk_pixels + 2 * 4 * label_size[1]) * 4
    assert largest['ChunkedLossUPerHead'][0] <= max(band, logits.numel() * 4), largest


@pytest.mark.parametrize('case', ['default', 'avg_non_ignore', 'two_losses', 'same_name',
                                  'class_weight', 'align_corners'])
def test_loss_makes_no_host_round_trip(case, monkeypatch):
    """Loss, gradient and acc_seg without an op that waits for the device (a count read back,
    boolean-mask indexing, bincount) or a copy of host data to it, with the values computed
    outside the guard. The first call, outside, plans the chunks of the shape (host
    arithmetic, cached per shape) and copies the class weights (once per device)."""
    loss_decode, logits_size, label_size, _, align_corners = CASES[case]
    head = build_head('ChunkedLossUPerHead', loss_decode, align_corners, loss_chunk_pixels=116)
    logits, samples = batch(2, logits_size, label_size, ignored=True)
    expected, expected_grad = losses_and_grad(head, logits, samples)
    with monkeypatch.context() as patch:
        for name in ('tensor', 'as_tensor'):
            def refuse(*args, _name=name, **kwargs):
                raise AssertionError(f'host data copied to the device: torch.{_name}')
            patch.setattr(torch, name, refuse)
        with no_host_round_trip(monkeypatch):
            actual, grad = losses_and_grad(head, logits, samples)
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(actual[name], value), name
    assert torch.equal(grad, expected_grad)


def test_host_sync_guard_refuses_mmsegs_loss(monkeypatch):
    """The guard of test_loss_makes_no_host_round_trip sees the syncs of mmseg's own loss
    (its accuracy indexes by a boolean mask)."""
    logits, samples = batch(2, (7, 9), (30, 37), ignored=True)
    head = build_head('UPerHead', dict(type=CE))
    with pytest.raises(AssertionError, match='host sync'):
        with no_host_round_trip(monkeypatch):
            losses_and_grad(head, logits, samples)


def test_fallbacks_to_mmseg():
    """A sampler or a loss over the whole map: mmseg's own loss_by_feat, bit for bit."""
    logits, samples = batch(2, (7, 9), (30, 37), ignored=True)
    configs = {
        'sampler': dict(loss_decode=dict(type=CE),
                        sampler=dict(type='OHEMPixelSampler', thresh=0.7, min_kept=100)),
        'DiceLoss': dict(loss_decode=[dict(type=CE), dict(type='DiceLoss')]),
        "reduction='none'": dict(loss_decode=dict(type=CE, reduction='none')),
        'use_sigmoid': dict(loss_decode=dict(type=CE, use_sigmoid=True)),
    }
    for reason, config in configs.items():
        config = copy.deepcopy(config)
        loss_decode = config.pop('loss_decode')
        ours = build_head('ChunkedLossUPerHead', loss_decode, **config)
        assert reason in ours.full_resolution_loss_reason
        expected = build_head('UPerHead', loss_decode, **config).loss_by_feat(logits, samples)
        actual = ours.loss_by_feat(logits, samples)
        assert actual.keys() == expected.keys()
        for name in expected:
            assert torch.equal(actual[name], expected[name]), (reason, name)


def test_bad_arguments():
    with pytest.raises(ValueError, match='loss_chunk_pixels=0'):
        build_head('ChunkedLossFCNHead', dict(type=CE), loss_chunk_pixels=0)
    head = build_head('ChunkedLossFCNHead', dict(type=CE, class_weight=[1.0, 2.0]))
    logits, samples = batch(1, (7, 9), (30, 37), ignored=True)
    with pytest.raises(ValueError, match="'loss_ce': class_weight has shape"):
        head.loss_by_feat(logits, samples)


def test_toy_config_model_trains_as_with_mmseg_heads():
    """The toy UperNet config (ChunkedLoss heads): the same losses and parameter gradients as
    the same model with mmseg's UPerHead / FCNHead."""
    from mmengine.config import Config
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    from convnext_dense.testing import seg_batch
    from tests.helpers import ROOT
    register_all_modules()
    cfg = Config.fromfile(str(ROOT / 'configs/upernet/convnext_atto_toy.py'))
    assert cfg.model.decode_head.type == 'ChunkedLossUPerHead'
    assert cfg.model.auxiliary_head.type == 'ChunkedLossFCNHead'
    cfg.model.data_preprocessor.size = (64, 64)
    data = seg_batch(2, 64, 64, num_classes=NUM_CLASSES)
    for sample in data['data_samples']:  # ignored pixels, as reduce_zero_label makes them
        sample.gt_sem_seg.data[:, :16, :32] = IGNORE
    results = {}
    for decode, auxiliary in (('ChunkedLossUPerHead', 'ChunkedLossFCNHead'),
                              ('UPerHead', 'FCNHead')):
        model_cfg = copy.deepcopy(cfg.model)
        model_cfg.decode_head.type, model_cfg.auxiliary_head.type = decode, auxiliary
        torch.manual_seed(0)
        model = MODELS.build(model_cfg).train()
        torch.manual_seed(1)  # the same drop path and dropout draws
        batch_data = model.data_preprocessor(copy.deepcopy(data), training=True)
        losses = model(**batch_data, mode='loss')
        loss, _ = model.parse_losses(losses)
        loss.backward()
        results[decode] = losses, {name: param.grad for name, param in model.named_parameters()}
    (actual, grads), (expected, expected_grads) = results.values()
    assert actual.keys() == expected.keys()
    loss_depth, _ = depths((16, 16), (64, 64), 2)
    for name, value in expected.items():
        if name.endswith('acc_seg'):
            assert torch.equal(actual[name], value), name
        else:
            assert_close_to_reference(actual[name], value, loss_depth, name=name)
    # the conv_seg weights gather their gradient over every logit: depth of the whole loss
    for name in ('decode_head.conv_seg.weight', 'auxiliary_head.conv_seg.weight'):
        assert_close_to_reference(grads[name], expected_grads[name], loss_depth, name=name)
