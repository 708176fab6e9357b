"""mmdet Mask R-CNN / Cascade Mask R-CNN inference of one image as one traceable forward: the
model's own modules, with mmdet's Python-side post-processing (mmcv NMS and RoIAlign, per-level
loops, per-box mask pasting) rewritten as torch code that ONNX operators express (see the
package docstring)."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from .preprocessing import preprocess


def _decode_deltas(coder: nn.Module, priors: torch.Tensor, deltas: torch.Tensor,
                   bounds: torch.Tensor, wh_ratio_clip: float = 16 / 1000) -> torch.Tensor:
    """mmdet's ``delta2bbox`` (``DeltaXYWHBBoxCoder.decode``) for ``priors`` (n, 4) and
    ``deltas`` (n, 4), clipped to ``bounds`` = (W, H, W, H) as a tensor. mmdet's own decode
    switches to a removed mmdet 2.x module while an ONNX export runs."""
    means = deltas.new_tensor(coder.means)
    stds = deltas.new_tensor(coder.stds)
    deltas = deltas * stds + means
    dxy, dwh = deltas[:, :2], deltas[:, 2:]
    pxy = (priors[:, :2] + priors[:, 2:]) * 0.5
    pwh = priors[:, 2:] - priors[:, :2]
    dxy_wh = pwh * dxy
    max_ratio = abs(math.log(wh_ratio_clip))
    if coder.add_ctr_clamp:
        dxy_wh = dxy_wh.clamp(min=-coder.ctr_clamp, max=coder.ctr_clamp)
        dwh = dwh.clamp(max=max_ratio)
    else:
        dwh = dwh.clamp(min=-max_ratio, max=max_ratio)
    gxy = pxy + dxy_wh
    gwh = pwh * dwh.exp()
    boxes = torch.cat([gxy - gwh * 0.5, gxy + gwh * 0.5], dim=-1)
    if coder.clip_border:
        boxes = torch.minimum(boxes.clamp(min=0), bounds)
    return boxes


def _nms_settings(nms_cfg: dict, key: str) -> tuple[float, bool]:
    """(IoU threshold, class-agnostic) of an mmcv NMS config, or an error naming ``key``."""
    nms_cfg = dict(nms_cfg)
    kind = nms_cfg.pop('type', 'nms')
    if kind != 'nms':
        raise ValueError(f"{key}.type={kind!r} cannot be exported: ONNX NonMaxSuppression is "
                         f"hard NMS only; export with --cfg-options {key}.type=nms (the "
                         'detections then differ from those of the config)')
    iou_threshold = nms_cfg.pop('iou_threshold')
    class_agnostic = nms_cfg.pop('class_agnostic', False)
    nms_cfg.pop('split_thr', None)  # only how mmcv splits the work, not what it computes
    if nms_cfg.get('offset', 0) != 0:
        raise ValueError(f'{key}.offset={nms_cfg["offset"]}: ONNX NonMaxSuppression '
                         'measures boxes without the +1 offset')
    nms_cfg.pop('offset', None)
    if nms_cfg:
        raise ValueError(f'{key} has settings the export does not support: {sorted(nms_cfg)}')
    return float(iou_threshold), bool(class_agnostic)


def _batched_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor,
                 iou_threshold: float, class_agnostic: bool) -> torch.Tensor:
    """Indices kept by ``mmcv.ops.batched_nms`` (NMS within each group, by decreasing score):
    its coordinate offset trick, which it also uses below 10000 boxes (above, its per-class
    loop keeps the same boxes)."""
    if not class_agnostic:
        # max(boxes.max(), 0) + 1: mmcv's offset for boxes >= 0, and defined for no boxes
        top = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max()
        boxes = boxes + (groups.to(boxes.dtype) * (top + 1))[:, None]
    return torchvision.ops.nms(boxes, scores, iou_threshold)


def _roi_align_layer(layer: nn.Module) -> dict:
    """torchvision ``roi_align`` arguments of an mmcv ``RoIAlign`` layer."""
    if getattr(layer, 'pool_mode', 'avg') != 'avg':
        raise ValueError(f'roi_layer pool_mode={layer.pool_mode!r}: ONNX RoiAlign in this '
                         "export is 'avg' only")
    return dict(output_size=tuple(layer.output_size), spatial_scale=float(layer.spatial_scale),
                sampling_ratio=int(layer.sampling_ratio), aligned=bool(layer.aligned))


def _extract_rois(extractor: nn.Module, feats: Sequence[torch.Tensor],
                  rois: torch.Tensor) -> torch.Tensor:
    """mmdet's ``SingleRoIExtractor``: each RoI pooled from the FPN level ``map_roi_levels``
    gives it. Every level pools every RoI and the RoI's own level is selected, instead of
    mmdet's per-level ``nonzero`` and scatter."""
    feats = feats[:extractor.num_inputs]
    if len(feats) == 1:
        return torchvision.ops.roi_align(feats[0], rois,
                                         **_roi_align_layer(extractor.roi_layers[0]))
    levels = extractor.map_roi_levels(rois, len(feats))
    pooled = None
    for level, (feat, layer) in enumerate(zip(feats, extractor.roi_layers)):
        level_feats = torchvision.ops.roi_align(feat, rois, **_roi_align_layer(layer))
        level_feats = level_feats * (levels == level).to(level_feats.dtype)[:, None, None, None]
        pooled = level_feats if pooled is None else pooled + level_feats
    return pooled


