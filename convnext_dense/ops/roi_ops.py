"""RoIAlign and NMS of the detectors on mmcv's or torchvision's kernels, picked per call.

Mask R-CNN (He et al., ICCV 2017) and Cascade Mask R-CNN (Cai and Vasconcelos, TPAMI 2019), as
mmdet 3.x runs them, call two compiled ops of mmcv on the device: RoIAlign (the box and mask RoI
features, and the mask targets) and NMS (RPN proposals, detections); which module calls which is
listed in ``docs/device_ops.md``. mmcv has CUDA kernels only when it was compiled with CUDA (nvcc
matching torch's CUDA); a CPU-only build of mmcv imports and trains on the CPU, and on a GPU stops
at the first of these ops (the RPN's NMS: "nms_impl: implementation for device cuda:0 not found").
torchvision's wheels carry CPU and CUDA kernels of both ops, with the same arithmetic on the CPU
(``tests/ops/test_roi_ops.py`` compares them).

The config key ``roi_ops`` (default ``'auto'``) picks the kernels, for the whole process:

* ``'mmcv'``: mmcv's kernels, as mmdet calls them;
* ``'torchvision'``: ``torchvision.ops.roi_align`` and ``torchvision.ops.nms``;
* ``'auto'``: for each call, mmcv's kernel where this mmcv build has one for the tensor's device
  (:func:`mmcv_has_kernels`: the CPU; CUDA only in a CUDA build of mmcv), torchvision's
  elsewhere; the first choice for each device type is logged.

How: mmdet reaches both ops only through mmcv (``RoIAlign`` layers, ``mmcv.ops.roi_align`` in the
mask targets, ``batched_nms`` -> ``nms`` in the RPN and the box heads), and every mmcv entry point
calls the compiled kernel through its module's ``ext_module``. :func:`route_mmcv_ops` (applied on
``import convnext_dense``) puts :class:`RoutedExt` there for ``mmcv.ops.roi_align`` and
``mmcv.ops.nms``: it sends each kernel call to mmcv's or torchvision's kernel by the tensor's
device, and passes every other op through. mmcv's Python code (argument checks, score
thresholds, ``max_num``, ``batched_nms``' class offsets, the ONNX symbolics) runs unchanged.

Kernels and dtypes (read from the sources of mmcv 2.1.0 and torchvision 0.29; the CPU ones also
run in the tests): RoIAlign has fp32/fp64/fp16 kernels in both libraries on the CPU and on CUDA,
bfloat16 in neither; torchvision's autocast rule runs it in fp32. Another dtype, or features and
RoIs of two dtypes, run in fp32 (fp64 where one of them is), the result copied back into mmcv's
output; ``FP32SingleRoIExtractor`` (what ``--bf16`` configures) keeps the RoIs' coordinates in
fp32, which mmdet's ``SingleRoIExtractor`` casts to the features' dtype. NMS runs on fp32 copies
on both routes: mmcv's kernels are fp32 only, and the same precision keeps the same boxes.
Soft-NMS (the V2 configs' box head) has no torchvision kernel: it stays mmcv's, which runs on the
CPU on every build (mmcv copies the boxes to the host), on fp32 copies too.

Where the two routes could differ: mmcv's NMS takes the IoU threshold as a C++ ``float``;
torchvision's CPU kernel compares against a ``double``, so the threshold is rounded to fp32 first
(an IoU equal to fp32(0.3) is kept by mmcv and would be suppressed against 0.3), and boxes of
equal scores go to torchvision ranked in the order mmcv's kernel takes them. ``offset=1``
(mmdet 1.x boxes, ``x2 - x1 + 1``) is torchvision's NMS on boxes with 1 added to x2 and y2:
equal to mmcv's for coordinates on whole pixels, within an fp32 rounding elsewhere. mmcv's CUDA
NMS compares ``inter > threshold * union`` where torchvision's divides, so on CUDA they may
disagree for an IoU within an fp32 rounding of the threshold (not measured on a GPU yet).
torchvision's RoIAlign has no max pooling (``pool_mode='max'``, which mmdet's configs do not use):
that needs ``roi_ops='mmcv'``.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
from collections.abc import Iterator

import numpy as np
import torch
from mmengine.logging import print_log

ROI_OPS = ('auto', 'torchvision', 'mmcv')
# Accelerators that mmcv builds RoIAlign/NMS kernels for (Ascend, Cambricon and Moore Threads
# builds of mmcv) and torchvision ships none for: 'auto' keeps mmcv's there.
MMCV_ONLY_DEVICES = ('npu', 'mlu', 'musa')
# The dtypes of the RoIAlign kernels, forward and backward, of both libraries on CPU and CUDA.
ROI_ALIGN_DTYPES = (torch.float32, torch.float64, torch.float16)
# The modules of mmcv whose compiled-op calls are routed.
ROUTED_MODULES = ('mmcv.ops.roi_align', 'mmcv.ops.nms')

__all__ = ['MMCV_ONLY_DEVICES', 'ROI_OPS', 'RoutedExt', 'check_roi_ops', 'get_roi_ops',
           'mmcv_cuda_version', 'mmcv_has_kernels', 'roi_ops_mode', 'roi_ops_route',
           'route_mmcv_ops', 'set_roi_ops']

_roi_ops = 'auto'
_announced: set[tuple[str, str]] = set()


# -- the setting ------------------------------------------------------------------------------
def check_roi_ops(value) -> str:
    """``value`` if it is one of :data:`ROI_OPS`, else a ``ValueError`` naming ``roi_ops``."""
    if not isinstance(value, str) or value not in ROI_OPS:
        raise ValueError(
            f'roi_ops={value!r} is not one of {", ".join(repr(v) for v in ROI_OPS)}: the kernels '
            "that run RoIAlign and NMS ('auto': mmcv's where mmcv has one for the tensor's "
            "device, torchvision's elsewhere)")
    return value


def get_roi_ops() -> str:
    """The process's ``roi_ops`` setting."""
    return _roi_ops


