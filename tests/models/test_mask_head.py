"""DeviceTargetFCNMaskHead: its mask targets are mmdet's (``mask_target``, bit for bit) for
bitmap and polygon masks, its loss is mmdet's FCNMaskHead's, the bitmap path makes no host round
trip, and the Mask R-CNN / Cascade configs use it."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.structures import InstanceData

from convnext_dense.models import device_mask_target
from tests.helpers import ROOT, no_host_round_trip

# (height, width, ground truths, positives) per image: two mask shapes (two RoIAlign groups), an
# image without positives, one with a single ground truth, one with fewer positives than ground
# truths
IMAGES = ((40, 56, 3, 7), (40, 56, 5, 12), (32, 48, 2, 0), (32, 48, 1, 4), (40, 56, 6, 2),
          (40, 56, 2, 5))
CFGS = (ConfigDict(mask_size=28), ConfigDict(mask_size=(13, 14)),
        ConfigDict(mask_size=28, soft_mask_target=True))


def bitmap_masks(rng: np.random.Generator, count: int, height: int, width: int):
    """Blobs: random 1/4-resolution masks upsampled, so that RoIs see edges and interiors."""
    from mmdet.structures.mask import BitmapMasks
    coarse = rng.random((count, (height + 3) // 4, (width + 3) // 4)) > 0.5
    masks = coarse.repeat(4, axis=1).repeat(4, axis=2)[:, :height, :width]
    return BitmapMasks(masks.astype(np.uint8), height, width)


def proposals(rng: np.random.Generator, count: int, height: int, width: int) -> torch.Tensor:
    """Boxes of 1 px to 0.8 x the image, some partly outside it (mmdet clips them); every other
    one on whole pixels, where RoIAlign samples pixel centres and averages hit 0.5 exactly (the
    binarisation threshold)."""
    xy = rng.uniform(-0.3, 1.0, (count, 2)) * (width, height)
    wh = rng.uniform(0.0, 0.8, (count, 2)) * (width, height) + 1
    boxes = np.concatenate([xy, xy + wh], axis=1)
    boxes[::2] = boxes[::2].round()
    return torch.from_numpy(boxes).float()


def batch(seed: int = 0, images=IMAGES):
    rng = np.random.default_rng(seed)
    boxes, gt_inds, masks = [], [], []
    for height, width, num_gts, num_pos in images:
        masks.append(bitmap_masks(rng, num_gts, height, width))
        boxes.append(proposals(rng, num_pos, height, width))
        gt_inds.append(torch.from_numpy(rng.integers(0, num_gts, num_pos)))
    return boxes, gt_inds, masks


@pytest.mark.parametrize('cfg', CFGS, ids=('28', '13x14', 'soft'))
def test_bitmap_targets_equal_mmdets(cfg, monkeypatch):
    from mmdet.structures.mask import mask_target
    soft_cfg = ConfigDict(mask_size=cfg.mask_size, soft_mask_target=True)
    exact_halves = 0
    for seed in range(3):
        boxes, gt_inds, masks = batch(seed)
        expected = mask_target(boxes, gt_inds, masks, cfg)

        copies = []
        from_numpy = torch.from_numpy

        def counting_from_numpy(array, copies=copies, from_numpy=from_numpy):
            copies.append(array.shape)
            return from_numpy(array)

        monkeypatch.setattr(torch, 'from_numpy', counting_from_numpy)
        targets = device_mask_target(boxes, gt_inds, masks, cfg)
        monkeypatch.undo()
        assert targets.dtype == expected.dtype == torch.float32
        assert torch.equal(targets, expected), seed
        # each image with positives: its masks, whole, once (grouped by shape); none of the
        # image without positives
        assert sorted(copies) == sorted(m.masks.shape for m, b in zip(masks, boxes) if len(b))
        exact_halves += (device_mask_target(boxes, gt_inds, masks, soft_cfg) == 0.5).sum()
    if not cfg.get('soft_mask_target', False):
        assert set(targets.unique().tolist()) == {0., 1.}
        assert exact_halves > 0  # the threshold's side of 0.5 itself was compared


def test_one_roi_align_per_mask_shape_within_the_budget(monkeypatch):
    import mmcv.ops
    from mmdet.structures.mask import mask_target

    from convnext_dense.models import mask_head
    boxes, gt_inds, masks = batch(seed=3)
    expected = mask_target(boxes, gt_inds, masks, CFGS[0])
    calls = []
    roi_align = mmcv.ops.roi_align

    def counting_roi_align(masks, rois, *args):
        calls.append(len(rois))
        return roi_align(masks, rois, *args)

    monkeypatch.setattr(mmcv.ops, 'roi_align', counting_roi_align)
    assert torch.equal(device_mask_target(boxes, gt_inds, masks, CFGS[0]), expected)
    positives_per_shape = {}
    for height, width, _, num_pos in IMAGES:
        if num_pos:
            shape = (height, width)
            positives_per_shape[shape] = positives_per_shape.get(shape, 0) + num_pos
    assert sorted(calls) == sorted(positives_per_shape.values())
    calls.clear()
    monkeypatch.setattr(mask_head, 'GROUP_BYTES', 0)  # each image its own call
    assert torch.equal(device_mask_target(boxes, gt_inds, masks, CFGS[0]), expected)
    assert calls == [n for (_, _, _, n) in IMAGES if n]


def test_torchvision_roi_align_gives_the_same_targets():
    """Either RoIAlign gives mmdet's targets on the CPU: the head keeps mmcv's (mmdet's kernel on
    every device); soft targets compare the RoIAlign outputs themselves."""
    from mmdet.structures.mask import mask_target
    from torchvision.ops import roi_align
    boxes, gt_inds, masks = batch(seed=1)
    cfg = CFGS[2]
    ours = device_mask_target(boxes, gt_inds, masks, cfg)
    assert torch.equal(ours, mask_target(boxes, gt_inds, masks, cfg))
    reference = []
    for b, inds, m in zip(boxes, gt_inds, masks):
        clipped = torch.stack([b[:, 0].clamp(0, m.width), b[:, 1].clamp(0, m.height),
                               b[:, 2].clamp(0, m.width), b[:, 3].clamp(0, m.height)], dim=1)
        reference.append(roi_align(torch.from_numpy(m.masks).float()[:, None],
                                   torch.cat([inds[:, None].float(), clipped], dim=1),
                                   (28, 28), 1.0, 0, aligned=True)[:, 0])
    assert torch.equal(ours, torch.cat(reference))


def polygon_batch(seed: int):
    """Star-shaped polygons of 6 to 200 px across in 240 x 320 images, and positives around
    them (their boxes moved by up to 20% of their size)."""
    from mmdet.structures.mask import PolygonMasks
    rng = np.random.default_rng(seed)
    height, width = 240, 320
    boxes, gt_inds, masks = [], [], []
    for _ in range(4):
        polygons, extents = [], []
        for _ in range(6):
            radius = rng.uniform(3, 100)
            center = rng.uniform(radius, (width - radius, height - radius))
            angles = np.sort(rng.uniform(0, 2 * np.pi, 10))
            radii = radius * rng.uniform(0.5, 1.0, 10)
            points = center + radii[:, None] * np.stack([np.cos(angles), np.sin(angles)], 1)
            polygons.append([points.reshape(-1)])
            extents.append([*points.min(0), *points.max(0)])
        inds = rng.integers(0, 6, 20)
        box = np.array(extents)[inds]
        size = np.tile(box[:, 2:] - box[:, :2], 2)
        boxes.append(torch.from_numpy(box + rng.uniform(-0.2, 0.2, box.shape) * size).float())
        gt_inds.append(torch.from_numpy(inds))
        masks.append(PolygonMasks(polygons, height, width))
    return boxes, gt_inds, masks


def test_polygon_targets_are_mmdets():
    """Polygons keep mmdet's path: the same targets. Rasterising them once and RoIAligning
    (the bitmap path) would give other targets: the fraction of pixels that differ is the one
    in convnext_dense/models/mask_head.py's docstring."""
    from mmdet.structures.mask import BitmapMasks, mask_target
    cfg = CFGS[0]
    boxes, gt_inds, polygons = polygon_batch(seed=0)
    expected = mask_target(boxes, gt_inds, polygons, cfg)
    assert torch.equal(device_mask_target(boxes, gt_inds, polygons, cfg), expected)
    # a batch mixing both kinds: each image its own path, in order
    bitmaps = [BitmapMasks(p.to_ndarray(), p.height, p.width) for p in polygons]
    mixed = [polygons[0], bitmaps[1], polygons[2], bitmaps[3]]
    assert torch.equal(device_mask_target(boxes, gt_inds, mixed, cfg),
                       mask_target(boxes, gt_inds, mixed, cfg))

    rasterised = device_mask_target(boxes, gt_inds, bitmaps, cfg)
    assert torch.equal(rasterised, mask_target(boxes, gt_inds, bitmaps, cfg))
    disagreement = (rasterised != expected).double().mean().item()
    assert round(100 * disagreement, 1) == 1.3, disagreement


