"""Export a UperNet (mmseg) or Mask R-CNN / Cascade Mask R-CNN (mmdet) checkpoint to ONNX, run
by onnxruntime on the CPU to check it.

    python tools/deployment/export_onnx.py CONFIG CHECKPOINT OUT.onnx [--shape H W] [--dynamic]
        [--logits] [--roi-masks] [--batch-size N] [--opset N] [--cfg-options k=v ...]

Input ``image``: (N, 3, H, W) float32 as the config's test pipeline hands it to the model (after
its Resize, channels as loaded: BGR); the graph applies the data preprocessor (RGB, mean/std,
padding). Detection takes one image.

Outputs, at the input's resolution:
- UperNet: ``seg`` (N, H, W) int64 class map, resized and argmax-ed in the graph as mmseg's
  ``predict`` does; ``--logits``: ``logits`` (N, C, H, W) instead.
- Mask R-CNN / Cascade Mask R-CNN: ``boxes`` (K, 4) x1y1x2y2 in input pixels, ``scores`` (K,),
  ``labels`` (K,) int64, ``masks`` (K, H, W) bool; ``--roi-masks``: ``masks`` (K, 28, 28), each
  box's mask probabilities before pasting. NMS is ONNX NonMaxSuppression and RoIAlign ONNX
  RoiAlign; the test_cfg's nms_pre, min_bbox_size, score_thr, NMS IoU, max_per_img and
  mask_thr_binary are those of mmdet's ``predict``.

--dynamic keeps H and W symbolic (and N for UperNet); --shape is then the size traced.
Without --shape: the test pipeline's Resize scale.

What mmdet does that the graph does not: soft-NMS (the ConvNeXt V2 Mask R-CNN configs' box
head) has no ONNX operator; such a config is refused until exported with
``--cfg-options model.test_cfg.rcnn.nms.type=nms``. mmseg's sliding-window test
(``test_cfg.mode='slide'``, the paper's ADE20K configs) is unrolled for the traced size, so it
exports at a static shape only (or with ``--cfg-options model.test_cfg.mode=whole``).
Detections come at the input's scale: dividing the boxes by the pipeline's scale factor and
resizing the masks to the original image is the caller's, as mmdet's ``rescale=True``.
"""
import argparse
import sys
import time

from mmengine.config import DictAction

import convnext_dense  # noqa: F401  (registers the plugin, safe checkpoint loading)
from convnext_dense.deployment.onnx_export import (
    default_shape,
    export_onnx,
    load_model,
    onnx_summary,
)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='mmseg UperNet or mmdet (Cascade) Mask R-CNN config')
    parser.add_argument('checkpoint', help='whole-model checkpoint of that config')
    parser.add_argument('out', help='ONNX file to write')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help="input size traced (default: the test pipeline's Resize scale)")
    parser.add_argument('--dynamic', action='store_true',
                        help='symbolic input height and width (and batch for segmentation)')
    parser.add_argument('--logits', action='store_true',
                        help='segmentation: output the logits instead of the class map')
    parser.add_argument('--roi-masks', action='store_true',
                        help='detection: output 28x28 mask probabilities per box instead of '
                        'masks pasted at the image size')
    parser.add_argument('--batch-size', type=int, default=1,
                        help='segmentation: batch size traced (default 1)')
    parser.add_argument('--opset', type=int, help="ONNX opset (default: the exporter's)")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys')
    return parser.parse_args()


def main():
    args = parse_args()
    try:
        model = load_model(args.config, args.checkpoint, args.cfg_options)
        shape = tuple(args.shape) if args.shape else default_shape(model.cfg)
        start = time.perf_counter()
        out = export_onnx(model, args.out, shape, dynamic=args.dynamic, logits=args.logits,
                          roi_masks=args.roi_masks, batch_size=args.batch_size,
                          opset=args.opset)
    except (FileNotFoundError, TypeError, ValueError) as error:
        sys.exit(f'error: {error}')
    summary = onnx_summary(out)
    print(f'wrote {out} ({summary["size_mb"]:.1f} MB, opset {summary["opset"]}, traced at '
          f'{shape[0]}x{shape[1]}{", dynamic H/W" if args.dynamic else ""}, '
          f'{time.perf_counter() - start:.1f} s): inputs {summary["inputs"]}, outputs '
          f'{summary["outputs"]}')


if __name__ == '__main__':
    main()
