"""Every change that importing ``convnext_dense`` makes to other packages, in one place.

Each entry works around a problem of the OpenMMLab stack as released, says where the fix lives,
and how to tell that it can go. :func:`apply_patches` applies them all; ``import convnext_dense``
(and so ``custom_imports=dict(imports=['convnext_dense'])``) calls it once.

1. mmengine checkpoints under torch >= 2.6 (``weights_only=True`` by default): mmengine 0.10.7
   loads with a plain ``torch.load``, which then refuses its own checkpoints (``HistoryBuffer``,
   numpy scalars; open-mmlab/mmengine#1655, #1650 proposes ``weights_only=False``, which would
   run any code a checkpoint carries). In :mod:`convnext_dense.fileio.torch_load`,
   :func:`allow_mmengine_checkpoints` allow-lists exactly the types mmengine writes, and
   :func:`register_mmengine_loader` puts a ``weights_only`` loader that refuses code-carrying
   pickles in front of mmengine's local loader (onedl-mmengine's own loader would retry with
   ``weights_only=False``).
   Can go when mmengine's loader passes ``weights_only=True`` with those types allow-listed and
   never falls back: loading a pickle with ``__reduce__`` through ``load_checkpoint`` must fail
   (``tests/fileio/test_torch_load.py``).
2. Atomic checkpoint writes: mmengine's local backend writes checkpoints and
   ``last_checkpoint`` in place, so a run killed mid-write leaves a truncated file that
   ``--resume`` then fails on.
   :func:`convnext_dense.fileio.atomic.register_atomic_local_backend`. Can go when
   ``LocalBackend.put`` writes to a temporary file and renames it.
3. mmpretrain beside current transformers: mmpretrain 1.2.0 fails to import next to
   transformers >= 4.5x, and mmdet 3.3 imports mmpretrain whenever it is installed, so every
   ``import mmdet.models`` fails. :func:`.mmpretrain.guard_mmpretrain_import`. Can go when
   ``import mmpretrain.models`` succeeds beside the installed transformers.
4. RoIAlign and NMS kernels: an mmcv built without CUDA has no GPU kernels of them (a
   detector on a GPU stops in the RPN's NMS), and mmcv 2.1.0's NMS has no bfloat16 variant
   (detection under bf16 autocast stops in NMS). :func:`allow_bf16_nms` installs the
   router of :mod:`convnext_dense.ops.roi_ops`, which runs each call on mmcv's or torchvision's
   kernel (config key ``roi_ops``) and NMS on fp32 copies. Needed while mmcv wheels lack CUDA
   builds for current torch and bf16 kernels; can go with ``roi_ops`` when both exist.
5. ``mmseg::`` / ``mmdet::`` config paths on the OneDL forks: onedl-mmengine looks scopes up by
   the upstream distribution names. :func:`.stacks.resolve_onedl_config_scopes`. Can go when
   ``Config.fromfile`` resolves ``mmseg::_base_/default_runtime.py`` with only
   onedl-mmsegmentation installed.
6. Upstream warnings a user cannot act on (mmengine reloading ``pkg_resources``, mmseg's own
   ``build_loss`` calls, mmengine's own ``FileClient`` use, ...), each matched by its message
   and where it is raised: :func:`.quiet.silence_upstream_noise`, which lists them with the
   reason for each. An entry can go when a run of ``tools/train.py`` no longer shows its
   message without it (``tests/compat/test_quiet.py`` lists what a run prints).
7. ``convnext_dense::`` config paths: mmengine resolves a ``scope::path`` base only for the
   packages of its table ``MODULE2PACKAGE``, and would build a plugin base's dicts in a scope
   of that name. :func:`.config_package.register_config_package` enters the plugin, unscoped.
   Stays as long as the plugin's configs are package data.

Not applied at import: ``RNGStateHook`` (:mod:`convnext_dense.engine.hooks`), added to every
run by the tools, stores and restores the RNG states for a bitwise resume and, on
onedl-mmengine, makes the resumed loop load the batches it skips
(:func:`.stacks.replay_skipped_batches`).
"""
from __future__ import annotations

from ..fileio import (
    allow_mmengine_checkpoints,
    register_atomic_local_backend,
    register_mmengine_loader,
)
from ..ops.roi_ops import route_mmcv_ops
from .config_package import register_config_package
from .mmpretrain import guard_mmpretrain_import
from .quiet import silence_upstream_noise
from .stacks import resolve_onedl_config_scopes


def allow_bf16_nms() -> None:
    """Let mmcv's NMS take bf16 boxes (as they come out of an RPN under bf16 autocast).

    mmcv 2.1.0's NMS kernels have no bfloat16 version ("expected scalar type Float but found
    BFloat16"); NMS returns indices, so computing it on fp32 copies changes nothing else. The
    router of :mod:`convnext_dense.ops.roi_ops` does so on either kernel (``roi_ops``: mmcv's or
    torchvision's NMS), and runs RoIAlign in fp32 where a kernel lacks the dtype.
    """
    route_mmcv_ops()


PATCHES = (silence_upstream_noise, allow_mmengine_checkpoints, register_mmengine_loader,
           register_atomic_local_backend, guard_mmpretrain_import, allow_bf16_nms,
           resolve_onedl_config_scopes, register_config_package)


def apply_patches() -> None:
    """Apply every patch listed in this module's docstring (each is idempotent)."""
    for patch in PATCHES:
        patch()