def sampling_results(boxes, gt_inds, masks, num_classes: int, seed: int = 0):
    """mmdet's SamplingResult per image: the positives first, then as many negatives."""
    from mmdet.models.task_modules import AssignResult, SamplingResult
    generator = torch.Generator().manual_seed(seed)
    results = []
    for b, inds, m in zip(boxes, gt_inds, masks):
        num_pos, num_gts = len(b), len(m)
        priors = torch.cat([b, b + 1])
        assigned = torch.cat([inds + 1, torch.zeros(num_pos, dtype=torch.long)])
        labels = torch.randint(0, num_classes, (num_gts, ), generator=generator)
        assign = AssignResult(num_gts, assigned, torch.ones(2 * num_pos),
                              torch.where(assigned > 0, labels[assigned - 1], -1))
        gt_bboxes = torch.rand(num_gts, 4, generator=generator) * 10
        results.append(SamplingResult(
            torch.arange(num_pos), torch.arange(num_pos, 2 * num_pos), priors, gt_bboxes,
            assign, torch.zeros(2 * num_pos, dtype=torch.uint8)))
    return results


def build_heads(num_classes: int = 3):
    from mmdet.models.roi_heads.mask_heads import FCNMaskHead
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    # mmdet's default scope: a test before may have left mmseg's, whose registry has no
    # FCNMaskHead
    register_all_modules()
    kwargs = dict(num_convs=1, in_channels=8, conv_out_channels=8, num_classes=num_classes)
    torch.manual_seed(0)
    ours = MODELS.build(dict(type='DeviceTargetFCNMaskHead', **kwargs))
    theirs = MODELS.build(dict(type='FCNMaskHead', **kwargs))
    theirs.load_state_dict(ours.state_dict())
    assert isinstance(ours, FCNMaskHead) and type(theirs) is FCNMaskHead
    return ours, theirs


