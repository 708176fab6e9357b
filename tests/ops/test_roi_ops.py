"""RoIAlign and NMS on mmcv's or torchvision's kernels (``convnext_dense.ops.roi_ops``).

On the CPU, where both libraries have kernels: the two routes compute the same RoIAlign (forward
and backward, mmdet's settings, boxes on and past the borders, no boxes) and keep the same boxes
in NMS (ties, IoUs exactly at the threshold, mmdet's box offsets, batched NMS), and a training step
of a toy Mask R-CNN and of a toy Cascade Mask R-CNN gives the same losses and gradients on both,
with mmcv's kernels running on one route only and torchvision's on the other (torch's dispatcher
says which ran). ``'auto'`` picks per device and says so; bad values name ``roi_ops``. The list
of mmcv kernels each paper config family calls is recorded and compared with the table of
``docs/device_ops.md``.
"""
from __future__ import annotations

import copy
import re
import sys
from contextlib import contextmanager

import mmcv
import mmcv.ops
import pytest
import torch
from mmengine.config import Config
from torch.utils._python_dispatch import TorchDispatchMode

import convnext_dense  # noqa: F401  (installs the router)
from convnext_dense.analysis import build_model_for_analysis
from convnext_dense.arch_settings import ARCH_SETTINGS
from convnext_dense.ops import roi_ops
from convnext_dense.ops.roi_ops import (
    RoutedExt,
    check_roi_ops,
    get_roi_ops,
    mmcv_has_kernels,
    roi_ops_mode,
    roi_ops_route,
    set_roi_ops,
)
from convnext_dense.testing import det_batch, seg_batch
from tests.helpers import ROOT, LogRecords
from tests.numerics import assert_close_to_reference, reduction_depth

DOC = ROOT / 'docs/device_ops.md'
# The routed kernels of mmcv; softnms stays mmcv's on both routes.
ROUTED_KERNELS = {'roi_align_forward', 'roi_align_backward', 'nms'}


@pytest.fixture(autouse=True)
def restore_roi_ops():
    before = get_roi_ops()
    yield
    set_roi_ops(before)


# -- recorders --------------------------------------------------------------------------------
class MmcvKernels:
    """Every call of a function of mmcv's compiled module (``mmcv._ext``, which all of mmcv's
    ops modules call through) while installed: the kernel, the model's submodule whose code made
    the call (``module_names``: id -> name; without the stage index of Cascade's lists) and the
    function that called mmcv. ``roi_align_backward`` is attributed to the forward call that
    saved its RoIs."""

    def __init__(self, patcher, module_names: dict[int, str] | None = None) -> None:
        self.calls: list[tuple[str, str | None, str | None]] = []
        self.module_names = module_names or {}
        self._forward_of_rois: dict[int, tuple[str | None, str | None]] = {}
        ext = sys.modules['mmcv._ext']
        for name in dir(ext):
            function = getattr(ext, name)
            if not name.startswith('_') and callable(function):
                patcher.setattr(ext, name, self._recording(name, function))

    def kernels(self) -> set[str]:
        return {kernel for kernel, _, _ in self.calls}

    def _caller(self) -> tuple[str | None, str | None]:
        frame, function = sys._getframe(2), None
        while frame is not None:
            module = frame.f_globals.get('__name__', '')
            if module.startswith(('mmdet', 'mmseg', 'convnext_dense')) \
                    and module != roi_ops.__name__:
                function = function or frame.f_code.co_qualname
                owner = frame.f_locals.get('self')
                if isinstance(owner, torch.nn.Module) and id(owner) in self.module_names:
                    return re.sub(r'\.\d+', '', self.module_names[id(owner)]), function
            frame = frame.f_back
        return None, function

    def _recording(self, name, function):
        def record(*args, **kwargs):
            if name == 'roi_align_backward':  # its RoIs are the tensor the forward saved
                where = self._forward_of_rois.get(args[1].data_ptr(), (None, None))
            else:
                where = self._caller()
            if name == 'roi_align_forward':
                self._forward_of_rois[args[1].data_ptr()] = where
            self.calls.append((name, *where))
            return function(*args, **kwargs)
        return record


