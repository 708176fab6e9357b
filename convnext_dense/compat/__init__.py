"""What the plugin evens out between the OpenMMLab stacks and current packages.

:mod:`.stacks` tells the two stacks (OpenMMLab's releases, the OneDL forks) apart and evens out
where the forks differ; :mod:`.mmpretrain` lets mmpretrain import beside current transformers;
:mod:`.quiet` silences the upstream warnings a user cannot act on; :mod:`.patches` lists every
change ``import convnext_dense`` makes to other packages and applies them (:func:`apply_patches`).
"""
from .mmpretrain import guard_mmpretrain_import, import_mmpretrain
from .patches import PATCHES, allow_bf16_nms, apply_patches
from .quiet import silence_upstream_noise
from .stacks import (
    STACK_DISTRIBUTIONS,
    installed_stack,
    replay_skipped_batches,
    resolve_onedl_config_scopes,
)

__all__ = ['PATCHES', 'STACK_DISTRIBUTIONS', 'allow_bf16_nms', 'apply_patches',
           'guard_mmpretrain_import', 'import_mmpretrain', 'installed_stack',
           'replay_skipped_batches', 'resolve_onedl_config_scopes', 'silence_upstream_noise']