def test_loss_equals_fcn_mask_heads():
    ours, theirs = build_heads()
    boxes, gt_inds, masks = batch(seed=2)
    results = sampling_results(boxes, gt_inds, masks, num_classes=3)
    gt_instances = [InstanceData(masks=m) for m in masks]
    feats = torch.randn(sum(len(b) for b in boxes), 8, 14, 14,
                        generator=torch.Generator().manual_seed(3))
    cfg = CFGS[0]
    out_ours = ours.loss_and_target(ours(feats), results, gt_instances, cfg)
    out_theirs = theirs.loss_and_target(theirs(feats), results, gt_instances, cfg)
    assert torch.equal(out_ours['mask_targets'], out_theirs['mask_targets'])
    loss, reference = out_ours['loss_mask']['loss_mask'], out_theirs['loss_mask']['loss_mask']
    assert torch.equal(loss, reference) and loss > 0
    loss.backward()
    reference.backward()
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        assert torch.equal(p.grad, q.grad), name


def test_bitmap_path_makes_no_host_round_trip(monkeypatch):
    ours, theirs = build_heads()
    boxes, gt_inds, masks = batch(seed=4)
    results = sampling_results(boxes, gt_inds, masks, num_classes=3)
    gt_instances = [InstanceData(masks=m) for m in masks]
    with no_host_round_trip(monkeypatch):
        targets = ours.get_targets(results, gt_instances, CFGS[0])
    assert torch.equal(targets, theirs.get_targets(results, gt_instances, CFGS[0]))
    # the guard catches mmdet's own path, and ops whose output size depends on the data
    with pytest.raises(AssertionError, match=r'host round trip: Tensor.cpu\(\)'):
        with no_host_round_trip(monkeypatch):
            theirs.get_targets(results, gt_instances, CFGS[0])
    with pytest.raises(AssertionError, match='host sync: boolean-mask indexing'):
        with no_host_round_trip(monkeypatch):
            targets[targets > 0]