class TorchvisionOps(TorchDispatchMode):
    """The ``torchvision::`` ops torch's dispatcher runs while active."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == 'torchvision':
            self.ops.add(func.__name__.split('.')[0])
        return func(*args, **(kwargs or {}))


@contextmanager
def route(value: str, module_names=None):
    """``roi_ops=value`` with both recorders on; yields (mmcv kernels, torchvision ops)."""
    with pytest.MonkeyPatch.context() as patcher, roi_ops_mode(value), \
            TorchvisionOps() as torchvision_ops:
        yield MmcvKernels(patcher, module_names), torchvision_ops


def assert_took_route(value, kernels, torchvision_ops, mmcv_kernels, torchvision_names):
    """mmcv's kernels ran on the mmcv route only, torchvision's on the torchvision route only."""
    if value == 'mmcv':
        assert mmcv_kernels <= kernels.kernels() and not torchvision_ops.ops
    else:
        assert not kernels.kernels() & ROUTED_KERNELS
        assert torchvision_names <= torchvision_ops.ops


# -- RoIAlign ---------------------------------------------------------------------------------
FEATURE_SHAPE = (2, 8, 24, 32)  # N, C, H, W at stride 4: a 96 x 128 image
STRIDE = 4


def border_rois(generator: torch.Generator) -> torch.Tensor:
    """RoIs inside the image, on its borders, past them, smaller than a feature cell and of zero
    size, as (image index, x1, y1, x2, y2) in image pixels."""
    height, width = FEATURE_SHAPE[2] * STRIDE, FEATURE_SHAPE[3] * STRIDE
    xy = torch.rand(12, 2, generator=generator) * torch.tensor([width, height])
    wh = torch.rand(12, 2, generator=generator) * torch.tensor([width, height]) / 2 + 1
    boxes = torch.cat([
        torch.cat([xy, xy + wh], dim=1),
        torch.tensor([[0., 0., width, height],            # the whole image
                      [0., 0., 10., 10.],                 # on the top-left border
                      [width - 10., height - 10., width, height],  # on the bottom-right one
                      [-20., -15., 30., 25.],             # past the top-left
                      [width - 30., height - 20., width + 25., height + 40.],  # bottom-right
                      [-50., -50., -10., -10.],           # wholly outside
                      [40., 30., 41.5, 30.5],             # under a feature cell
                      [50., 50., 50., 50.]])])            # zero size
    index = torch.randint(0, FEATURE_SHAPE[0], (len(boxes), 1), generator=generator).float()
    return torch.cat([index, boxes], dim=1)


def roi_align_depths(rois: torch.Tensor, output_size: int, sampling_ratio: int,
                     num_outputs: int) -> tuple[int, int]:
    """Reduction depths of RoIAlign: an output averages up to (grid)^2 bilinear samples of 4
    corners each; a feature's gradient sums those of every sample of every RoI over it."""
    if sampling_ratio > 0:
        samples = sampling_ratio ** 2
    else:
        sizes = (rois[:, 3:] - rois[:, 1:3]).clamp(min=1) / STRIDE / output_size
        samples = int(torch.ceil(sizes).prod(dim=1).max().item())
    return 4 * samples, 4 * samples * output_size ** 2 * num_outputs


def routed_roi_align(value, feats, rois, output_size, sampling_ratio, aligned):
    """mmdet's RoIAlign layer (mmcv.ops.RoIAlign) on ``feats``, forward and backward, under
    ``roi_ops=value``."""
    layer = mmcv.ops.RoIAlign(output_size, 1 / STRIDE, sampling_ratio, aligned=aligned)
    feats = feats.detach().requires_grad_()
    with route(value) as (kernels, torchvision_ops):
        out = layer(feats, rois)
        grad_output = torch.randn(out.shape, generator=torch.Generator().manual_seed(3))
        (grad, ) = torch.autograd.grad(out, feats, grad_output)
    assert_took_route(value, kernels, torchvision_ops,
                      {'roi_align_forward', 'roi_align_backward'},
                      {'roi_align', '_roi_align_backward'})
    return out, grad


