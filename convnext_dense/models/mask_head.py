"""Mask R-CNN's FCN mask head with its training targets built on the device.

Mask R-CNN (He et al., ICCV 2017, section 3) trains each positive RoI's mask against its
ground-truth mask cropped to the RoI and resized to ``mask_size`` (28 x 28). mmdet 3.x builds
these targets image by image on the host (``FCNMaskHead.get_targets`` -> ``mask_target`` ->
``BitmapMasks.crop_and_resize``): the positive proposals and their ground-truth indices go to
the host (``.cpu().numpy()``: the host waits for the device), the image's full-resolution masks
are copied to the device, one float copy per *positive* is gathered (``index_select``: 128
positives of an 800 x 1333 image are 546 MB), RoIAligned, and the 28 x 28 targets go back to the
host and to the device once more. Every iteration, for every image, and in Cascade R-CNN for
every stage.

``DeviceTargetFCNMaskHead`` is mmdet's ``FCNMaskHead`` with ``get_targets`` replaced by
:func:`device_mask_target`: each image's bitmap masks go to the device in one non-blocking
host->device copy, from pinned memory on CUDA (nothing comes back; Cascade's three stages copy
them once each), the RoIs index the ground-truth masks directly (a float copy per positive only
where there are fewer positives than ground truths), and the images whose masks have the same
shape are cropped and resized in one RoIAlign call, up to ``GROUP_BYTES`` of float masks per
call (shapes are not padded to one canvas: that would change RoIAlign's clamping at the masks'
bottom and right edges). The op and its parameters are mmdet's (mmcv's ``roi_align``, output
``mask_size``, scale 1, ``sampling_ratio=0``, ``'avg'``, ``aligned=True``, proposals clipped to
the mask first, binarized at ``>= 0.5`` unless ``soft_mask_target``), so the targets equal
mmdet's bit for bit (``tests/models/test_mask_head.py``). torchvision's ``roi_align`` gives the
same targets on the CPU (tested), no faster than mmcv's on 1-channel masks; the call goes
through ``mmcv.ops.roi_align``, so the config's ``roi_ops`` picks the kernel, as for mmdet's.
On a CPU the targets also come 2.2 to 4.7 times faster than mmdet's (2 images of 800 x 1216,
15 masks and 128 positives each, on a busy 2-core machine), mostly the per-positive copies
saved; not measured on a GPU yet.

Polygon masks (``LoadAnnotations(poly2mask=False)``) keep mmdet's own path, and with it its
host round trip: mmdet rasterises each polygon directly in the RoI's 28 x 28 frame (pycocotools,
on the host), which a RoIAlign of a raster does not reproduce. Rasterising the polygons once at
full resolution and RoIAligning them on the device (what ``poly2mask=True``, the default, and
this head's bitmap path give) disagrees with mmdet's polygon targets on 1.3% of the target pixels
(random polygons of 6 to 200 px, RoIs around them, 28 x 28 targets:
``test_polygon_targets_are_mmdets``), so the choice stays with the data pipeline.

The class is made when the first head is built, so that ``import convnext_dense`` does not import
mmdet's model zoo for mmseg users.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
from mmengine.registry import MODELS
from torch.nn.modules.utils import _pair

# The float masks that one RoIAlign call reads are on the device together: a group of images
# stops growing past this many bytes (mmdet pastes predicted masks under the same 1 GB budget).
GROUP_BYTES = 1024**3


@torch.no_grad()
def device_mask_target(pos_proposals_list: Sequence[torch.Tensor],
                       pos_assigned_gt_inds_list: Sequence[torch.Tensor],
                       gt_masks_list: Sequence,
                       cfg) -> torch.Tensor:
    """mmdet's ``mask_target`` (same arguments, same result), computed on the proposals'
    device without host round trips for ``BitmapMasks``.

    Args:
        pos_proposals_list: Per image, the positive proposals ``(num_pos, 4)`` (x1, y1, x2, y2),
            a tensor or an mmdet box type.
        pos_assigned_gt_inds_list: Per image, the index of each positive's ground truth.
        gt_masks_list: Per image, its ground-truth masks: ``BitmapMasks`` (device path) or
            ``PolygonMasks`` (mmdet's host path, see the module docstring).
        cfg: The RCNN train config: ``mask_size`` and optionally ``soft_mask_target``.

    Returns:
        The targets of all positives, images in order, ``(sum num_pos, *mask_size)`` float32
        (the proposals' floating type), 0/1 unless ``soft_mask_target``.
    """
    from mmdet.structures.bbox import get_box_tensor
    from mmdet.structures.mask import BitmapMasks, PolygonMasks
    from mmdet.structures.mask.mask_target import mask_target_single

    num_images = len(pos_proposals_list)
    if not num_images == len(pos_assigned_gt_inds_list) == len(gt_masks_list):
        raise ValueError(
            f'pos_proposals_list, pos_assigned_gt_inds_list and gt_masks_list must hold one '
            f'entry per image, got {num_images}, {len(pos_assigned_gt_inds_list)} and '
            f'{len(gt_masks_list)}')
    if num_images == 0:
        raise ValueError('pos_proposals_list is empty: no image to build mask targets for')
    mask_size = _pair(cfg.mask_size)
    binarize = not cfg.get('soft_mask_target', False)
    proposals_list = [get_box_tensor(p) for p in pos_proposals_list]

    targets: list[torch.Tensor | None] = [None] * num_images
    groups: list[list[int]] = []  # images of one mask shape, one RoIAlign call each
    open_groups: dict[tuple[int, int], tuple[list[int], int]] = {}  # shape -> group, bytes
    for i, (proposals, masks) in enumerate(zip(proposals_list, gt_masks_list)):
        num_pos = proposals.size(0)
        if num_pos == 0:
            targets[i] = proposals.new_zeros((0, *mask_size))
        elif isinstance(masks, PolygonMasks):
            targets[i] = mask_target_single(proposals, pos_assigned_gt_inds_list[i], masks, cfg)
        elif isinstance(masks, BitmapMasks):
            if len(masks) == 0:
                raise ValueError(
                    f'gt_masks_list[{i}] holds no mask, but pos_proposals_list[{i}] has '
                    f'{num_pos} positives assigned to ground truths')
            shape = (masks.height, masks.width)
            nbytes = (min(len(masks), num_pos) * masks.height * masks.width *
                      proposals.element_size())
            group, group_bytes = open_groups.get(shape, (None, 0))
            if group is None or group_bytes + nbytes > GROUP_BYTES:
                group, group_bytes = [], 0
                groups.append(group)
            group.append(i)
            open_groups[shape] = (group, group_bytes + nbytes)
        else:
            raise TypeError(f'gt_masks_list[{i}] must be BitmapMasks or PolygonMasks, got '
                            f'{type(masks).__name__}')

    for images in groups:
        group_targets = _crop_and_resize([proposals_list[i] for i in images],
                                         [pos_assigned_gt_inds_list[i] for i in images],
                                         [gt_masks_list[i] for i in images], mask_size, binarize)
        sizes = [proposals_list[i].size(0) for i in images]
        for i, image_targets in zip(images, group_targets.split(sizes)):
            targets[i] = image_targets
    return torch.cat(targets)


# Devices whose copies from pageable host memory wait for the device: CUDA stages pageable
# memory through a pinned buffer of its own and does not return before the stream has caught up,
# whatever non_blocking says; from pinned memory the copy is queued and the host goes on.
PINNED_COPY_DEVICES = ('cuda', )


def _host_to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``array`` on ``device`` without waiting for it: through pinned memory where the device
    needs it (torch's pinned-memory allocator keeps the buffer until the copy is done)."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type in PINNED_COPY_DEVICES:
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def _crop_and_resize(proposals_list: list[torch.Tensor],
                     gt_inds_list: list[torch.Tensor],
                     masks_list: list,
                     mask_size: tuple[int, int],
                     binarize: bool) -> torch.Tensor:
    """The targets of the positives of images whose ``BitmapMasks`` have one shape, from one
    RoIAlign over their ground-truth masks stacked on the proposals' device."""
    from mmcv.ops import roi_align

    device, dtype = proposals_list[0].device, proposals_list[0].dtype
    height, width = masks_list[0].height, masks_list[0].width
    rows = [min(len(masks), len(proposals)) for proposals, masks in zip(proposals_list,
                                                                        masks_list)]
    # mmdet RoIAligns the masks in the proposals' dtype
    stacked = torch.empty((sum(rows), 1, height, width), dtype=dtype, device=device)
    rois, offset = [], 0
    for proposals, gt_inds, masks, num_rows in zip(proposals_list, gt_inds_list, masks_list,
                                                   rows):
        num_masks = len(masks)
        # The masks' own dtype travels (uint8: a quarter of float32's bytes) and is converted on
        # the device.
        image_masks = _host_to_device(masks.masks, device)
        # An index out of range would make RoIAlign read past the masks; checked on the device
        # (a host check would wait for it).
        torch._assert_async(((gt_inds >= 0) & (gt_inds < num_masks)).all(),
                            f'positives assigned to ground truths outside 0..{num_masks - 1}')
        if num_rows < num_masks:
            # fewer positives than ground truths: a copy per positive, as mmdet, takes less memory
            image_masks = image_masks.index_select(0, gt_inds)
            index = torch.arange(num_rows, device=device) + offset
        else:
            index = gt_inds + offset
        stacked[offset:offset + num_rows, 0] = image_masks
        # mmdet clips the proposals to the mask before RoIAlign
        boxes = torch.stack([proposals[:, 0].clamp(0, width), proposals[:, 1].clamp(0, height),
                             proposals[:, 2].clamp(0, width), proposals[:, 3].clamp(0, height)],
                            dim=1)
        rois.append(torch.cat([index.to(dtype)[:, None], boxes], dim=1))
        offset += num_rows
    targets = roi_align(stacked, torch.cat(rois), mask_size, 1.0, 0, 'avg', True).squeeze(1)
    return (targets >= 0.5).float() if binarize else targets.float()


@functools.cache
def _head_class() -> type:
    from mmdet.models.roi_heads.mask_heads import FCNMaskHead

    class DeviceTargetFCNMaskHead(FCNMaskHead):
        """mmdet's ``FCNMaskHead`` whose training targets are built by
        :func:`device_mask_target` (the same targets, without host round trips)."""

        def get_targets(self, sampling_results, batch_gt_instances, rcnn_train_cfg):
            return device_mask_target([res.pos_priors for res in sampling_results],
                                      [res.pos_assigned_gt_inds for res in sampling_results],
                                      [gt.masks for gt in batch_gt_instances], rcnn_train_cfg)

    return DeviceTargetFCNMaskHead


@MODELS.register_module(name='DeviceTargetFCNMaskHead')
def build_device_target_mask_head(**kwargs) -> torch.nn.Module:
    """mmdet's ``FCNMaskHead`` (same arguments) with its training targets built on the device
    (see the module docstring)."""
    return _head_class()(**kwargs)