def _paste_masks(masks: torch.Tensor, boxes: torch.Tensor, height, width) -> torch.Tensor:
    """mmdet's ``_do_paste_mask``: (K, M, M) masks bilinearly resampled into their boxes on an
    image of (height, width), zero outside. mmdet samples with ``grid_sample`` (zero padding,
    ``align_corners=False``) on a grid that depends on x only along rows and on y only along
    columns, so the bilinear weights factor: out = Wy @ mask @ Wx^T with each weight
    ``max(0, 1 - |u - j|)`` for mask pixel j at sample position u. This holds (K, H, M) and
    (K, M, W) weights instead of a (K, H, W, 2) grid. mmdet pastes into a region 1 pixel
    around the box on a CPU and into the whole image on a GPU: outside that region its
    values stay below 0.5 of the mask's edge, under any threshold >= 0.5 alike."""
    size = masks.shape[-1]
    x0, y0, x1, y1 = boxes.unbind(dim=1)

    def weights(coords: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        extent = end - start
        flat = (extent <= 0)[:, None]
        position = (coords[None, :] + 0.5 - start[:, None]) * (size / extent)[:, None] - 0.5
        # A box of zero extent (clipped at the border) makes mmdet's grid infinite, which it
        # sets to 0, the mask's centre, over the pixels it pastes into on a CPU: 1 pixel
        # around the box.
        near = (coords[None, :] >= start.floor()[:, None] - 1) \
            & (coords[None, :] < end.ceil()[:, None] + 1)
        centre = torch.where(near, torch.full_like(position, (size - 1) / 2),
                             torch.full_like(position, -2.0))
        position = torch.where(flat, centre, position)
        pixels = torch.arange(size, dtype=masks.dtype, device=masks.device)
        return (1 - (position[:, :, None] - pixels).abs()).clamp(min=0)

    rows = weights(torch.arange(height, dtype=masks.dtype, device=masks.device), y0, y1)
    cols = weights(torch.arange(width, dtype=masks.dtype, device=masks.device), x0, x1)
    return rows @ masks @ cols.transpose(1, 2)


class DetectionExportModel(nn.Module):
    """mmdet Mask R-CNN / Cascade Mask R-CNN test-time inference of one image as a traceable
    forward (see the module docstring): image in, ``boxes, scores, labels, masks`` out."""

    def __init__(self, model: nn.Module, roi_masks: bool = False) -> None:
        super().__init__()
        from mmdet.models.detectors import TwoStageDetector
        from mmdet.models.roi_heads import CascadeRoIHead, StandardRoIHead
        from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder
        if not isinstance(model, TwoStageDetector) \
                or not isinstance(model.roi_head, (StandardRoIHead, CascadeRoIHead)):
            raise TypeError(f'model is a {type(model).__name__}; the detection export takes '
                            'an mmdet two-stage detector with a StandardRoIHead or '
                            'CascadeRoIHead (Mask R-CNN, Cascade Mask R-CNN)')
        roi_head = model.roi_head
        if not roi_head.with_mask:
            raise ValueError('model.roi_head has no mask head; the export outputs masks')
        self.cascade = isinstance(roi_head, CascadeRoIHead)
        self.num_stages = roi_head.num_stages if self.cascade else 1
        heads = list(roi_head.bbox_head) if self.cascade else [roi_head.bbox_head]
        coders = [('model.rpn_head.bbox_coder', model.rpn_head.bbox_coder)] + [
            (f'model.roi_head.bbox_head[{i}].bbox_coder', h.bbox_coder)
            for i, h in enumerate(heads)]
        for key, coder in coders:
            if not isinstance(coder, DeltaXYWHBBoxCoder):
                raise ValueError(f'{key} is a {type(coder).__name__}; the export decodes '
                                 'DeltaXYWHBBoxCoder boxes')
        for i, head in enumerate(heads):
            if head.custom_cls_channels:
                raise ValueError(f'model.roi_head.bbox_head[{i}] has a classifier with a custom '
                                 'activation (loss_cls); the export takes softmax scores')
        rpn_cfg, rcnn_cfg = model.rpn_head.test_cfg, roi_head.test_cfg
        self.rpn_nms = _nms_settings(rpn_cfg.nms, 'model.test_cfg.rpn.nms')
        self.rcnn_nms = _nms_settings(rcnn_cfg.nms, 'model.test_cfg.rcnn.nms')
        self.model = model
        self.heads = heads
        self.roi_masks = roi_masks
        self.rpn_cfg, self.rcnn_cfg = rpn_cfg, rcnn_cfg

    # stages of mmdet's TwoStageDetector.predict
    def _pad(self, image: torch.Tensor) -> torch.Tensor:
        preprocessor = self.model.data_preprocessor
        divisor = preprocessor.pad_size_divisor
        height, width = image.shape[2:]
        pad_h = (divisor - height % divisor) % divisor
        pad_w = (divisor - width % divisor) % divisor
        return F.pad(image, (0, pad_w, 0, pad_h), value=float(preprocessor.pad_value))

    def _proposals(self, feats, bounds: torch.Tensor) -> torch.Tensor:
        """``RPNHead.predict_by_feat`` for one image: the top ``nms_pre`` anchors per level,
        decoded, small boxes dropped, NMS within each level, the best ``max_per_img``."""
        rpn_head, cfg = self.model.rpn_head, self.rpn_cfg
        cls_scores, bbox_preds = rpn_head(feats)
        priors = rpn_head.prior_generator.grid_priors(
            [score.shape[-2:] for score in cls_scores], dtype=cls_scores[0].dtype,
            device=cls_scores[0].device)
        nms_pre = cfg.get('nms_pre', -1)
        all_boxes, all_scores, all_levels = [], [], []
        for level, (cls_score, bbox_pred, anchors) in enumerate(
                zip(cls_scores, bbox_preds, priors)):
            deltas = bbox_pred[0].permute(1, 2, 0).reshape(-1, rpn_head.bbox_coder.encode_size)
            logits = cls_score[0].permute(1, 2, 0).reshape(-1, rpn_head.cls_out_channels)
            scores = logits.sigmoid() if rpn_head.use_sigmoid_cls \
                else logits.softmax(-1)[:, :-1]
            scores = scores.reshape(-1)
            anchors = getattr(anchors, 'tensor', anchors)
            if nms_pre > 0:
                # mmdet sorts only a level holding more than nms_pre anchors; the order does
                # not change which boxes NMS keeps
                scores, order = scores.topk(torch.sym_min(scores.shape[0], nms_pre))
                deltas, anchors = deltas[order], anchors[order]
            all_boxes.append(_decode_deltas(rpn_head.bbox_coder, anchors, deltas, bounds))
            all_scores.append(scores)
            all_levels.append(torch.full_like(scores, level, dtype=torch.long))
        boxes, scores, levels = (torch.cat(x) for x in (all_boxes, all_scores, all_levels))
        min_size = cfg.get('min_bbox_size', -1)
        if min_size >= 0:
            valid = ((boxes[:, 2] - boxes[:, 0]) > min_size) \
                & ((boxes[:, 3] - boxes[:, 1]) > min_size)
            boxes, scores, levels = boxes[valid], scores[valid], levels[valid]
        keep = _batched_nms(boxes, scores, levels, *self.rpn_nms)[:cfg.max_per_img]
        return boxes[keep]

    def _bbox_forward(self, stage: int, feats, rois: torch.Tensor):
        roi_head = self.model.roi_head
        extractor = roi_head.bbox_roi_extractor[stage] if self.cascade \
            else roi_head.bbox_roi_extractor
        return self.heads[stage](_extract_rois(extractor, feats, rois))

    def _class_boxes(self, head: nn.Module, rois: torch.Tensor, bbox_pred: torch.Tensor,
                     bounds: torch.Tensor) -> torch.Tensor:
        """(n, C or 1, 4) boxes decoded from each RoI, per class unless class-agnostic."""
        num_rois = rois.shape[0]
        deltas = bbox_pred.reshape(num_rois, -1, 4)
        priors = rois[:, None, 1:].expand(num_rois, deltas.shape[1], 4)
        boxes = _decode_deltas(head.bbox_coder, priors.reshape(-1, 4), deltas.reshape(-1, 4),
                               bounds)
        return boxes.reshape(num_rois, -1, 4)

    def _detect(self, feats, proposals: torch.Tensor, bounds: torch.Tensor):
        """``predict_bbox`` of the RoI head (Cascade: ``_refine_roi``, scores averaged over the
        stages) and ``multiclass_nms``: per-class boxes above ``score_thr``, NMS within each
        class, the best ``max_per_img``."""
        rois = torch.cat([proposals.new_zeros(proposals.shape[0], 1), proposals], dim=1)
        summed = None
        for stage in range(self.num_stages):
            cls_score, bbox_pred = self._bbox_forward(stage, feats, rois)
            summed = cls_score if summed is None else summed + cls_score
            if stage < self.num_stages - 1:  # Cascade: refine by the best foreground class
                head = self.heads[stage]
                boxes = self._class_boxes(head, rois, bbox_pred, bounds)
                if boxes.shape[1] > 1:
                    best = cls_score[:, :-1].argmax(dim=1)
                    boxes = torch.gather(boxes, 1, best[:, None, None].expand(-1, 1, 4))
                rois = torch.cat([rois[:, :1], boxes[:, 0]], dim=1)
        cls_score = summed / float(self.num_stages) if self.num_stages > 1 else summed
        head, cfg = self.heads[-1], self.rcnn_cfg
        scores = F.softmax(cls_score, dim=-1)[:, :-1]
        boxes = self._class_boxes(head, rois, bbox_pred, bounds)
        num_rois, num_classes = scores.shape
        boxes = boxes.expand(num_rois, num_classes, 4).reshape(-1, 4)
        labels = torch.arange(num_classes, device=scores.device).expand(num_rois, num_classes)
        scores, labels = scores.reshape(-1), labels.reshape(-1)
        valid = scores > cfg.score_thr
        boxes, scores, labels = boxes[valid], scores[valid], labels[valid]
        keep = _batched_nms(boxes, scores, labels, *self.rcnn_nms)
        if cfg.max_per_img > 0:
            keep = keep[:cfg.max_per_img]
        return boxes[keep], scores[keep], labels[keep]

    def _masks(self, feats, boxes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``predict_mask``: the mask head's probabilities of each box's class (Cascade: the
        mean over the stages' sigmoids), (K, M, M)."""
        roi_head = self.model.roi_head
        rois = torch.cat([boxes.new_zeros(boxes.shape[0], 1), boxes], dim=1)
        probabilities = None
        for stage in range(self.num_stages):
            extractor = roi_head.mask_roi_extractor[stage] if self.cascade \
                else roi_head.mask_roi_extractor
            head = roi_head.mask_head[stage] if self.cascade else roi_head.mask_head
            stage_masks = head(_extract_rois(extractor, feats, rois)).sigmoid()
            probabilities = stage_masks if probabilities is None \
                else probabilities + stage_masks
        if self.num_stages > 1:
            probabilities = probabilities / self.num_stages
        last_head = roi_head.mask_head[-1] if self.cascade else roi_head.mask_head
        if not last_head.class_agnostic:
            index = labels[:, None, None, None].expand(-1, 1, *probabilities.shape[2:])
            probabilities = torch.gather(probabilities, 1, index)
        return probabilities[:, 0]

    def forward(self, image: torch.Tensor):
        height, width = image.shape[2:]
        bounds = torch.stack([torch.scalar_tensor(size, dtype=image.dtype)
                              for size in (width, height, width, height)])
        x = self._pad(preprocess(self.model.data_preprocessor, image))
        feats = self.model.extract_feat(x)
        proposals = self._proposals(feats, bounds)
        boxes, scores, labels = self._detect(feats, proposals, bounds)
        masks = self._masks(feats, boxes, labels)
        if self.roi_masks:
            return boxes, scores, labels, masks
        pasted = _paste_masks(masks, boxes, height, width)
        threshold = self.rcnn_cfg.mask_thr_binary
        if threshold >= 0:
            return boxes, scores, labels, pasted >= threshold
        return boxes, scores, labels, (pasted * 255).to(torch.uint8)