@pytest.mark.parametrize('output_size', [7, 14])
@pytest.mark.parametrize('sampling_ratio', [0, 2])
@pytest.mark.parametrize('aligned', [True, False])
def test_roi_align_routes_agree(aligned, sampling_ratio, output_size):
    generator = torch.Generator().manual_seed(0)
    feats = torch.randn(FEATURE_SHAPE, generator=generator)
    rois = border_rois(generator)
    out_mmcv, grad_mmcv = routed_roi_align('mmcv', feats, rois, output_size,
                                           sampling_ratio, aligned)
    out_tv, grad_tv = routed_roi_align('torchvision', feats, rois, output_size,
                                       sampling_ratio, aligned)
    forward, backward = roi_align_depths(rois, output_size, sampling_ratio, len(rois))
    assert_close_to_reference(out_tv, out_mmcv, forward, name='RoIAlign forward')
    assert_close_to_reference(grad_tv, grad_mmcv, backward, name='RoIAlign backward')
    assert out_mmcv.abs().sum() > 0 and grad_mmcv.abs().sum() > 0


def test_roi_align_no_rois():
    feats = torch.randn(FEATURE_SHAPE)
    rois = torch.zeros(0, 5)
    for value in ('mmcv', 'torchvision'):
        out, grad = routed_roi_align(value, feats, rois, 7, 0, True)
        assert out.shape == (0, FEATURE_SHAPE[1], 7, 7)
        assert torch.equal(grad, torch.zeros(FEATURE_SHAPE))


def test_roi_align_dtypes():
    """bf16 (no kernel has it), and features and RoIs of two dtypes, run in fp32: the result is
    the fp32 computation on the same values, rounded once to the features' dtype, forward and
    backward. fp16 runs the fp16 kernels, the same on both routes."""
    generator = torch.Generator().manual_seed(1)
    feats = torch.randn(FEATURE_SHAPE, generator=generator)
    rois = border_rois(generator)
    args = (7, 1 / STRIDE, 0, 'avg', True)
    fp16_results = []
    for value in ('mmcv', 'torchvision'):
        with roi_ops_mode(value):
            for dtype, rois_dtype in ((torch.bfloat16, torch.bfloat16),
                                      (torch.bfloat16, torch.float32),
                                      (torch.float16, torch.float32)):
                low = feats.to(dtype).requires_grad_()
                out = mmcv.ops.roi_align(low, rois.to(rois_dtype), *args)
                grad_output = torch.randn(out.shape, generator=generator).to(dtype)
                (grad, ) = torch.autograd.grad(out, low, grad_output)
                high = low.detach().float().requires_grad_()
                expected = mmcv.ops.roi_align(high, rois.to(rois_dtype).float(), *args)
                (expected_grad, ) = torch.autograd.grad(expected, high, grad_output.float())
                assert out.dtype == grad.dtype == dtype
                assert torch.equal(out, expected.to(dtype)), (value, dtype, rois_dtype)
                assert torch.equal(grad, expected_grad.to(dtype)), (value, dtype, rois_dtype)
            half = feats.half().requires_grad_()
            out = mmcv.ops.roi_align(half, rois.half(), *args)
            (grad, ) = torch.autograd.grad(out, half, torch.ones_like(out))
            assert out.dtype == grad.dtype == torch.float16
            fp16_results.append((out, grad))
    (out, grad), (out_tv, grad_tv) = fp16_results
    forward, backward = roi_align_depths(rois, 7, 0, len(rois))
    assert_close_to_reference(out_tv.float(), out.float(), forward, torch.float16,
                              name='fp16 RoIAlign forward')
    assert_close_to_reference(grad_tv.float(), grad.float(), backward, torch.float16,
                              name='fp16 RoIAlign backward')


