"""RoI features of a ConvNeXt Mask R-CNN: right (torchvision's roi_align as the reference), and
under bf16 autocast (mmcv's RoIAlign has no bf16 kernel; the fp32 extractor runs)."""
import pytest
import torch

from tests.helpers import build_mask_rcnn
from tests.numerics import assert_close_to_reference


def det_inputs():
    from convnext_dense.testing import det_batch
    return det_batch(2, 64, 96, instances=3)


def loss_under_bf16(model):
    data = model.data_preprocessor(det_inputs(), training=True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    return loss


def test_default_extractor_fails_under_bf16():
    torch.manual_seed(0)
    with pytest.raises(NotImplementedError, match='BFloat16'):
        loss_under_bf16(build_mask_rcnn('atto').train())


def test_fp32_extractor_trains_under_bf16():
    torch.manual_seed(0)
    model = build_mask_rcnn('atto', fp32_roi=True).train()
    assert type(model.roi_head.bbox_roi_extractor).__name__ == 'FP32SingleRoIExtractor'
    loss = loss_under_bf16(model)
    assert torch.isfinite(loss)
    loss.backward()
    assert model.backbone.stages[0][0].dwconv.weight.grad is not None
    # in fp32 the extractor is exactly mmdet's
    model.eval()
    feats = tuple(torch.randn(1, 256, 16 // 2**i, 24 // 2**i) for i in range(4))
    rois = torch.tensor([[0., 2., 2., 30., 40.], [0., 10., 5., 60., 60.]])
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
    reference = SingleRoIExtractor(
        roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0), out_channels=256,
        featmap_strides=[4, 8, 16, 32])
    torch.testing.assert_close(model.roi_head.bbox_roi_extractor(feats, rois),
                               reference(feats, rois), rtol=0, atol=0)


@torch.no_grad()
def test_roi_features_match_torchvision_roi_align():
    # Regression: the backbone used to return channels-last strided outputs, on which mmcv
    # 2.1.0's RoIAlign silently reads the wrong memory, so Mask R-CNN could not learn.
    from torchvision.ops import roi_align
    torch.manual_seed(0)
    model = build_mask_rcnn('atto').eval()
    feats = model.neck(model.backbone(torch.randn(2, 3, 96, 128)))
    # boxes under 112 px (sqrt of the area) go to the first FPN level, stride 4
    rois = torch.tensor([[0., 3.5, 4.0, 50.0, 41.2], [1., 30.0, 10.0, 90.0, 70.0],
                         [1., 0.0, 0.0, 20.0, 20.0]])
    reference = roi_align(feats[0], rois, (7, 7), spatial_scale=1 / 4, sampling_ratio=0,
                          aligned=True)
    # Each output averages a grid of ceil(bin size) x ceil(bin size) bilinear samples (sampling
    # ratio 0), each a sum of 4 weighted corners: that many terms per value.
    boxes = rois[:, 3:] - rois[:, 1:3]
    samples = torch.ceil(boxes / 4 / 7).prod(dim=1).max().item()
    assert_close_to_reference(model.roi_head.bbox_roi_extractor(feats[:4], rois), reference,
                              depth=int(4 * samples), name='RoI features')