def test_copies_to_cuda_go_through_pinned_memory(monkeypatch):
    """CUDA copies pageable host memory synchronously whatever non_blocking says: each image's
    masks are pinned first, then copied without blocking. The CPU takes that branch here with
    'cpu' among the devices that pin (and a stand-in pin_memory: it needs a GPU)."""
    from mmdet.structures.mask import mask_target

    from convnext_dense.models import mask_head
    boxes, gt_inds, masks = batch(seed=6)
    expected = mask_target(boxes, gt_inds, masks, CFGS[0])
    assert mask_head.PINNED_COPY_DEVICES == ('cuda', )
    pinned, copies = [], []
    to = torch.Tensor.to

    def pin_memory(self):
        pinned.append(self.clone())
        return pinned[-1]

    def recording_to(self, *args, **kwargs):
        if any(self is tensor for tensor in pinned):
            copies.append(kwargs.get('non_blocking', False))
        return to(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(mask_head, 'PINNED_COPY_DEVICES', ('cpu', ))
        patch.setattr(torch.Tensor, 'pin_memory', pin_memory)
        patch.setattr(torch.Tensor, 'to', recording_to)
        targets = device_mask_target(boxes, gt_inds, masks, CFGS[0])
    assert torch.equal(targets, expected)
    images = sum(len(b) > 0 for b in boxes)
    assert len(pinned) == images and copies == [True] * images


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_bitmap_path_does_not_synchronise_cuda():
    from mmdet.structures.mask import mask_target
    boxes, gt_inds, masks = batch(seed=5)
    expected = mask_target(boxes, gt_inds, masks, CFGS[0])
    boxes = [b.cuda() for b in boxes]
    gt_inds = [i.cuda() for i in gt_inds]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        targets = device_mask_target(boxes, gt_inds, masks, CFGS[0])
    finally:
        torch.cuda.set_sync_debug_mode('default')
    assert targets.is_cuda
    assert torch.equal(targets.cpu(), expected)


def test_errors_name_the_argument():
    from mmdet.structures.mask import BitmapMasks
    boxes, gt_inds, masks = batch(images=IMAGES[:2])
    cfg = CFGS[0]
    with pytest.raises(TypeError, match=r'gt_masks_list\[1\] must be BitmapMasks or '
                                        r'PolygonMasks, got ndarray'):
        device_mask_target(boxes, gt_inds, [masks[0], masks[1].masks], cfg)
    empty = BitmapMasks(np.zeros((0, 40, 56), np.uint8), 40, 56)
    with pytest.raises(ValueError, match=r'gt_masks_list\[0\] holds no mask, but '
                                         r'pos_proposals_list\[0\] has 7 positives'):
        device_mask_target(boxes, gt_inds, [empty, masks[1]], cfg)
    with pytest.raises(ValueError, match='one entry per image, got 2, 2 and 1'):
        device_mask_target(boxes, gt_inds, masks[:1], cfg)
    # a positive assigned to a ground truth the image does not have
    with pytest.raises(RuntimeError, match='outside 0..2'):
        device_mask_target(boxes, [gt_inds[0] + 3, gt_inds[1]], masks, cfg)


CONFIGS = ('_base_/mask_rcnn_convnext_coco_3x.py', '_base_/cascade_convnext_coco_3x.py',
           '_base_/mask_rcnn_convnext_v2_coco_lsj_3x.py', 'convnext_atto_toy.py')


@pytest.mark.parametrize('name', CONFIGS)
def test_configs_use_the_head(name):
    cfg = Config.fromfile(str(ROOT / 'configs/mask_rcnn' / name))
    mask_head = cfg.model.roi_head.mask_head
    assert mask_head.type == 'DeviceTargetFCNMaskHead'
    # the rest of mmdet's head settings are inherited (Cascade: one config for its 3 stages)
    assert mask_head.num_convs == 4 and mask_head.loss_mask.use_mask


def test_toy_mask_rcnn_trains_as_with_mmdets_head():
    """The toy Mask R-CNN's losses on a batch are those of the same model with mmdet's head."""
    from convnext_dense.analysis import build_model_for_analysis
    from convnext_dense.testing import det_batch
    cfg = Config.fromfile(str(ROOT / 'configs/mask_rcnn/convnext_atto_toy.py'))
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=32)
    model_cfg.train_cfg.rcnn.sampler.num = 32
    ours = build_model_for_analysis(cfg, model_cfg).train()
    model_cfg.roi_head.mask_head.type = 'FCNMaskHead'
    theirs = build_model_for_analysis(cfg, model_cfg).train()
    theirs.load_state_dict(ours.state_dict())
    assert type(ours.roi_head.mask_head).__name__ == 'DeviceTargetFCNMaskHead'
    assert type(theirs.roi_head.mask_head).__name__ == 'FCNMaskHead'
    data = ours.data_preprocessor(det_batch(2, 64, 64, instances=3, num_classes=5), True)
    losses = []
    for model in (ours, theirs):
        torch.manual_seed(0)  # the RPN's and the RoI head's samplers draw the same
        losses.append(model(**copy.deepcopy(data), mode='loss'))
    assert losses[0].keys() == losses[1].keys()
    for key, value in losses[0].items():  # the RPN's losses are lists, one per FPN level
        ours_value, theirs_value = (torch.stack(v) if isinstance(v, list) else v
                                    for v in (value, losses[1][key]))
        assert torch.equal(ours_value, theirs_value), key
    assert losses[0]['loss_mask'] > 0
