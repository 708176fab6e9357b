"""ONNX export (convnext_dense/deployment/onnx_export/, tools/deployment/export_onnx.py) run by
onnxruntime on the CPU against mmseg's and mmdet's own ``predict`` (``test_step``, the path of
``tools/test.py``) on the toy validation images: UperNet class maps and logits, Mask R-CNN and
Cascade Mask R-CNN boxes, scores, labels and masks, at the traced size and, for dynamic exports,
at a second size (not a multiple of the 32-pixel padding).

The default run exports models with weights moved off their init (``perturb_``): the box heads
then score many classes above ``score_thr``, so NMS and ``max_per_img`` work on hundreds of
candidates. The ``slow`` tests export the toy configs trained by ``tools/train.py`` (30
iterations of Mask R-CNN and Cascade Mask R-CNN, 8 of UperNet) at a static shape.
"""
import copy
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hub import get_config

import convnext_dense  # noqa: F401  (registers the plugin)
from convnext_dense.deployment.onnx_export import (
    SymbolicAdaptiveAvgPool2d,
    export_onnx,
    load_model,
    onnx_summary,
    run_onnx,
)
from tests.conftest import TRAINED_DET_ITERS, TRAINED_SEG_ITERS
from tests.helpers import DET_CONFIG, ROOT, SEG_CONFIG, perturb_, run_tool, short_run
from tests.numerics import assert_close_to_reference, reduction_depth, tolerance

SECOND_SIZE = (100, 150)
# Weights moved by 0.01 x N(0, 1) score the 100 detections kept per toy image between 0.3 and
# 0.5; by 0.05, the box heads saturate (every score 1.0: NMS order is then a matter of ties).
DET_PERTURBATION = 0.01  # H, W: padded to 128 x 160 inside the detection graph


def cascade_config(folder: Path) -> str:
    """The toy Mask R-CNN config with mmdet's Cascade Mask R-CNN RoI head, its box heads as
    this repository's COCO Cascade recipe (configs/mask_rcnn/_base_/cascade_convnext_coco_3x.py:
    4 convs + 1 fc, class-specific regression of decoded boxes, GIoU) at the toy's widths."""
    cfg = Config.fromfile(DET_CONFIG)
    cascade = get_config('mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py').model
    roi_head = copy.deepcopy(cascade.roi_head)
    channels = cfg.fpn_channels
    for stage, head in enumerate(roi_head.bbox_head):
        roi_head.bbox_head[stage] = dict(
            type='ConvFCBBoxHead', num_shared_convs=4, num_shared_fcs=1, in_channels=channels,
            conv_out_channels=channels, fc_out_channels=512, roi_feat_size=7,
            num_classes=cfg.num_classes, bbox_coder=head.bbox_coder, reg_class_agnostic=False,
            reg_decoded_bbox=True, norm_cfg=dict(type='BN', requires_grad=True),
            loss_cls=head.loss_cls, loss_bbox=dict(type='GIoULoss', loss_weight=10.0))
    roi_head.bbox_roi_extractor.out_channels = channels
    roi_head.mask_roi_extractor.out_channels = channels
    roi_head.mask_head.update(in_channels=channels, conv_out_channels=channels,
                              num_classes=cfg.num_classes)
    cfg.model.roi_head = roi_head
    cfg.model.train_cfg.rcnn = cascade.train_cfg.rcnn
    for stage_cfg in cfg.model.train_cfg.rcnn:
        stage_cfg.sampler.num = 128
    path = folder / 'cascade_convnext_atto_toy.py'
    cfg.dump(str(path))
    return str(path)


# -- references: mmseg's and mmdet's test_step ------------------------------------------------
def val_images(workspace: Path, task: str) -> list[Path]:
    folder = 'toy_coco/val' if task == 'det' else 'toy_ade/images/validation'
    images = sorted((workspace / 'data' / folder).iterdir())
    assert len(images) == 4
    return images