def set_roi_ops(value: str) -> str:
    """Run RoIAlign and NMS by ``value`` (one of :data:`ROI_OPS`) from now on, with the router
    installed (:func:`route_mmcv_ops`); returns the previous setting."""
    global _roi_ops
    check_roi_ops(value)
    route_mmcv_ops()
    previous, _roi_ops = _roi_ops, value
    return previous


@contextlib.contextmanager
def roi_ops_mode(value: str) -> Iterator[None]:
    """``roi_ops`` set to ``value`` inside the block, restored after it."""
    previous = set_roi_ops(value)
    try:
        yield
    finally:
        set_roi_ops(previous)


@functools.cache
def mmcv_cuda_version() -> str | None:
    """The CUDA version mmcv's ops were compiled with, or None for a build without CUDA."""
    from mmcv.ops import get_compiling_cuda_version
    version = get_compiling_cuda_version()
    return None if version == 'not available' else version


def mmcv_has_kernels(device_type: str) -> bool:
    """Whether this mmcv build has RoIAlign and NMS kernels for tensors of ``device_type``: the CPU
    always (``mmcv.ops`` imports only with its compiled ops), CUDA in a CUDA build, the
    accelerators of :data:`MMCV_ONLY_DEVICES` by assumption (torchvision has none for them), no
    other (MPS, XPU: mmcv has no kernels of these ops there, torchvision has)."""
    if device_type == 'cpu':
        return True
    if device_type == 'cuda':
        return mmcv_cuda_version() is not None
    return device_type in MMCV_ONLY_DEVICES


def roi_ops_route(device: torch.device | str) -> str:
    """``'mmcv'`` or ``'torchvision'``: whose kernels run RoIAlign and NMS on tensors of
    ``device`` under the current setting. Under ``'auto'`` the first choice for each device type
    is logged."""
    if _roi_ops != 'auto':
        return _roi_ops
    device_type = torch.device(device).type
    route = 'mmcv' if mmcv_has_kernels(device_type) else 'torchvision'
    if (device_type, route) not in _announced:
        _announced.add((device_type, route))
        if device_type == 'cuda':
            version = mmcv_cuda_version()
            reason = (f'mmcv was compiled with CUDA {version}' if version else
                      'mmcv was compiled without CUDA')
        else:
            reason = f"mmcv {'has' if route == 'mmcv' else 'has no'} {device_type} kernels"
        print_log(f"roi_ops='auto': RoIAlign and NMS on {device_type} tensors run {route}'s "
                  f"kernels ({reason})", logger='current')
    return route