def test_torchvision_has_no_max_pooling():
    feats, rois = torch.randn(1, 2, 8, 8), torch.tensor([[0., 1., 1., 6., 6.]])
    with roi_ops_mode('mmcv'):
        mmcv.ops.roi_align(feats, rois, 2, 1.0, 0, 'max', True)
    with roi_ops_mode('torchvision'), pytest.raises(ValueError, match="roi_ops='mmcv'"):
        mmcv.ops.roi_align(feats, rois, 2, 1.0, 0, 'max', True)


# -- NMS --------------------------------------------------------------------------------------
def random_boxes(count: int, generator: torch.Generator, whole_pixels: bool = False):
    xy = torch.rand(count, 2, generator=generator) * 100
    wh = torch.rand(count, 2, generator=generator) * 50 + 1
    boxes = torch.cat([xy, xy + wh], dim=1)
    return boxes.round() if whole_pixels else boxes


def routed_nms(value, *args, **kwargs):
    with route(value) as (kernels, torchvision_ops):
        dets, keep = mmcv.ops.nms(*args, **kwargs)
    assert_took_route(value, kernels, torchvision_ops, {'nms'}, {'nms'})
    return dets, keep


def assert_same_nms(*args, **kwargs):
    dets, keep = routed_nms('mmcv', *args, **kwargs)
    dets_tv, keep_tv = routed_nms('torchvision', *args, **kwargs)
    assert torch.equal(keep_tv, keep)
    assert torch.equal(dets_tv, dets)
    return keep


@pytest.mark.parametrize('iou_threshold', [0.3, 0.5, 0.7])
def test_nms_keeps_the_same_boxes(iou_threshold):
    generator = torch.Generator().manual_seed(0)
    boxes = random_boxes(300, generator)
    scores = torch.rand(300, generator=generator)
    keep = assert_same_nms(boxes, scores, iou_threshold)
    assert 0 < len(keep) < 300
    # score threshold and max_num: mmcv's Python code around either kernel
    assert_same_nms(boxes, scores, iou_threshold, score_threshold=0.4, max_num=20)


def test_nms_ties():
    """Equal scores: mmcv's kernel orders them by torch's default sort, torchvision's CPU kernel
    by a stable one; the router hands torchvision the boxes in mmcv's order."""
    generator = torch.Generator().manual_seed(1)
    boxes = random_boxes(200, generator, whole_pixels=True)
    scores = torch.randint(0, 4, (200, ), generator=generator).float() / 4
    boxes[100:] = boxes[:100]  # duplicate boxes too
    keep = assert_same_nms(boxes, scores, 0.5)
    from torchvision.ops import nms as torchvision_nms
    assert not torch.equal(torchvision_nms(boxes, scores, 0.5), keep)  # the order matters


def test_nms_iou_exactly_at_the_threshold():
    """IoU = threshold is kept (suppression needs IoU > threshold), with the threshold compared
    as mmcv's fp32: 3 / 10 equals fp32(0.3), which is above 0.3 as a double."""
    boxes = torch.tensor([[0., 0., 6., 1.], [3., 0., 10., 1.],     # IoU 3 / 10
                          [20., 0., 24., 1.], [22., 0., 26., 1.],  # IoU 2 / 6
                          [40., 0., 43., 1.], [41., 0., 44., 1.]])  # IoU 2 / 4
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    assert torch.equal(assert_same_nms(boxes, scores, 0.3), torch.tensor([0, 1, 2,
                                                                                      4]))
    assert torch.equal(assert_same_nms(boxes, scores, 0.5), torch.arange(6))
    # torchvision with the double threshold suppresses box 1: the rounding is what keeps it
    from torchvision.ops import nms as torchvision_nms
    assert 1 not in torchvision_nms(boxes, scores, 0.3).tolist()