def bgr_image(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """The image as LoadImageFromFile reads it (BGR), resized to (H, W) when given."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if size is not None:
        image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return image


def as_input(images: list[np.ndarray]) -> torch.Tensor:
    return torch.stack([torch.from_numpy(i).permute(2, 0, 1) for i in images]).float()


def mmdet_predict(model, image: np.ndarray):
    """mmdet's own test path on an image that the test pipeline would not resize (scale
    factor 1): the data preprocessor, then ``predict(rescale=True)``."""
    from mmdet.structures import DetDataSample
    height, width = image.shape[:2]
    sample = DetDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                         scale_factor=(1.0, 1.0)))
    data = dict(inputs=[torch.from_numpy(image).permute(2, 0, 1).contiguous()],
                data_samples=[sample])
    with torch.no_grad():
        result, = model.test_step(data)
    return result.pred_instances


def mmseg_predict(model, images: list[np.ndarray]):
    from mmseg.structures import SegDataSample
    height, width = images[0].shape[:2]
    samples = [SegDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                           pad_shape=(height, width)))
               for _ in images]
    data = dict(inputs=[torch.from_numpy(i).permute(2, 0, 1).contiguous() for i in images],
                data_samples=samples)
    with torch.no_grad():
        return model.test_step(data)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    low = np.maximum(a[:, None, :2], b[None, :, :2])
    high = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(high - low, 0, None).prod(axis=2)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-9)


def assert_same_detections(ours: dict[str, np.ndarray], theirs, name: str) -> int:
    """Every detection of mmdet's matches one of the graph's, one to one, greedily by mmdet's
    score order: the same label, box IoU > 0.99, |score difference| < 1e-3, mask IoU > 0.98
    (masks of fewer than 20 pixels: at most 2 pixels differ). Returns the count."""
    boxes, scores = theirs.bboxes.numpy(), theirs.scores.numpy()
    labels, masks = theirs.labels.numpy(), theirs.masks.numpy()
    assert len(ours['scores']) == len(scores), (name, len(ours['scores']), len(scores))
    assert ours['masks'].dtype == np.bool_ and ours['masks'].shape[1:] == masks.shape[1:]
    assert ours['labels'].dtype == np.int64
    ious = box_iou(boxes, ours['boxes'])
    # boxes clipped to zero width or height at the border have no IoU: equal within 0.01 px
    same = np.abs(boxes[:, None] - ours['boxes'][None]).max(axis=2) < 0.01
    ious[same] = 1.0
    ious[labels[:, None] != ours['labels'][None, :]] = 0
    taken = np.zeros(len(ours['scores']), dtype=bool)
    for i in np.argsort(-scores, kind='stable'):
        j = int(np.argmax(np.where(taken, -1, ious[i])))
        assert ious[i, j] > 0.99 and not taken[j], \
            f'{name}: mmdet detection {i} ({labels[i]}, {boxes[i]}, {scores[i]:.4f}) has no ' \
            f'match (best IoU {ious[i, j]:.4f})'
        taken[j] = True
        assert abs(float(ours['scores'][j]) - float(scores[i])) < 1e-3, (name, i)
        union = np.logical_or(masks[i], ours['masks'][j]).sum()
        differ = np.logical_xor(masks[i], ours['masks'][j]).sum()
        if union >= 20:
            assert 1 - differ / union > 0.98, (name, i, differ, union)
        else:
            assert differ <= 2, (name, i, differ, union)
    return len(scores)


def check_detection_graph(onnx_file: Path, model, images: list[np.ndarray], name: str) -> int:
    total = 0
    for index, image in enumerate(images):
        ours = run_onnx(onnx_file, as_input([image]))
        total += assert_same_detections(ours, mmdet_predict(model, image),
                                        f'{name}, image {index}')
    assert total > 0, f'{name}: mmdet detected nothing; nothing was compared'
    return total


def check_segmentation_graph(onnx_file: Path, model, images: list[np.ndarray],
                             logits: bool) -> None:
    """Logits within the reduction depth's tolerance of mmseg's; class maps equal mmseg's
    wherever mmseg's two best logits are further apart than that tolerance."""
    output = run_onnx(onnx_file, as_input(images))
    results = mmseg_predict(model, images)
    reference = torch.stack([r.seg_logits.data for r in results])
    height, width = images[0].shape[:2]
    depth = reduction_depth(model, grn_positions=height * width // 16)
    limit = tolerance(reference, depth)
    if logits:
        ours = torch.from_numpy(output['logits'])
        assert ours.shape == reference.shape
        difference = (ours - reference).abs().max().item()
        assert difference <= limit, (difference, limit)
        return
    ours = torch.from_numpy(output['seg'])
    expected = torch.stack([r.pred_sem_seg.data[0] for r in results])
    assert ours.dtype == torch.int64 and ours.shape == expected.shape
    # a pixel may take the other class only where mmseg's two best logits are within the
    # tolerance of each other (each computation may be off by it)
    top2 = reference.topk(2, dim=1).values
    tie = (top2[:, 0] - top2[:, 1]) <= 2 * limit
    assert torch.equal(ours[~tie], expected[~tie]), int((ours != expected)[~tie].sum())
    assert len(expected.unique()) > 1  # not one class everywhere


def perturbed_checkpoint(config: str, folder: Path, seed: int = 0,
                         scale: float = 0.05) -> tuple[Path, object]:
    """A whole-model checkpoint of ``config`` with every weight moved off its init."""
    model = load_model(config)
    torch.manual_seed(seed)
    model.init_weights()
    perturb_(model, seed=seed, scale=scale)
    checkpoint = folder / f'{Path(config).stem}_perturbed.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), checkpoint)
    return checkpoint, model


@pytest.mark.parametrize('size', [(3, 4), (4, 4), (7, 13), (1, 1)])
def test_symbolic_adaptive_pooling_is_torchs(size):
    """The pyramid pooling's replacement averages the bins torch's kernel averages, also with
    more bins than inputs (UperNet's 6 bins over a 3 x 4 map at stride 32)."""
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    for bins in (1, 2, 3, 6, (2, 5)):
        expected = torch.nn.AdaptiveAvgPool2d(bins)(x)
        actual = SymbolicAdaptiveAvgPool2d(bins)(x)
        # each output sums at most H x W terms
        assert_close_to_reference(actual, expected, size[0] * size[1], name=f'{bins} bins')


def test_graph_nodes_and_refusals(tmp_path):
    """Settings that have no ONNX form are refused, naming the setting."""
    model = load_model(DET_CONFIG, cfg_options={'model.test_cfg.rcnn.nms.type': 'soft_nms'})
    with pytest.raises(ValueError, match=r'model\.test_cfg\.rcnn\.nms\.type=.soft_nms'):
        export_onnx(model, tmp_path / 'x.onnx', (64, 64))
    seg = load_model(SEG_CONFIG, cfg_options={
        'model.test_cfg': dict(mode='slide', crop_size=(64, 64), stride=(48, 48))})
    with pytest.raises(ValueError, match="test_cfg.mode='slide'"):
        export_onnx(seg, tmp_path / 'x.onnx', (64, 64), dynamic=True)
    with pytest.raises(ValueError, match='shape'):
        export_onnx(seg, tmp_path / 'x.onnx', (16, 64))
    assert not (tmp_path / 'x.onnx').exists()


def test_mask_rcnn_dynamic_through_the_tool(workspace):
    checkpoint, model = perturbed_checkpoint(DET_CONFIG, workspace, scale=DET_PERTURBATION)
    onnx_file = workspace / 'mask_rcnn_dynamic.onnx'
    result = run_tool([ROOT / 'tools/deployment/export_onnx.py', DET_CONFIG, checkpoint,
                       onnx_file, '--dynamic'], cwd=workspace, timeout=900)
    assert f'wrote {onnx_file}' in result.stdout
    summary = onnx_summary(onnx_file)
    assert summary['inputs'] == {'image': [1, 3, 'height', 'width']}
    assert list(summary['outputs']) == ['boxes', 'scores', 'labels', 'masks']
    assert all(dims[0] == 'detections' for dims in summary['outputs'].values()), summary
    assert summary['operators'].get('NonMaxSuppression') == 2  # RPN and box head
    assert summary['operators'].get('RoiAlign') == 8  # 4 FPN levels, box and mask branches
    model = load_model(DET_CONFIG, str(checkpoint))  # as the tool loaded it
    images = [bgr_image(p) for p in val_images(workspace, 'det')[:2]]
    images.append(bgr_image(val_images(workspace, 'det')[2], SECOND_SIZE))
    assert check_detection_graph(onnx_file, model, images, 'Mask R-CNN') > 100


@pytest.mark.slow
def test_cascade_dynamic(workspace):
    config = cascade_config(workspace)
    _, model = perturbed_checkpoint(config, workspace, seed=1, scale=DET_PERTURBATION)
    onnx_file = export_onnx(model, workspace / 'cascade.onnx', (128, 128), dynamic=True)
    # box branch: 3 stages x 4 levels; mask branch: 4 levels, as the three stages' RoIAlign
    # of the same boxes on the same features is one computation (merged by the exporter)
    assert onnx_summary(onnx_file)['operators'].get('RoiAlign') == 16
    images = [bgr_image(val_images(workspace, 'det')[0]),
              bgr_image(val_images(workspace, 'det')[1], SECOND_SIZE)]
    assert check_detection_graph(onnx_file, model, images, 'Cascade Mask R-CNN') > 50


def test_upernet_dynamic(workspace, monkeypatch):
    _, model = perturbed_checkpoint(SEG_CONFIG, workspace)
    traces = []
    trace = torch.export.export

    def counted_trace(*args, **kwargs):
        traces.append(kwargs['dynamic_shapes'])
        return trace(*args, **kwargs)

    monkeypatch.setattr(torch.export, 'export', counted_trace)
    onnx_file = export_onnx(model, workspace / 'upernet.onnx', (128, 128), dynamic=True)
    # one trace: the declared range is the one the traced convolutions allow (a range from 32
    # fails the first trace, and the exporter traces again from 64)
    assert len(traces) == 1, traces
    assert str(traces[0]['image'][2]) == "Dim('height', min=64)"
    summary = onnx_summary(onnx_file)
    assert summary['inputs'] == {'image': ['batch', 3, 'height', 'width']}
    assert summary['outputs'] == {'seg': ['batch', 'height', 'width']}
    paths = val_images(workspace, 'seg')
    check_segmentation_graph(onnx_file, model, [bgr_image(p) for p in paths[:1]], False)
    check_segmentation_graph(onnx_file, model, [bgr_image(p, SECOND_SIZE) for p in paths[1:3]],
                             False)


# -- trained models ---------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize('cascade', [False, True], ids=['mask_rcnn', 'cascade'])
def test_trained_detector_static(workspace, cascade, request):
    """30 iterations: enough for Mask R-CNN's detections above score_thr=0.05 on the validation
    images; Cascade's scores, averaged over three stages, stay below it, so it is exported
    with score_thr=0 (as tests/tools/test_end_to_end.py evaluates)."""
    iters = TRAINED_DET_ITERS
    if cascade:
        config = cascade_config(workspace)
        run_tool([ROOT / 'tools/train.py', config, '--work-dir', workspace / 'cascade',
                  *short_run(iters, iters)], cwd=workspace, timeout=1800)
        checkpoint = workspace / f'cascade/iter_{iters}.pth'
    else:  # the toy Mask R-CNN trained once for the suite
        config = DET_CONFIG
        checkpoint = request.getfixturevalue('trained_det') / f'iter_{iters}.pth'
    options = {'model.test_cfg.rcnn.score_thr': 0.0} if cascade else None
    model = load_model(config, str(checkpoint), cfg_options=options)
    onnx_file = export_onnx(model, workspace / f'trained_{cascade}.onnx', (128, 128))
    assert onnx_summary(onnx_file)['inputs'] == {'image': [1, 3, 128, 128]}
    images = [bgr_image(p) for p in val_images(workspace, 'det')]
    check_detection_graph(onnx_file, model, images, 'trained')
    roi_file = export_onnx(model, workspace / f'trained_{cascade}_roi.onnx', (128, 128),
                           roi_masks=True)
    output = run_onnx(roi_file, as_input(images[:1]))
    # mmdet's FCNMaskHead: 14 x 14 RoI features upsampled x2
    assert output['masks'].shape == (len(output['scores']), 28, 28)
    assert output['masks'].dtype == np.float32
    assert ((output['masks'] >= 0) & (output['masks'] <= 1)).all()


@pytest.mark.slow
def test_trained_upernet_static_logits(workspace, trained_seg):
    model = load_model(SEG_CONFIG, str(trained_seg / f'iter_{TRAINED_SEG_ITERS}.pth'))
    images = [bgr_image(p) for p in val_images(workspace, 'seg')]
    for logits in (False, True):
        onnx_file = export_onnx(model, workspace / f'upernet_{logits}.onnx', (128, 128),
                                logits=logits, batch_size=4)
        check_segmentation_graph(onnx_file, model, images, logits)


@pytest.mark.slow
def test_upernet_slide_static(workspace):
    """mmseg's sliding-window test (the paper's ADE20K configs), unrolled at a static shape:
    96 x 96 windows every 64 pixels over 128 x 160, overlapping in the middle."""
    slide = {'model.test_cfg': dict(mode='slide', crop_size=(96, 96), stride=(64, 64))}
    _, model = perturbed_checkpoint(SEG_CONFIG, workspace)
    checkpoint = workspace / 'upernet_slide.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), checkpoint)
    model = load_model(SEG_CONFIG, str(checkpoint), cfg_options=slide)
    assert model.test_cfg.mode == 'slide'
    onnx_file = export_onnx(model, workspace / 'upernet_slide.onnx', (128, 160), logits=True)
    images = [bgr_image(p, (128, 160)) for p in val_images(workspace, 'seg')[:1]]
    check_segmentation_graph(onnx_file, model, images, logits=True)