# -- the router -------------------------------------------------------------------------------
def _roi_align_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The dtype to run RoIAlign in: the tensors' common one where a kernel exists for it, else
    the promoted one, else fp32 (bf16)."""
    dtype = functools.reduce(torch.promote_types, (t.dtype for t in tensors))
    return dtype if dtype in ROI_ALIGN_DTYPES else torch.float32


def _torchvision_ops():
    import torchvision.ops
    return torchvision.ops


class RoutedExt:
    """mmcv's compiled-ops module with ``roi_align_forward``, ``roi_align_backward``, ``nms`` and
    ``softnms`` sent to the kernels :func:`roi_ops_route` picks (same arguments and in-place
    outputs as mmcv's); every other attribute is mmcv's own."""

    def __init__(self, ext) -> None:
        self.ext = ext

    def __getattr__(self, name: str):
        return getattr(self.ext, name)

    def roi_align_forward(self, input, rois, output, argmax_y, argmax_x, aligned_height,
                          aligned_width, spatial_scale, sampling_ratio, pool_mode, aligned):
        dtype = _roi_align_dtype(input, rois)
        if roi_ops_route(input.device) == 'torchvision':
            if pool_mode == 0:
                raise ValueError("RoIAlign(pool_mode='max'): torchvision's RoIAlign averages; "
                                 "use roi_ops='mmcv' for max pooling")
            result = _torchvision_ops().roi_align(
                input.to(dtype), rois.to(dtype), (aligned_height, aligned_width), spatial_scale,
                sampling_ratio, aligned)
            output.copy_(result)
            return
        kwargs = dict(aligned_height=aligned_height, aligned_width=aligned_width,
                      spatial_scale=spatial_scale, sampling_ratio=sampling_ratio,
                      pool_mode=pool_mode, aligned=aligned)
        if input.dtype == rois.dtype == output.dtype == dtype:
            self.ext.roi_align_forward(input, rois, output, argmax_y, argmax_x, **kwargs)
            return
        results = [torch.zeros_like(t, dtype=dtype) for t in (output, argmax_y, argmax_x)]
        self.ext.roi_align_forward(input.to(dtype), rois.to(dtype), *results, **kwargs)
        for target, result in zip((output, argmax_y, argmax_x), results):
            target.copy_(result)

    def roi_align_backward(self, grad_output, rois, argmax_y, argmax_x, grad_input,
                           aligned_height, aligned_width, spatial_scale, sampling_ratio,
                           pool_mode, aligned):
        dtype = _roi_align_dtype(grad_output, rois)
        if roi_ops_route(grad_output.device) == 'torchvision':
            _torchvision_ops()  # registers torchvision's ops
            batch, channels, height, width = grad_input.shape
            # the backward op of torchvision.ops.roi_align's autograd formula
            result = torch.ops.torchvision._roi_align_backward(
                grad_output.to(dtype), rois.to(dtype), spatial_scale, aligned_height,
                aligned_width, batch, channels, height, width, sampling_ratio, aligned)
            grad_input.copy_(result)
            return
        kwargs = dict(aligned_height=aligned_height, aligned_width=aligned_width,
                      spatial_scale=spatial_scale, sampling_ratio=sampling_ratio,
                      pool_mode=pool_mode, aligned=aligned)
        if grad_output.dtype == rois.dtype == grad_input.dtype == dtype:
            self.ext.roi_align_backward(grad_output, rois, argmax_y, argmax_x, grad_input,
                                        **kwargs)
            return
        result = torch.zeros_like(grad_input, dtype=dtype)
        self.ext.roi_align_backward(grad_output.to(dtype), rois.to(dtype), argmax_y.to(dtype),
                                    argmax_x.to(dtype), result, **kwargs)
        grad_input.copy_(result)

    def nms(self, boxes, scores, iou_threshold, offset=0):
        boxes, scores = boxes.float(), scores.float()
        if roi_ops_route(boxes.device) == 'mmcv':
            return self.ext.nms(boxes, scores, iou_threshold=iou_threshold, offset=offset)
        if offset:  # torchvision's IoU is mmcv's with x2 - x1 + offset
            boxes = boxes + boxes.new_tensor([0, 0, offset, offset])
        # mmcv's kernel compares in fp32 against the threshold rounded to fp32
        threshold = float(np.float32(iou_threshold))
        # NMS reads the scores only for their order. mmcv's kernel orders equal scores as torch's
        # default sort does, torchvision's CPU kernel by index (a stable sort): torchvision gets
        # each box's rank in mmcv's order instead (distinct in fp32 below 2**24 boxes).
        order = scores.sort(0, descending=True)[1]
        ranks = torch.empty_like(scores)
        ranks[order] = torch.arange(len(order), 0, -1, dtype=ranks.dtype, device=ranks.device)
        return _torchvision_ops().nms(boxes, ranks, threshold)

    def softnms(self, boxes, scores, dets, **kwargs):
        # mmcv's CPU kernel on either route (torchvision has no soft-NMS); fp32 only
        if boxes.dtype == scores.dtype == dets.dtype == torch.float32:
            return self.ext.softnms(boxes, scores, dets, **kwargs)
        result = torch.zeros_like(dets, dtype=torch.float32)
        keep = self.ext.softnms(boxes.float(), scores.float(), result, **kwargs)
        dets.copy_(result)
        return keep


def route_mmcv_ops() -> None:
    """Put :class:`RoutedExt` in front of the compiled ops of ``mmcv.ops.roi_align`` and
    ``mmcv.ops.nms`` (idempotent); a no-op for an mmcv without compiled ops."""
    for name in ROUTED_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:  # mmcv without compiled ops: mmdet's detectors cannot run anyway
            return
        if not isinstance(module.ext_module, RoutedExt):
            module.ext_module = RoutedExt(module.ext_module)
