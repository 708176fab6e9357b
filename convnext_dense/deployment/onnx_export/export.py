"""``torch.onnx.export`` of the export wrappers (:func:`export_onnx`)."""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from .detection import DetectionExportModel
from .segmentation import SegmentationExportModel

DETECTION_OUTPUTS = ('boxes', 'scores', 'labels', 'masks')


def build_export_model(model: nn.Module, logits: bool = False,
                       roi_masks: bool = False) -> nn.Module:
    """The export wrapper of an mmseg segmentor or an mmdet detector (a copy: the model is
    left as it is)."""
    from mmdet.models.detectors import BaseDetector
    model = copy.deepcopy(model).eval()
    if isinstance(model, BaseDetector):
        if logits:
            raise ValueError('logits=True is for segmentation models')
        return DetectionExportModel(model, roi_masks=roi_masks).eval()
    if roi_masks:
        raise ValueError('roi_masks=True is for detection models')
    return SegmentationExportModel(model, logits=logits).eval()


def _dynamic_dims(detection: bool, height: int, width: int) -> dict:
    """The symbolic height and width of the input (the axes of ``dynamic_shapes``).

    torch.export's convolutions on UperNet's stride-32 features guard that they are more than
    one pixel: ``H // 32 > 1``. Declared from 32, the range admits sizes that guard excludes, the
    first trace fails ("Constraints violated") and ``torch.onnx.export`` traces again from 64, as
    the error suggests; declaring 64 up front spares that trace (a quarter of the export's time)
    and gives the same graph. Traced below 64, the exporter is left to find the range. The
    detection graph traces once from 32.
    """
    from torch.export import Dim
    low = 64 if not detection and min(height, width) >= 64 else 32
    return {2: Dim('height', min=low), 3: Dim('width', min=low)}


def export_onnx(model: nn.Module,
                out_file: str,
                shape: tuple[int, int],
                dynamic: bool = False,
                logits: bool = False,
                roi_masks: bool = False,
                batch_size: int = 1,
                opset: int | None = None) -> Path:
    """Export ``model`` (mmseg ``EncoderDecoder`` or mmdet Mask R-CNN / Cascade Mask R-CNN)
    to ``out_file``, traced on a ``shape`` = (H, W) input (see the module docstring).

    Args:
        dynamic: height and width (and the segmentation batch) stay symbolic in the graph.
        logits: segmentation: output the logits instead of the class map.
        roi_masks: detection: output each box's M x M mask probabilities instead of masks
            pasted at the image size.
        batch_size: segmentation: the batch traced (detection takes one image).
        opset: ONNX opset (default: the exporter's; RoiAlign's half-pixel mode needs >= 16).

    Returns:
        The path written.
    """
    from mmdet.models.detectors import BaseDetector
    height, width = (int(s) for s in shape)
    if height < 32 or width < 32:
        raise ValueError(f'shape={tuple(shape)}: ConvNeXt needs H, W >= 32')
    detection = isinstance(model, BaseDetector)
    if detection and batch_size != 1:
        raise ValueError(f'batch_size={batch_size}: the detection export takes one image')
    wrapper = build_export_model(model, logits=logits, roi_masks=roi_masks)
    if dynamic and not detection and wrapper.mode == 'slide':
        raise ValueError("model.test_cfg.mode='slide' tiles the image by its size, which the "
                         'graph cannot do at a dynamic size: export a static shape, or use '
                         "--cfg-options model.test_cfg.mode=whole")
    if opset is not None and opset < 16:
        raise ValueError(f'opset={opset}: RoiAlign with half-pixel coordinates needs >= 16')
    dynamic_shapes = None
    if dynamic:
        dims = _dynamic_dims(detection, height, width)
        if not detection:
            dims[0] = torch.export.Dim('batch', min=1)
            # torch.export specialises a size traced at 1 (it may broadcast)
            batch_size = max(batch_size, 2)
        dynamic_shapes = {'image': dims}
    image = torch.rand(batch_size, 3, height, width) * 255
    outputs = DETECTION_OUTPUTS if detection else ('logits' if logits else 'seg',)
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {} if opset is None else dict(opset_version=opset)
    with torch.no_grad():
        program = torch.onnx.export(wrapper, (image,), dynamo=True, input_names=['image'],
                                    output_names=list(outputs), dynamic_shapes=dynamic_shapes,
                                    verbose=False, **kwargs)
    if detection:
        # the exporter names the count of detections after its expression, e.g.
        # 'Min(100, u3)'
        import onnx_ir as ir
        for value in program.model.graph.outputs:
            value.shape = ir.Shape([ir.SymbolicDim('detections'), *list(value.shape)[1:]])
    program.save(str(out_file))
    return out_file
