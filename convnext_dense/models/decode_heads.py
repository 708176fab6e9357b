"""mmseg's UperNet and FCN decode heads (Xiao et al., "Unified Perceptual Parsing for Scene
Understanding", ECCV 2018; Long et al., CVPR 2015) with a training loss that never holds the
full-resolution logits.

mmseg's ``BaseDecodeHead.loss_by_feat`` upsamples the logits to the label size, then scores them
with ``CrossEntropyLoss``: at the ConvNeXt papers' ADE20K batch of 16 crops x 150 classes x
512 x 512 that upsampled map is 16 * 150 * 512 * 512 * 4 B = 2.52 GB in fp32; cross-entropy keeps
its log-probabilities, as large, for the backward, which adds a gradient as large. Measured on a
CPU (torch's allocator statistics, forward and backward of the loss), mmseg's path peaks at 3.00
such maps (944 MB at 2 crops, 1887 MB at 4; under bf16 autocast it still allocates the fp32 map).
``ChunkedLossUPerHead`` and ``ChunkedLossFCNHead`` compute the same loss, its gradient and
``acc_seg`` one chunk of output pixels at a time (a band of rows of one image, or several whole
images when they fit), in fp32 whatever the autocast dtype, and recompute each chunk's upsampling
in the backward instead of keeping it: the largest tensors are a band of ``C x
loss_chunk_pixels`` fp32 values plus 2 f rows (42 MB at 150 classes, 512-wide crops, f = 4 and
the default 65536 pixels) and the gradient of the low-resolution logits (which mmseg's path
allocates too). Measured the same way: 153 MB at 2
crops, 320 MB at 16, against 3 x 2.52 = 7.55 GB for mmseg's path at 16 (7.2 GB less) and 944 MB
at the papers' 2 crops per GPU (0.79 GB less per GPU). The price is a second upsampling of each
chunk in the backward: 6.0-6.6 s against 4.7-5.2 s for mmseg's loss at 2 crops on one CPU
thread (not measured on a GPU yet).

Bilinear interpolation is separable, so a band of output rows reads only the source rows their
interpolation weights touch (with ``align_corners=False``: output row ``y`` reads rows
``floor(s)`` and ``floor(s) + 1`` of ``s = max(0, (y + 0.5) * h / H - 0.5)``). Where the label
has a whole number f of times the logits' rows (UperNet's 4, the FCN head's 16 at stride 16),
``F.interpolate`` upsamples each band's source rows plus one on each side by f and the band is
the middle of it: the same coordinates, bit for bit the same values for a power-of-two f. Other
sizes interpolate the band's columns with ``F.interpolate`` and its rows with the weights
PyTorch's kernel uses (within a few float32 roundings of its values).

The heads are registered as builder functions, like the fp32 RoI extractor, so that
``import convnext_dense`` does not import mmseg's model zoo; :func:`with_chunked_loss` adds the
same loss to any other mmseg decode head class.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.registry import MODELS
from torch import Tensor

DEFAULT_LOSS_CHUNK_PIXELS = 65536


def bilinear_source_rows(in_size: int, out_size: int, align_corners: bool
                         ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """For each of ``out_size`` positions of an axis that bilinear interpolation resizes from
    ``in_size``: the two source positions it reads (``low``, ``high``) and their weights
    (``low_weight``, ``high_weight``), as ``F.interpolate(size=...)`` computes them (CPU
    tensors)."""
    positions = torch.arange(out_size, dtype=torch.float64)
    if align_corners:
        scale = (torch.tensor(in_size - 1, dtype=torch.float32) / (out_size - 1)
                 if out_size > 1 else torch.tensor(0., dtype=torch.float32))
        source = scale.double() * positions
    else:
        # scale = in / out in float32, as the kernels compute it from the sizes
        scale = torch.tensor(in_size, dtype=torch.float32) / torch.tensor(out_size,
                                                                          dtype=torch.float32)
        source = (scale.double() * (positions + 0.5) - 0.5).clamp_min(0)
    # PyTorch's CPU kernel evaluates scale * (y + 0.5) - 0.5 with a fused multiply-add, rounded
    # once to float32 (here exact in float64 first): rounding the product too moves a weight by
    # up to 2e-6 (33 -> 100 rows: 32 units in the last place of the weight).
    source = source.float()
    low = source.floor().long().clamp_max(in_size - 1)
    high_weight = (source - low).clamp(0, 1)
    high = torch.where(low < in_size - 1, low + 1, low)
    return low, high, 1 - high_weight, high_weight


@dataclass(frozen=True)
class _Chunk:
    """Images ``images`` x output rows ``rows`` of the loss, read from the logit rows
    ``source_rows``. With ``crop``, the label has ``factor`` times the logits' rows and the chunk
    is rows ``crop`` of ``F.interpolate`` of the source rows to ``factor`` times as many; else
    output row ``i`` interpolates the local source rows ``low[i]`` and ``high[i]``."""
    images: slice
    rows: slice
    source_rows: slice
    factor: int = 0
    crop: slice | None = None
    low: Tensor | None = None
    high: Tensor | None = None
    low_weight: Tensor | None = None  # (rows, 1), broadcast over the columns
    high_weight: Tensor | None = None


def _row_bands(out_height: int, rows_per_chunk: int) -> list[slice]:
    return [slice(first, min(first + rows_per_chunk, out_height))
            for first in range(0, out_height, rows_per_chunk)]


@functools.lru_cache(maxsize=16)
def plan_chunks(num_images: int, logits_size: tuple[int, int], label_size: tuple[int, int],
                align_corners: bool, max_pixels: int, device: torch.device | str = 'cpu'
                ) -> tuple[_Chunk, ...]:
    """The chunks of a ``num_images`` x ``label_size`` loss of at most ``max_pixels`` output
    pixels each: whole images when one fits, else bands of rows (at least one row; with a whole
    upsampling factor f, a multiple of f rows). Cached: training sees the same few shapes, and
    their index tensors stay on ``device``."""
    (height, _), (out_height, out_width) = logits_size, label_size
    rows_per_chunk = max(1, min(out_height, max_pixels // out_width))
    if rows_per_chunk == out_height:
        images_per_chunk = max(1, max_pixels // (out_height * out_width))
        return tuple(_Chunk(slice(first, min(first + images_per_chunk, num_images)),
                            slice(0, out_height), slice(0, height))
                     for first in range(0, num_images, images_per_chunk))
    images = [slice(i, i + 1) for i in range(num_images)]
    factor = out_height // height
    if not align_corners and factor * height == out_height:
        # Output row y reads source rows floor((y + 0.5) / f - 0.5) and the next: the rows
        # f * k0 .. f * k1 - 1 read k0 - 1 .. k1. Interpolating rows k0 - 1 .. k1 by f and
        # keeping the middle gives the same coordinates, offset by the whole k0 - 1 (exact
        # arithmetic for a power-of-two f, as UperNet's 4 and the FCN head's 16).
        rows_per_chunk = max(factor, rows_per_chunk // factor * factor)
        chunks = []
        for rows in _row_bands(out_height, rows_per_chunk):
            first, last = max(rows.start // factor - 1, 0), min(-(-rows.stop // factor), height - 1)
            crop = slice(rows.start - factor * first, rows.stop - factor * first)
            chunks += [_Chunk(image, rows, slice(first, last + 1), factor, crop)
                       for image in images]
        return tuple(chunks)
    low, high, low_weight, high_weight = bilinear_source_rows(height, out_height, align_corners)
    chunks = []
    for rows in _row_bands(out_height, rows_per_chunk):
        first = int(low[rows.start])
        source_rows = slice(first, int(high[rows.stop - 1]) + 1)
        local = ((low[rows] - first).to(device), (high[rows] - first).to(device),
                 low_weight[rows, None].to(device), high_weight[rows, None].to(device))
        chunks += [_Chunk(image, rows, source_rows, 0, None, *local) for image in images]
    return tuple(chunks)


def _upsample(source_rows: Tensor, chunk: _Chunk, out_width: int, align_corners: bool) -> Tensor:
    """The chunk's rows of the bilinear upsampling, from the logit rows they read; with
    ``chunk.crop``, a taller band of which they are rows ``crop`` (see :func:`_chunk_labels`)."""
    if chunk.crop is not None:
        return F.interpolate(source_rows, size=(chunk.factor * source_rows.shape[2], out_width),
                             mode='bilinear', align_corners=False)
    if chunk.low is None:  # whole images
        return F.interpolate(source_rows, size=(chunk.rows.stop, out_width), mode='bilinear',
                             align_corners=align_corners)
    # Columns first, as the kernels do: F.interpolate keeps the row count, so its row weights
    # are exactly 1 and 0.
    wide = F.interpolate(source_rows, size=(source_rows.shape[2], out_width), mode='bilinear',
                         align_corners=align_corners)
    return (wide.index_select(2, chunk.low) * chunk.low_weight
            + wide.index_select(2, chunk.high) * chunk.high_weight)


def _chunk_labels(labels: Tensor, chunk: _Chunk, ignore_index: int) -> Tensor:
    """The labels of what :func:`_upsample` returns: the rows outside ``crop`` are ignored
    (scoring them costs less than copying the band out of the taller one)."""
    target = labels[chunk.images, chunk.rows]
    if chunk.crop is None:
        return target
    rows = chunk.factor * (chunk.source_rows.stop - chunk.source_rows.start)
    padded = target.new_full((target.shape[0], rows, target.shape[2]), ignore_index)
    padded[:, chunk.crop] = target
    return padded


class _ChunkedCrossEntropy(torch.autograd.Function):
    """Per loss ``k``: the sum over the pixels of ``class_weights[k, label] * -log softmax``
    of the upsampled logits (0 at ``ignore_index``), and the number of non-ignored pixels whose
    top-1 class is the label. The backward recomputes each chunk's upsampling: autograd keeps
    the low-resolution logits and the labels only."""

    @staticmethod
    def forward(ctx, seg_logits: Tensor, labels: Tensor, class_weights: Tensor,
                chunks: tuple[_Chunk, ...], ignore_index: int, align_corners: bool
                ) -> tuple[Tensor, Tensor]:
        ctx.save_for_backward(seg_logits, labels, class_weights)
        ctx.chunks, ctx.ignore_index, ctx.align_corners = chunks, ignore_index, align_corners
        sums = torch.zeros(class_weights.shape[0], dtype=torch.float32,
                           device=seg_logits.device)
        correct = torch.zeros((), dtype=torch.int64, device=seg_logits.device)
        out_width = labels.shape[-1]
        # fp32 under autocast too: mmseg's cross-entropy runs in fp32 under autocast
        with torch.autocast(seg_logits.device.type, enabled=False):
            for chunk in chunks:
                logits = _upsample(seg_logits[chunk.images, :, chunk.source_rows].float(), chunk,
                                   out_width, align_corners)
                target = _chunk_labels(labels, chunk, ignore_index)
                valid = target != ignore_index
                nll = F.cross_entropy(logits, target, reduction='none', ignore_index=ignore_index)
                # any class index where the label is ignored: nll is 0 there
                pixel_class = target.masked_fill(~valid, 0)
                sums += (nll * class_weights[:, pixel_class]).flatten(1).sum(1)
                # topk, not argmax: ties then go where mmseg's accuracy() sends them
                predicted = logits.topk(1, dim=1).indices.squeeze(1)
                correct += ((predicted == target) & valid).sum()
        ctx.mark_non_differentiable(correct)
        return sums, correct

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_sums: Tensor, _grad_correct: Tensor):
        seg_logits, labels, class_weights = ctx.saved_tensors
        # d(sum_k g_k * sum_k)/d nll of a pixel of class c: sum_k g_k * class_weights[k, c]
        weight_of_class = grad_sums.float() @ class_weights
        grad = torch.zeros_like(seg_logits, dtype=torch.float32)
        out_width = labels.shape[-1]
        with torch.autocast(seg_logits.device.type, enabled=False):
            for chunk in ctx.chunks:
                source = seg_logits[chunk.images, :, chunk.source_rows].detach().float()
                with torch.enable_grad():
                    source.requires_grad_()
                    logits = _upsample(source, chunk, out_width, ctx.align_corners)
                target = _chunk_labels(labels, chunk, ctx.ignore_index)
                valid = target != ctx.ignore_index
                pixel_class = target.masked_fill(~valid, 0).unsqueeze(1)
                # d(-w_y log softmax(z)_y)/dz = w_y (softmax(z) - onehot(y)); w = 0 where ignored
                # (one pass over the chunk fewer than autograd's nll + log-softmax backward)
                grad_logits = torch.softmax(logits.detach(), dim=1)
                grad_logits.scatter_add_(1, pixel_class, grad_logits.new_full(
                    pixel_class.shape, -1.))
                grad_logits.mul_(weight_of_class[pixel_class] * valid.unsqueeze(1))
                (chunk_grad, ) = torch.autograd.grad(logits, source, grad_logits)
                grad[chunk.images, :, chunk.source_rows] += chunk_grad
        return grad.to(seg_logits.dtype), None, None, None, None, None


class ChunkedSegLossMixin:
    """A ``BaseDecodeHead`` mixin whose ``loss_by_feat`` returns what mmseg's returns (the
    ``CrossEntropyLoss`` terms of ``loss_decode`` by ``loss_name``, ``acc_seg``) with the logits
    upsampled and scored ``loss_chunk_pixels`` output pixels at a time (module docstring).

    The same as mmseg's: ``ignore_index``, ``avg_non_ignore`` (the mean over all pixels or over
    the non-ignored ones), ``reduction`` 'mean' or 'sum', ``loss_weight``, several losses (the
    same ``loss_name`` adds up), ``acc_seg`` from the same top-1 rule on the same upsampled
    values where the label is a power-of-two multiple of the logits' size (as in the configs;
    elsewhere equal unless a pixel's two best logits lie within float32 rounding of each
    other). The sums over the pixels add up in another order. With ``class_weight``, the
    mean divides by the sum of the non-ignored pixels' class weights, whatever
    ``avg_non_ignore`` says, as ``F.cross_entropy(weight=...)``: where mmseg computes a value
    that is what it computes (onedl-mmsegmentation with ``avg_non_ignore=False``; mmseg 1.2.2
    without ignored pixels), while mmseg 1.2.2 raises IndexError on an ignored pixel (it looks
    the ignore label up in the class weights) and onedl-mmsegmentation raises IndexError with
    ``avg_non_ignore=True`` (a mask of the label map's shape on a flat tensor).

    Falls back to mmseg's full-resolution ``loss_by_feat`` (saying why, once, at build time)
    where a chunk cannot be scored alone: a ``sampler`` (OHEM ranks the pixels of the whole
    map), a loss other than mmseg's softmax ``CrossEntropyLoss`` (Dice, Lovasz, focal,
    sigmoid or mask cross-entropy), ``reduction='none'`` (a per-pixel map is the full-size
    tensor), ``ignore_index=None``.

    Args:
        loss_chunk_pixels (int): The most output (label) pixels one chunk covers: each chunk
            holds a few fp32 tensors of ``num_classes x loss_chunk_pixels`` (plus 2 f rows
            where the label has f times the logits' rows). At least one row of the label map
            (f rows). Default: 65536 (four 128-row bands of a 512 x 512 crop).
        *args, **kwargs: Those of the decode head.
    """

    def __init__(self, *args, loss_chunk_pixels: int = DEFAULT_LOSS_CHUNK_PIXELS, **kwargs):
        if isinstance(loss_chunk_pixels, bool) or not isinstance(loss_chunk_pixels, int) or \
                loss_chunk_pixels < 1:
            raise ValueError(f'loss_chunk_pixels={loss_chunk_pixels!r}; expected a positive '
                             'int (output pixels per chunk of the loss)')
        super().__init__(*args, **kwargs)
        self.loss_chunk_pixels = loss_chunk_pixels
        self._class_weights_on: dict[tuple[int, torch.device], Tensor] = {}
        self.full_resolution_loss_reason = self._full_resolution_loss_reason()
        if self.full_resolution_loss_reason is not None:
            print_log(f'{type(self).__name__}: {self.full_resolution_loss_reason}; the loss '
                      "upsamples the whole logits map (mmseg's loss_by_feat)", logger='current',
                      level=logging.WARNING)

    def _losses(self) -> list[torch.nn.Module]:
        if isinstance(self.loss_decode, torch.nn.ModuleList):
            return list(self.loss_decode)
        return [self.loss_decode]

    def _full_resolution_loss_reason(self) -> str | None:
        from mmseg.models.losses import CrossEntropyLoss
        if self.sampler is not None:
            return (f'sampler={type(self.sampler).__name__} weighs pixels by the whole '
                    'upsampled map')
        if self.ignore_index is None:
            return 'ignore_index=None'
        for loss in self._losses():
            if type(loss) is not CrossEntropyLoss:
                return (f'loss_decode {loss.loss_name!r} is {type(loss).__name__}, not the '
                        'softmax CrossEntropyLoss')
            if loss.use_sigmoid or loss.use_mask:
                return (f'loss_decode {loss.loss_name!r} has use_sigmoid={loss.use_sigmoid}, '
                        f'use_mask={loss.use_mask}')
            if loss.reduction not in ('mean', 'sum'):
                return (f"loss_decode {loss.loss_name!r} has reduction={loss.reduction!r}, "
                        'a per-pixel map')
        return None

    def _class_weight_table(self, loss: torch.nn.Module, num_classes: int) -> Tensor:
        if loss.class_weight is None:
            return torch.ones(num_classes, dtype=torch.float32)
        table = torch.as_tensor(loss.class_weight, dtype=torch.float32)
        if table.shape != (num_classes, ):
            raise ValueError(f'loss_decode {loss.loss_name!r}: class_weight has shape '
                             f'{tuple(table.shape)}; the logits have {num_classes} classes')
        return table

    def _class_weights(self, num_classes: int, device: torch.device) -> Tensor:
        """(losses, classes): each loss's class weights (1 without), on ``device``. Copied there
        once per device: a copy of host data waits for the device (CUDA copies from pageable
        memory synchronously)."""
        key = (num_classes, device)
        if key not in self._class_weights_on:
            self._class_weights_on[key] = torch.stack([
                self._class_weight_table(loss, num_classes) for loss in self._losses()]).to(device)
        return self._class_weights_on[key]

    def loss_by_feat(self, seg_logits: Tensor, batch_data_samples: list) -> dict:
        """mmseg's ``loss_by_feat`` computed by chunks (class docstring)."""
        if self.full_resolution_loss_reason is not None:
            return super().loss_by_feat(seg_logits, batch_data_samples)
        labels = self._stack_batch_gt(batch_data_samples).squeeze(1)
        num_images, num_classes = seg_logits.shape[:2]
        losses = self._losses()
        class_weights = self._class_weights(num_classes, seg_logits.device)
        chunks = plan_chunks(num_images, tuple(seg_logits.shape[2:]), tuple(labels.shape[1:]),
                             self.align_corners, self.loss_chunk_pixels, seg_logits.device)
        sums, correct = _ChunkedCrossEntropy.apply(seg_logits, labels, class_weights, chunks,
                                                   self.ignore_index, self.align_corners)
        valid = labels != self.ignore_index
        # Counted on the device: reading the count back would wait for the forward pass. In
        # float64, as mmseg's host int meets the eps below in a Python float, then rounded to
        # float32 once where mmseg's divisor meets the float32 loss: the same values.
        num_valid = valid.sum(dtype=torch.float64)
        # mmseg's loss and accuracy add float32's eps to every divisor
        eps = torch.finfo(torch.float32).eps
        loss_dict = {}
        for loss, weight, total in zip(losses, class_weights, sums):
            if loss.reduction == 'mean':
                if loss.class_weight is not None:
                    # bincount of the valid labels without boolean indexing (whose output size
                    # needs the count on the host): ignored pixels add 0 to class 0
                    pixels_per_class = torch.zeros(num_classes, dtype=torch.int64,
                                                   device=labels.device).scatter_add_(
                        0, labels.masked_fill(~valid, 0).flatten(), valid.flatten().long())
                    total = total / ((pixels_per_class.to(torch.float32) * weight).sum() + eps)
                elif loss.avg_non_ignore:
                    total = total / (num_valid + eps).to(torch.float32)
                else:
                    total = total / (labels.numel() + eps)
            value = loss.loss_weight * total
            name = loss.loss_name
            loss_dict[name] = loss_dict[name] + value if name in loss_dict else value
        # 100 / x as a division (Tensor.__rtruediv__ would multiply by a rounded reciprocal)
        percent = torch.full_like(num_valid, 100.0) / (num_valid + eps)
        loss_dict['acc_seg'] = (correct.to(torch.float32).reshape(1) + eps).mul_(
            percent.to(torch.float32))
        return loss_dict


@functools.cache
def with_chunked_loss(head_class: type) -> type:
    """``head_class`` (an mmseg ``BaseDecodeHead`` subclass) with the loss of
    :class:`ChunkedSegLossMixin`, named ``ChunkedLoss<name>``; the same class for the same
    ``head_class``."""
    return type(f'ChunkedLoss{head_class.__name__}', (ChunkedSegLossMixin, head_class),
                {'__module__': __name__,
                 '__doc__': f'mmseg\'s {head_class.__name__} with the loss computed by chunks '
                            f'(convnext_dense.models.decode_heads.ChunkedSegLossMixin).'})


@MODELS.register_module(name='ChunkedLossUPerHead')
def build_chunked_loss_uper_head(**kwargs) -> torch.nn.Module:
    """mmseg's ``UPerHead`` (same arguments, plus ``loss_chunk_pixels``) whose loss never holds
    the full-resolution logits."""
    from mmseg.models.decode_heads import UPerHead
    return with_chunked_loss(UPerHead)(**kwargs)


@MODELS.register_module(name='ChunkedLossFCNHead')
def build_chunked_loss_fcn_head(**kwargs) -> torch.nn.Module:
    """mmseg's ``FCNHead`` (same arguments, plus ``loss_chunk_pixels``) whose loss never holds
    the full-resolution logits."""
    from mmseg.models.decode_heads import FCNHead
    return with_chunked_loss(FCNHead)(**kwargs)


# registered name -> the mmseg head whose forward and inference it keeps (for tools that accept
# a model by its head types, such as exporters)
CHUNKED_LOSS_HEADS = {'ChunkedLossUPerHead': 'UPerHead', 'ChunkedLossFCNHead': 'FCNHead'}

__all__ = ['CHUNKED_LOSS_HEADS', 'ChunkedSegLossMixin', 'bilinear_source_rows',
           'build_chunked_loss_fcn_head', 'build_chunked_loss_uper_head', 'plan_chunks',
           'with_chunked_loss']
