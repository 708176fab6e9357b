"""The compiled mmcv ops that mmdet's detectors run on this stack (RoIAlign, NMS, batched NMS),
checked against torchvision's implementations: the wheel that tools/setup_env.sh builds from
the mmcv sources (C++20, precompiled torch headers) must compute what they compute."""
import pytest
import torch
from mmcv.ops import RoIAlign, batched_nms, nms
from torchvision.ops import batched_nms as tv_batched_nms
from torchvision.ops import nms as tv_nms
from torchvision.ops import roi_align as tv_roi_align

from tests.numerics import assert_close_to_reference


def random_boxes(count: int, generator: torch.Generator, size: float = 100.) -> torch.Tensor:
    xy = torch.rand(count, 2, generator=generator) * size
    wh = torch.rand(count, 2, generator=generator) * size / 2 + 1
    return torch.cat([xy, xy + wh], dim=1)


def test_nms_keeps_what_torchvision_keeps():
    generator = torch.Generator().manual_seed(0)
    boxes = random_boxes(300, generator)
    scores = torch.randperm(300, generator=generator).float() / 300  # distinct: one order
    for iou_threshold in (0.3, 0.5, 0.7):
        dets, keep = nms(boxes, scores, iou_threshold)
        expected = tv_nms(boxes, scores, iou_threshold)
        assert torch.equal(keep, expected), iou_threshold
        assert torch.equal(dets[:, :4], boxes[expected])


def test_batched_nms_keeps_what_torchvision_keeps():
    generator = torch.Generator().manual_seed(1)
    boxes = random_boxes(400, generator)
    scores = torch.randperm(400, generator=generator).float() / 400
    labels = torch.randint(0, 5, (400, ), generator=generator)
    _, keep = batched_nms(boxes, scores, labels, dict(type='nms', iou_threshold=0.5))
    expected = tv_batched_nms(boxes, scores, labels, 0.5)
    assert sorted(keep.tolist()) == sorted(expected.tolist())


@pytest.mark.parametrize('aligned', [True, False])
@pytest.mark.parametrize('sampling_ratio', [0, 2])
def test_roi_align_forward_and_backward_match_torchvision(aligned, sampling_ratio):
    generator = torch.Generator().manual_seed(2)
    feats = torch.randn(2, 8, 24, 32, generator=generator, requires_grad=True)
    boxes = random_boxes(12, generator, size=100.)
    rois = torch.cat([torch.randint(0, 2, (12, 1), generator=generator).float(), boxes], dim=1)
    spatial_scale = 1 / 4
    ours = RoIAlign((7, 7), spatial_scale, sampling_ratio, aligned=aligned)(feats, rois)
    reference = tv_roi_align(feats, rois, (7, 7), spatial_scale, sampling_ratio,
                             aligned=aligned)
    # per output: the mean of up to ceil(bin)^2 bilinear samples of 4 corners each
    bins = torch.ceil((boxes[:, 2:] - boxes[:, :2]) * spatial_scale / 7).prod(dim=1).max()
    samples = 4 if sampling_ratio else int(bins.item())
    assert_close_to_reference(ours, reference, depth=4 * samples, name='RoIAlign forward')
    grad = torch.randn(ours.shape, generator=generator)
    (ours_grad, ) = torch.autograd.grad(ours, feats, grad)
    (reference_grad, ) = torch.autograd.grad(reference, feats, grad)
    # a feature's gradient sums the contributions of every sample of every RoI over it
    assert_close_to_reference(ours_grad, reference_grad, depth=4 * samples * 49 * 12,
                              name='RoIAlign backward')