def test_nms_box_offset():
    """offset=1 (boxes of mmdet 1.x: x2 - x1 + 1 pixels) on whole-pixel boxes."""
    generator = torch.Generator().manual_seed(2)
    boxes = random_boxes(300, generator, whole_pixels=True)
    scores = torch.rand(300, generator=generator)
    keep_1 = assert_same_nms(boxes, scores, 0.5, offset=1)
    keep_0 = assert_same_nms(boxes, scores, 0.5, offset=0)
    assert not torch.equal(keep_0, keep_1)  # the offset matters for these boxes


@pytest.mark.parametrize('nms_cfg', [
    dict(type='nms', iou_threshold=0.5),
    dict(type='nms', iou_threshold=0.7, class_agnostic=True),
    dict(type='nms', iou_threshold=0.5, split_thr=50),  # mmcv's per-class loop
    dict(type='nms', iou_threshold=0.5, offset=1),
])
def test_batched_nms_keeps_the_same_boxes(nms_cfg):
    generator = torch.Generator().manual_seed(3)
    boxes = random_boxes(400, generator, whole_pixels=nms_cfg.get('offset') == 1)
    scores = torch.rand(400, generator=generator)
    labels = torch.randint(0, 5, (400, ), generator=generator)
    results = {}
    for value in ('mmcv', 'torchvision'):
        with route(value) as (kernels, torchvision_ops):
            results[value] = mmcv.ops.batched_nms(boxes, scores, labels, dict(nms_cfg))
        assert_took_route(value, kernels, torchvision_ops, {'nms'}, {'nms'})
    (dets, keep), (dets_tv, keep_tv) = results['mmcv'], results['torchvision']
    assert torch.equal(keep_tv, keep) and torch.equal(dets_tv, dets)
    assert 0 < len(keep) < 400


def test_nms_no_boxes_and_low_precision():
    for value in ('mmcv', 'torchvision'):
        with roi_ops_mode(value):
            dets, keep = mmcv.ops.nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
            assert keep.shape == (0, ) and dets.shape == (0, 5)
            generator = torch.Generator().manual_seed(4)
            boxes, scores = random_boxes(50, generator), torch.rand(50, generator=generator)
            _, reference = mmcv.ops.nms(boxes.bfloat16().float(), scores.bfloat16().float(),
                                        0.5)
            for dtype in (torch.bfloat16, torch.float16):  # on fp32 copies
                _, keep = mmcv.ops.nms(boxes.to(dtype), scores.to(dtype), 0.5)
                if dtype == torch.bfloat16:
                    assert torch.equal(keep, reference)


def test_soft_nms_is_mmcvs_on_both_routes():
    generator = torch.Generator().manual_seed(5)
    boxes, scores = random_boxes(100, generator), torch.rand(100, generator=generator)
    results = []
    for value in ('mmcv', 'torchvision'):
        with route(value) as (kernels, _):
            results.append(mmcv.ops.soft_nms(boxes, scores, 0.5, method='linear'))
            low = mmcv.ops.soft_nms(boxes.bfloat16(), scores.bfloat16(), 0.5, method='linear')
        assert kernels.kernels() == {'softnms'}
        assert low[0].dtype == torch.bfloat16
    assert all(torch.equal(a, b) for a, b in zip(*results))


# -- the setting ------------------------------------------------------------------------------
def test_the_router_is_installed_on_import():
    for name in roi_ops.ROUTED_MODULES:
        assert isinstance(sys.modules[name].ext_module, RoutedExt)
    roi_ops.route_mmcv_ops()  # again: not wrapped twice
    assert not isinstance(sys.modules['mmcv.ops.nms'].ext_module.ext, RoutedExt)


