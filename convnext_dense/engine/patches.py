"""Every change that importing ``convnext_dense`` makes to other packages, in one place.

Each entry works around a problem of the OpenMMLab stack as released, says where the fix lives,
and how to tell that it can go. :func:`apply_patches` applies them all; ``import convnext_dense``
(and so ``custom_imports=dict(imports=['convnext_dense'])``) calls it once.

1. mmengine checkpoints under torch >= 2.6 (``weights_only=True`` by default): mmengine 0.10.7
   loads with a plain ``torch.load``, which then refuses its own checkpoints (``HistoryBuffer``,
   numpy scalars; open-mmlab/mmengine#1655, #1650 proposes ``weights_only=False``, which would
   run any code a checkpoint carries). :func:`.torch_load.allow_mmengine_checkpoints`
   allow-lists exactly the types mmengine writes, and :func:`.torch_load.register_mmengine_loader`
   puts a ``weights_only`` loader that refuses code-carrying pickles in front of mmengine's local
   loader (onedl-mmengine's own loader would retry with ``weights_only=False``).
   Can go when mmengine's loader passes ``weights_only=True`` with those types allow-listed and
   never falls back: loading a pickle with ``__reduce__`` through ``load_checkpoint`` must fail
   (``tests/engine/test_torch_load.py``).
2. Atomic checkpoint writes: mmengine's local backend writes checkpoints and
   ``last_checkpoint`` in place, so a run killed mid-write leaves a truncated file that
   ``--resume`` then fails on. :func:`.atomic_io.register_atomic_local_backend`. Can go when
   ``LocalBackend.put`` writes to a temporary file and renames it.
3. mmpretrain beside current transformers: mmpretrain 1.2.0 fails to import next to
   transformers >= 4.5x, and mmdet 3.3 imports mmpretrain whenever it is installed, so every
   ``import mmdet.models`` fails. :func:`.compat.guard_mmpretrain_import`. Can go when
   ``import mmpretrain.models`` succeeds beside the installed transformers.
4. RoIAlign and NMS kernels: an mmcv built without CUDA has no GPU kernels of them (a
   detector on a GPU stops in the RPN's NMS), and mmcv 2.1.0's NMS has no bfloat16 variant
   (detection under bf16 autocast stops in NMS). :func:`.compat.allow_bf16_nms` installs the
   router of :mod:`convnext_dense.ops.roi_ops`, which runs each call on mmcv's or torchvision's
   kernel (config key ``roi_ops``) and NMS on fp32 copies. Needed while mmcv wheels lack CUDA
   builds for current torch and bf16 kernels; can go with ``roi_ops`` when both exist.
5. ``mmseg::`` / ``mmdet::`` config paths on the OneDL forks: onedl-mmengine looks scopes up by
   the upstream distribution names. :func:`.compat.resolve_onedl_config_scopes`. Can go when
   ``Config.fromfile`` resolves ``mmseg::_base_/default_runtime.py`` with only
   onedl-mmsegmentation installed.
6. Upstream warnings a user cannot act on (mmengine reloading ``pkg_resources``, mmseg's own
   ``build_loss`` calls, mmengine's own ``FileClient`` use, ...), each matched by its message
   and where it is raised: :func:`.quiet.silence_upstream_noise`, which lists them with the
   reason for each. An entry can go when a run of ``tools/train.py`` no longer shows its
   message without it (``tests/engine/test_quiet.py`` lists what a run prints).

Not applied at import: ``RNGStateHook`` (:mod:`.hooks`), added to every run by the tools, stores
and restores the RNG states for a bitwise resume and, on onedl-mmengine, makes the resumed loop
load the batches it skips (:func:`.compat.replay_skipped_batches`).
"""
from __future__ import annotations

from .atomic_io import register_atomic_local_backend
from .compat import allow_bf16_nms, guard_mmpretrain_import, resolve_onedl_config_scopes
from .quiet import silence_upstream_noise
from .torch_load import allow_mmengine_checkpoints, register_mmengine_loader

PATCHES = (silence_upstream_noise, allow_mmengine_checkpoints, register_mmengine_loader,
           register_atomic_local_backend, guard_mmpretrain_import, allow_bf16_nms,
           resolve_onedl_config_scopes)


def apply_patches() -> None:
    """Apply every patch listed in this module's docstring (each is idempotent)."""
    for patch in PATCHES:
        patch()
