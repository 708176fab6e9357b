"""ONNX export of the UperNet (mmseg ``EncoderDecoder``) and Mask R-CNN / Cascade Mask R-CNN
(mmdet) models, for onnxruntime and other ONNX runtimes.

mmdeploy covers neither ConvNeXt nor this repository's Cascade heads, so the export is done here
with ``torch.onnx.export(..., dynamo=True)`` (torch.export): the detection post-processing has
sizes that depend on the data (score thresholds, NMS), which torch.export carries as symbolic
sizes into the graph, and the input height and width stay symbolic too (``dynamic=True``)
wherever they reach (anchors, padding, clipping, pasting). The TorchScript tracer
(``dynamo=False``) would bake every size computed in Python (anchor grids, ``min(nms_pre, n)``,
padding) into constants of the traced input size.

The graphs take one image batch, ``(N, 3, H, W)`` float32 (N = 1 for detection), with the pixel
values and channel order the config's test pipeline hands to the model (after its ``Resize``;
``LoadImageFromFile`` reads BGR), and apply the model's data preprocessor inside (channel swap,
mean/std, padding to the size divisor). Outputs are at the input's resolution:

- segmentation: ``seg`` (N, H, W) int64 class map, or ``logits`` (N, C, H, W) float32 with
  ``logits=True``; the decode head's output is resized to (H, W) and argmax-ed in the graph,
  as mmseg's ``EncoderDecoder.predict`` does (``test_cfg.mode='slide'`` is unrolled, so only at
  a static shape); the pyramid pooling's adaptive average pooling becomes two matrix products
  (:class:`SymbolicAdaptiveAvgPool2d`), which hold at every input size;
- detection: ``boxes`` (K, 4) x1y1x2y2 in input pixels, ``scores`` (K,), ``labels`` (K,) int64
  and ``masks`` (K, H, W) bool (thresholded at ``test_cfg.rcnn.mask_thr_binary``), or with
  ``roi_masks=True`` the mask head's (K, 28, 28) probabilities of each box's class. Rescaling to
  the original image is left to the caller, as ``rescale=False`` in mmdet.

The detection graph reuses the model's own modules (backbone, neck, RPN head, RoI extractors'
settings, box and mask heads, anchor generator) and replaces mmdet's Python-side
post-processing (``mmcv.ops`` NMS and RoIAlign, which do not export, per-level Python loops, the
per-box mask pasting) by traceable torch code with the same test-time semantics:
``torchvision.ops.nms`` (ONNX ``NonMaxSuppression``) with the coordinate offset trick of
``mmcv.ops.batched_nms`` for class-wise and level-wise NMS, ``torchvision.ops.roi_align`` (ONNX
``RoiAlign``) on every FPN level with each RoI's level picked by mmdet's ``map_roi_levels``, and
a separable form of mmdet's ``grid_sample`` mask pasting (the same binary masks, see
``_paste_masks``). What
cannot be expressed with ONNX operators is refused with the setting to change: soft-NMS (the V2
configs' ``test_cfg.rcnn.nms``; ONNX has only hard NMS), box coders other than
``DeltaXYWHBBoxCoder``, RoI layers other than average RoIAlign, and classifiers with a custom
activation.

One module per job: :mod:`.loading` (the model of a config and checkpoint), :mod:`.preprocessing`
(the data preprocessor in the graph), :mod:`.segmentation` and :mod:`.detection` (the traceable
inference of each task), :mod:`.export` (``torch.onnx.export``) and :mod:`.runtime` (running and
describing an exported file with onnxruntime and onnx).
"""
from .detection import DetectionExportModel
from .export import DETECTION_OUTPUTS, build_export_model, export_onnx
from .loading import default_shape, load_model
from .runtime import onnx_summary, run_onnx
from .segmentation import SegmentationExportModel, SymbolicAdaptiveAvgPool2d

__all__ = ['DETECTION_OUTPUTS', 'DetectionExportModel', 'SegmentationExportModel',
           'SymbolicAdaptiveAvgPool2d', 'build_export_model', 'default_shape', 'export_onnx',
           'load_model', 'onnx_summary', 'run_onnx']