@pytest.mark.parametrize('value', ['torchvison', 'MMCV', None, True])
def test_bad_value_names_roi_ops(value):
    with pytest.raises(ValueError, match=r"roi_ops=.* is not one of 'auto', 'torchvision', "
                                         r"'mmcv'"):
        set_roi_ops(value)
    assert check_roi_ops('mmcv') == 'mmcv'


def test_auto_picks_by_the_mmcv_build(monkeypatch):
    """CUDA: mmcv's kernels only in a CUDA build of mmcv (its compiled CUDA version), logged once
    per device type; the CPU always has mmcv's; MPS only torchvision's."""
    monkeypatch.setattr(roi_ops, '_announced', set())
    set_roi_ops('auto')
    for version, expected in (('not available', 'torchvision'), ('12.1', 'mmcv')):
        monkeypatch.setattr(mmcv.ops, 'get_compiling_cuda_version', lambda v=version: v)
        roi_ops.mmcv_cuda_version.cache_clear()
        try:
            assert mmcv_has_kernels('cuda') == (expected == 'mmcv')
            with LogRecords() as messages:
                assert roi_ops_route(torch.device('cuda', 0)) == expected
                assert roi_ops_route('cuda') == expected
            assert len(messages) == 1 and f"run {expected}'s kernels" in messages[0]
            assert ('without CUDA' in messages[0]) == (expected == 'torchvision')
        finally:
            roi_ops.mmcv_cuda_version.cache_clear()
    assert roi_ops_route('cpu') == 'mmcv' and mmcv_has_kernels('cpu')
    assert not mmcv_has_kernels('mps') and mmcv_has_kernels('npu')
    for value in ('mmcv', 'torchvision'):
        set_roi_ops(value)
        assert roi_ops_route('cuda') == roi_ops_route('cpu') == value


def test_auto_without_mmcv_kernels_takes_torchvision(monkeypatch):
    """The branch a CUDA tensor takes with a CPU-only mmcv, taken on the CPU: the device check
    says mmcv has no kernel here, so RoIAlign and NMS run torchvision's, said once."""
    monkeypatch.setattr(roi_ops, '_announced', set())
    monkeypatch.setattr(roi_ops, 'mmcv_has_kernels', lambda device_type: False)
    feats = torch.randn(1, 4, 16, 16, requires_grad=True)
    rois = torch.tensor([[0., 1., 2., 30., 40.]])
    with LogRecords() as messages, route('auto') as (kernels, torchvision_ops):
        out = mmcv.ops.roi_align(feats, rois, 7, 0.5, 0, 'avg', True)
        out.sum().backward()
        mmcv.ops.nms(torch.tensor([[0., 0., 4., 4.], [1., 1., 5., 5.]]),
                     torch.tensor([0.9, 0.8]), 0.3)
    assert_took_route('torchvision', kernels, torchvision_ops, set(),
                      {'roi_align', '_roi_align_backward', 'nms'})
    assert messages == ["roi_ops='auto': RoIAlign and NMS on cpu tensors run torchvision's "
                        "kernels (mmcv has no cpu kernels)"]


# -- the tools' config handling ---------------------------------------------------------------
TOY_CONFIG = str(ROOT / 'configs/mask_rcnn/convnext_atto_toy.py')


def test_cfg_options_roi_ops(monkeypatch):
    from convnext_dense.config import load_config
    from convnext_dense.engine import run_config
    assert load_config(TOY_CONFIG).roi_ops == 'auto'
    cfg = load_config(TOY_CONFIG, {'roi_ops': 'torchvision'})
    assert cfg.roi_ops == 'torchvision'
    with pytest.raises(ValueError, match="roi_ops='torchvison' is not one of"):
        load_config(TOY_CONFIG, {'roi_ops': 'torchvison'})
    with pytest.raises(KeyError, match="did you mean 'roi_ops'"):
        load_config(TOY_CONFIG, {'roi_op': 'torchvision'})
    # make_runner applies it before building the runner
    from mmengine.runner import Runner
    seen = []
    monkeypatch.setattr('mmengine.registry.init_default_scope', lambda scope: None)
    monkeypatch.setattr(Runner, 'from_cfg', classmethod(lambda cls, c: seen.append(get_roi_ops())))
    set_roi_ops('mmcv')
    run_config.make_runner(cfg)
    assert seen == ['torchvision']
    cfg_without = Config(dict(default_scope='mmseg'))  # a config without the key: 'auto'
    run_config.make_runner(cfg_without)
    assert seen[-1] == 'auto'


