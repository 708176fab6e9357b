"""RoI features of a ConvNeXt Mask R-CNN: right (torchvision's roi_align as the reference), the same
on both ``roi_ops`` routes through mmdet's multi-level extractor, and under bf16 autocast (no
RoIAlign kernel has bf16; the fp32 extractor keeps the RoIs' coordinates exact)."""
import pytest
import torch

from convnext_dense.ops import roi_ops_mode
from tests.helpers import build_mask_rcnn
from tests.numerics import assert_close_to_reference, tolerance

STRIDES = [4, 8, 16, 32]


def det_inputs():
    from convnext_dense.testing import det_batch
    return det_batch(2, 64, 96, instances=3)


def loss_under_bf16(model):
    data = model.data_preprocessor(det_inputs(), training=True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    return loss


def extractor(kind='SingleRoIExtractor', output_size=7, channels=8):
    """mmdet's RoI extractor as the configs set it (RoIAlign, sampling ratio 0, aligned)."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    return MODELS.build(dict(
        type=kind, roi_layer=dict(type='RoIAlign', output_size=output_size, sampling_ratio=0),
        out_channels=channels, featmap_strides=STRIDES))


def fpn_features(size=512, channels=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(2, channels, size // s, size // s, generator=generator)
                 for s in STRIDES)


def multi_level_rois(size=512):
    """RoIs for each of the four levels (mmdet maps sqrt(area) < 112, 224, 448, above), some on
    or past the image's borders, in both images."""
    sides = torch.tensor([20., 60., 150., 200., 300., 400., 600., 800.])
    corners = torch.tensor([[5., 7.], [size - 61., 0.], [-30., 100.], [200., 250.],
                            [size - 300., size - 300.], [50., 60.], [-100., -50.], [0., 0.]])
    boxes = torch.cat([corners, corners + sides[:, None]], dim=1)
    index = torch.tensor([0., 1., 0., 1., 0., 1., 0., 1.])[:, None]
    return torch.cat([index, boxes], dim=1)


@pytest.mark.parametrize('output_size', [7, 14])
def test_multi_level_extractor_same_on_both_routes(output_size):
    """mmdet's SingleRoIExtractor over four FPN levels: features and their gradients equal on
    mmcv's and torchvision's RoIAlign; no RoIs give empty features and zero gradients."""
    layer = extractor(output_size=output_size)
    rois = multi_level_rois()
    assert set(layer.map_roi_levels(rois, 4).tolist()) == {0, 1, 2, 3}
    results = {}
    for value in ('mmcv', 'torchvision'):
        feats = tuple(f.requires_grad_() for f in fpn_features())
        with roi_ops_mode(value):
            out = layer(feats, rois)
            grads = torch.autograd.grad(out, feats, torch.ones_like(out) / out.numel())
            empty = layer(feats, rois[:0])
            empty_grads = torch.autograd.grad(empty.sum(), feats, allow_unused=True)
        assert empty.shape == (0, 8, output_size, output_size)
        assert all(g is None or not g.any() for g in empty_grads)
        results[value] = out, grads
    (out, grads), (out_tv, grads_tv) = results['mmcv'], results['torchvision']
    # per output: the mean of up to ceil(bin)^2 bilinear samples of 4 corners each (at most 4
    # x 4 cells per bin on a RoI's level); a feature's gradient adds those of every RoI over it
    samples = 16
    assert_close_to_reference(out_tv, out, 4 * samples, name='RoI features')
    for level, (grad, grad_tv) in enumerate(zip(grads, grads_tv)):
        assert grad.abs().sum() > 0, level
        assert_close_to_reference(grad_tv, grad, 4 * samples * output_size ** 2 * len(rois),
                                  name=f'level {level} gradient')


@pytest.mark.parametrize('value', ['mmcv', 'torchvision'])
def test_bf16_extraction_keeps_the_rois(value):
    """Under bf16 autocast mmdet's extractor casts the RoIs to bf16 (a corner at 1001 px moves
    to 1000) and its features move by far more than a bf16 rounding; the fp32 extractor gives
    the fp32 features of the bf16 feature maps, on either route."""
    feats = tuple(f.bfloat16() for f in fpn_features(size=1280, channels=4))
    rois = torch.tensor([[0., 1001., 1001., 1023., 1023.], [1., 1021., 999., 1043., 1017.]])
    reference = extractor(channels=4)(tuple(f.float() for f in feats), rois)
    with roi_ops_mode(value), torch.autocast('cpu', dtype=torch.bfloat16):
        fp32 = extractor('FP32SingleRoIExtractor', channels=4)(feats, rois)
        plain = extractor(channels=4)(feats, rois)
    assert fp32.dtype == torch.float32 and torch.equal(fp32, reference)
    assert plain.dtype == torch.bfloat16
    assert (plain.float() - reference).abs().max() > tolerance(reference, 1, torch.bfloat16)


def test_no_bf16_kernel_in_either_library():
    """Why bf16 runs in fp32: neither mmcv's nor torchvision's CPU kernels take bf16 (their CUDA
    sources dispatch fp32, fp64 and fp16 only)."""
    import mmcv._ext
    feats, rois = torch.randn(1, 2, 8, 8).bfloat16(), torch.tensor([[0., 1., 1., 6., 6.]])
    with pytest.raises((RuntimeError, NotImplementedError), match='BFloat16'):
        mmcv._ext.roi_align_forward(feats, rois.bfloat16(), feats.new_zeros(1, 2, 2, 2),
                                    feats.new_zeros(0), feats.new_zeros(0), aligned_height=2,
                                    aligned_width=2, spatial_scale=1.0, sampling_ratio=0,
                                    pool_mode=1, aligned=True)
    import torchvision.ops
    with pytest.raises(RuntimeError, match='BFloat16'):
        torch.ops.torchvision.roi_align(feats, rois.bfloat16(), 1.0, 2, 2, 0, True)
    boxes = torch.tensor([[0., 0., 4., 4.], [1., 1., 5., 5.]]).bfloat16()
    with pytest.raises(RuntimeError):
        mmcv._ext.nms(boxes, boxes[:, 0], iou_threshold=0.5, offset=0)
    with pytest.raises(RuntimeError, match='BFloat16'):
        torchvision.ops.nms(boxes, boxes[:, 0], 0.5)


def test_fp32_extractor_trains_under_bf16():
    torch.manual_seed(0)
    # 64 RoIs per image, not 512: the box head's bf16 matrix products over 512 take most of a
    # minute on a CPU without bf16 instructions, and the count does not change the code path
    model = build_mask_rcnn('atto', fp32_roi=True, rcnn_samples=64).train()
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
