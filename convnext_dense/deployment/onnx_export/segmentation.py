"""mmseg ``EncoderDecoder`` inference (UperNet) as one traceable forward."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .preprocessing import preprocess


class SymbolicAdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d`` as two matrix products, for input sizes that stay symbolic.

    torch's decomposition of adaptive average pooling (UperNet's pyramid pooling: bins 1, 2,
    3, 6) sizes its gather indices by the traced input, and its graph reads out of range at
    other sizes. Output bin ``i`` of ``n`` over ``L`` inputs averages inputs
    ``floor(i L / n) .. ceil((i + 1) L / n) - 1``, as torch's kernel does, so the pooling is
    ``P_h @ x @ P_w^T`` with those averaging rows."""

    def __init__(self, output_size: int | tuple[int, int]) -> None:
        super().__init__()
        size = (output_size, output_size) if isinstance(output_size, int) else output_size
        if None in size:
            raise ValueError(f'output_size={output_size!r}: the export needs every output size')
        self.output_size = tuple(int(s) for s in size)

    @staticmethod
    def _averaging(bins: int, length, like: torch.Tensor) -> torch.Tensor:
        index = torch.arange(bins, device=like.device)
        start = (index * length) // bins
        end = ((index + 1) * length + bins - 1) // bins
        positions = torch.arange(length, device=like.device)[None, :]
        inside = (positions >= start[:, None]) & (positions < end[:, None])
        return inside.to(like.dtype) / (end - start).to(like.dtype)[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self._averaging(self.output_size[0], x.shape[-2], x)
        cols = self._averaging(self.output_size[1], x.shape[-1], x)
        return rows @ x @ cols.transpose(0, 1)


def _replace_adaptive_pooling(model: nn.Module) -> None:
    for module in list(model.modules()):
        for child_name, child in module.named_children():
            if isinstance(child, nn.AdaptiveAvgPool2d):
                setattr(module, child_name, SymbolicAdaptiveAvgPool2d(child.output_size))


class SegmentationExportModel(nn.Module):
    """mmseg ``EncoderDecoder`` inference as one traceable forward: image batch in, class map
    (or logits) at the input resolution out. See the module docstring for the input."""

    def __init__(self, model: nn.Module, logits: bool = False) -> None:
        super().__init__()
        from mmseg.models.segmentors import EncoderDecoder
        if not isinstance(model, EncoderDecoder):
            raise TypeError(f'model is a {type(model).__name__}; the segmentation export takes '
                            "an mmseg EncoderDecoder (UperNet's configs)")
        test_cfg = model.data_preprocessor.test_cfg or {}
        if test_cfg.get('size') or test_cfg.get('size_divisor'):
            raise ValueError(f'data_preprocessor.test_cfg={dict(test_cfg)} pads test images; the '
                             'export takes the image at the size the model runs at')
        mode = model.test_cfg.get('mode', 'whole')
        if mode not in ('whole', 'slide'):
            raise ValueError(f"model.test_cfg.mode={mode!r}; expected 'whole' or 'slide'")
        _replace_adaptive_pooling(model)  # the caller's copy (build_export_model)
        self.model = model
        self.mode = mode
        self.logits = logits

    def _whole(self, image: torch.Tensor) -> torch.Tensor:
        head = self.model.decode_head
        logits = head(self.model.extract_feat(image))
        return F.interpolate(logits, size=image.shape[2:], mode='bilinear',
                             align_corners=head.align_corners)

    def _slide(self, image: torch.Tensor) -> torch.Tensor:
        """mmseg's ``slide_inference``, its window grid unrolled for the (static) input size."""
        test_cfg = self.model.test_cfg
        h_stride, w_stride = test_cfg.stride
        h_crop, w_crop = test_cfg.crop_size
        batch, _, height, width = image.shape
        h_grids = max(height - h_crop + h_stride - 1, 0) // h_stride + 1
        w_grids = max(width - w_crop + w_stride - 1, 0) // w_stride + 1
        summed = image.new_zeros(batch, self.model.out_channels, height, width)
        count = image.new_zeros(1, 1, height, width)
        for h_idx in range(h_grids):
            for w_idx in range(w_grids):
                y2 = min(h_idx * h_stride + h_crop, height)
                x2 = min(w_idx * w_stride + w_crop, width)
                y1, x1 = max(y2 - h_crop, 0), max(x2 - w_crop, 0)
                window = self._whole(image[:, :, y1:y2, x1:x2])
                summed = summed + F.pad(window, (x1, width - x2, y1, height - y2))
                count[:, :, y1:y2, x1:x2] += 1
        return summed / count

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        image = preprocess(self.model.data_preprocessor, image)
        logits = self._slide(image) if self.mode == 'slide' else self._whole(image)
        if self.logits:
            return logits
        if logits.shape[1] == 1:  # a binary head: mmseg thresholds the sigmoid
            return (logits[:, 0].sigmoid() > self.model.decode_head.threshold).long()
        return logits.argmax(dim=1)