# -- whole models -----------------------------------------------------------------------------
def small_model_cfg(cfg: Config, arch: str = 'atto'):
    """A paper config's model with a ConvNeXt-atto backbone, a few RoIs and every detection
    above score 0 (an untrained model's boxes reach the box head's NMS); the heads as
    configured."""
    model = copy.deepcopy(cfg.model)
    model.backbone.update(arch=arch, init_cfg=None, drop_path_rate=0.0)
    dims = ARCH_SETTINGS[arch]['dims']
    if cfg.default_scope == 'mmseg':
        model.decode_head.in_channels = dims
        model.auxiliary_head.in_channels = dims[2]
        model.data_preprocessor.size = (64, 64)
        return model
    model.neck.in_channels = dims
    train = model.train_cfg
    train.rpn_proposal.update(nms_pre=200, max_per_img=64)
    for stage in (train.rcnn if isinstance(train.rcnn, list) else [train.rcnn]):
        stage.sampler.num = 32
    model.test_cfg.rpn.update(nms_pre=200, max_per_img=64)
    model.test_cfg.rcnn.update(score_thr=0.0, max_per_img=10)
    return model


def build_small(config: str):
    cfg = Config.fromfile(str(ROOT / 'configs' / config))
    torch.manual_seed(0)
    return build_model_for_analysis(cfg, small_model_cfg(cfg)), cfg.default_scope


def train_step_grads(model, data, value):
    """Losses and gradients of one training step under ``roi_ops=value``, the routes' kernels
    checked."""
    model = copy.deepcopy(model).train()
    names = {id(m): name for name, m in model.named_modules()}
    with route(value, names) as (kernels, torchvision_ops):
        torch.manual_seed(0)  # the RPN and R-CNN samplers draw at random
        batch = model.data_preprocessor(copy.deepcopy(data), training=True)
        losses = model(**batch, mode='loss')
        loss, log_vars = model.parse_losses(losses)
        loss.backward()
    assert_took_route(value, kernels, torchvision_ops, ROUTED_KERNELS,
                      {'roi_align', '_roi_align_backward', 'nms'})
    return log_vars, {name: p.grad for name, p in model.named_parameters() if p.grad is not None}


def toy_cascade():
    """The Cascade Mask R-CNN paper config as a toy: ConvNeXt-atto, 32-channel FPN and heads, a
    few RoIs; its three box heads (4 convs and 1 fc each), mask heads and their losses as
    configured."""
    cfg = Config.fromfile(str(ROOT / 'configs/mask_rcnn/cascade_convnext_t_coco_3x.py'))
    model = small_model_cfg(cfg)
    width = 32
    model.neck.out_channels = width
    model.rpn_head.update(in_channels=width, feat_channels=width)
    roi_head = model.roi_head
    for extractor in (roi_head.bbox_roi_extractor, roi_head.mask_roi_extractor):
        extractor.out_channels = width
    for head in roi_head.bbox_head:
        head.update(in_channels=width, conv_out_channels=width, fc_out_channels=2 * width)
    roi_head.mask_head.update(in_channels=width, conv_out_channels=width)
    torch.manual_seed(0)
    return build_model_for_analysis(cfg, model)


def toy_mask_rcnn():
    cfg = Config.fromfile(str(ROOT / 'configs/mask_rcnn/convnext_atto_toy.py'))
    torch.manual_seed(0)
    return build_model_for_analysis(cfg)


@pytest.mark.parametrize('build', [toy_mask_rcnn, toy_cascade])
def test_train_step_same_on_both_routes(build):
    model = build()
    data = det_batch(1, 64, 96, instances=3, num_classes=5)
    losses, grads = train_step_grads(model, data, 'mmcv')
    losses_tv, grads_tv = train_step_grads(model, data, 'torchvision')
    depth = reduction_depth(model)
    assert losses.keys() == losses_tv.keys()
    assert any(key.endswith('loss_mask') for key in losses)
    for key, value in losses.items():
        assert_close_to_reference(losses_tv[key].detach(), value.detach(), depth, name=key)
    assert grads.keys() == grads_tv.keys()
    assert any(name.startswith('backbone.') for name in grads)
    for name, grad in grads.items():
        assert_close_to_reference(grads_tv[name], grad, depth, name=name)


# -- the list of docs/device_ops.md -----------------------------------------------------------
FAMILIES = {
    'Mask R-CNN': 'mask_rcnn/mask_rcnn_convnext_t_coco_3x.py',
    'Cascade Mask R-CNN': 'mask_rcnn/cascade_convnext_t_coco_3x.py',
    'V2 Mask R-CNN': 'mask_rcnn/mask_rcnn_convnext_v2_b_fcmae_lsj_coco_3x.py',
    'UperNet': 'upernet/convnext_t_ade20k.py',
}


def documented_ops() -> set[tuple[str, str, str, str, str]]:
    """(config family, step, mmcv kernel, module, called in) of every row of the doc's table."""
    text = DOC.read_text()
    table = re.search(r'<!-- device-ops-table.*?-->\n(.*?)<!-- end of device-ops-table -->',
                      text, re.S)
    assert table, f'{DOC}: no device-ops-table'
    rows = [line for line in table.group(1).splitlines() if line.startswith('|')][2:]
    entries = set()
    for row in rows:
        cells = [cell.strip().strip('`') for cell in row.strip('|').split('|')]
        families, steps, kernel, module, function = cells[:5]
        for family in families.split(', '):
            assert family in FAMILIES, (family, row)
            for step in steps.split(', '):
                entries.add((family, step, kernel, module, function))
    return entries


@pytest.mark.parametrize('family', list(FAMILIES))
def test_device_ops_are_the_documented_ones(family):
    """One training step (forward, backward) and one test step of the family's paper config
    (small backbone, few RoIs) call exactly the mmcv kernels docs/device_ops.md lists for it."""
    from mmengine.optim import build_optim_wrapper
    model, scope = build_small(FAMILIES[family])
    optim_wrapper = build_optim_wrapper(model, dict(optimizer=dict(type='SGD', lr=0.01)))
    data = det_batch(1, 64, 64, instances=2) if scope == 'mmdet' else seg_batch(2, 64, 64)
    names = {id(m): name for name, m in model.named_modules()}
    recorded = set()
    for step in ('train', 'test'):
        with pytest.MonkeyPatch.context() as patcher, roi_ops_mode('mmcv'):
            kernels = MmcvKernels(patcher, names)
            torch.manual_seed(0)
            if step == 'train':
                model.train()
                model.train_step(copy.deepcopy(data), optim_wrapper)
            else:
                model.eval()
                with torch.no_grad():
                    results = model.test_step(copy.deepcopy(data))
        recorded |= {(family, step, kernel, module, str(function).split('.<locals>.')[-1])
                     for kernel, module, function in kernels.calls}
    if scope == 'mmdet':
        assert len(results[0].pred_instances) > 0  # the box head's NMS had boxes
    expected = {entry for entry in documented_ops() if entry[0] == family}
    assert recorded == expected, (f'{family}: recorded but not in {DOC.name}: '
                                  f'{sorted(recorded - expected)}; listed but not called: '
                                  f'{sorted(expected - recorded)}')
